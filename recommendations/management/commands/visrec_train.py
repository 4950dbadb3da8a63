"""``manage.py visrec_train [--models a,b]``: fit, evaluate, store, activate-if-better."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommendations import training
from recommendations.models import ModelVersion


class Command(BaseCommand):
    help = "Train the configured recommenders on a temporal hold-out; activate the best if it beats the active one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--models", help="comma-separated recommender names (default: VISREC TRAIN_MODELS)")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when a version is already active")

    def handle(self, *args, models: str | None = None, if_missing: bool = False, **options) -> None:
        active = ModelVersion.objects.active()
        if if_missing and active is not None:
            self.stdout.write(f"{active} is active; nothing to train (run without --if-missing to retrain).")
            return
        names = [m.strip() for m in models.split(",") if m.strip()] if models else None
        bar = tqdm(total=len(names) if names else None, unit="model", desc="training")

        def progress(kind: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(kind)
            bar.update(done - bar.n)

        try:
            version = training.train(names, progress=progress)
        except training.TrainingError as e:
            raise CommandError(str(e)) from e
        else:
            bar.update(bar.total - bar.n)
        finally:
            bar.close()
        state = "activated" if version.is_active else "stored (the active version is at least as good)"
        metrics = {k: round(v, 4) for k, v in version.metrics.items() if k in ("recall@50", "ndcg@12", "coverage@12")}
        self.stdout.write(f"{version} {state}: {metrics}, trained in {version.training_seconds:.1f}s")
