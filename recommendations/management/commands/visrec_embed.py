"""``manage.py visrec_embed [--missing|--all|--failed] [--queue]``: embed product images."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommendations import embedding
from recommendations.ml.backbones import UnknownBackbone, WeightsNotFound
from recommendations.models import ImageState
from recommendations.sync import sync_all
from recommendations.tasks import enqueue_embedding


class Command(BaseCommand):
    help = "Embed product images with the configured backbone (in-process, or queued to Celery workers)."

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--missing", action="store_true", help="images without a vector for the current model (default)"
        )
        group.add_argument("--all", action="store_true", help="re-embed every image")
        group.add_argument("--failed", action="store_true", help="retry images that failed before")
        parser.add_argument("--queue", action="store_true", help="enqueue to Celery workers instead of running here")

    def handle(self, *args, **options) -> None:
        try:
            model = embedding.current_embedding_model()
        except (WeightsNotFound, UnknownBackbone) as e:
            raise CommandError(str(e)) from e
        synced = sync_all(embed=False)  # the shop's images visrec does not know yet
        if synced.images_new or synced.images_changed:
            self.stdout.write(
                f"Found {synced.images_new} new and {synced.images_changed} changed image(s) in the shop."
            )
        ids = self._select(model, options)
        if not ids:
            self.stdout.write(f"Nothing to embed ({model}).")
            return
        if options["queue"]:
            enqueue_embedding(ids)
            self.stdout.write(f"Queued {len(ids)} images for embedding.")
            return
        with tqdm(total=len(ids), unit="img", desc="embedding") as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            report = embedding.embed_images(ids, force=options["all"], progress=progress)
        self.stdout.write(
            f"Embedded {report.embedded}, reused {report.reused} (identical files), failed {report.failed}, "
            f"skipped {report.skipped} in {report.seconds:.1f}s ({report.images_per_second:.1f} images/s) with {model}."
        )
        for image_id, reason in list(report.failures.items())[:20]:
            self.stdout.write(f"  image {image_id}: {reason}")

    def _select(self, model, options) -> list[int]:
        Image = ImageState
        images = Image.objects.all()
        if options["failed"]:
            images = images.filter(status=Image.Status.FAILED)
        elif not options["all"]:
            images = images.exclude(embeddings__model=model).exclude(status=Image.Status.FAILED)
        return list(images.order_by("pk").values_list("pk", flat=True))
