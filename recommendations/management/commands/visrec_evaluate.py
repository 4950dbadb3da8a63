"""``manage.py visrec_evaluate [--models a,b]``: every model side by side on the hold-out."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from recommendations import training
from recommendations.data import build_snapshot

COLUMNS = (
    "recall@12",
    "recall@50",
    "ndcg@12",
    "ndcg@50",
    "map@12",
    "hit_rate@12",
    "coverage@12",
    "novelty@12",
    "cold_recall@50",
    "fit_seconds",
)


def _number(value) -> float:
    return float("nan") if value is None else value


class Command(BaseCommand):
    help = "Evaluate recommenders on a temporal hold-out of the shop's interactions and print them side by side."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--models", help="comma-separated names (default: every registered recommender)")

    def handle(self, *args, models: str | None = None, **options) -> None:
        names = [m.strip() for m in models.split(",")] if models else sorted(training.registry())
        unknown = sorted(set(names) - set(training.registry()))
        if unknown:
            raise CommandError(f"unknown model(s): {', '.join(unknown)}")
        try:
            configs = [(n, {}) for n in names]
            snapshot = build_snapshot(item_features=training.needs_item_features(configs))
            candidates = training.evaluate_models(snapshot, configs)
        except training.TrainingError as e:
            raise CommandError(str(e)) from e
        width = max(len(n) for n in names)
        self.stdout.write(f"{'model':<{width}}  " + "  ".join(f"{c:>14}" for c in COLUMNS))
        for c in sorted(candidates, key=lambda c: -(c.metrics.get("recall@50") or 0)):
            cells = "  ".join(f"{_number(c.metrics.get(col)):>14.4f}" for col in COLUMNS)
            self.stdout.write(f"{c.kind:<{width}}  {cells}")
