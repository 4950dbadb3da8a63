"""``manage.py visrec_sync [--no-embed]``: copy the shop's products and images into visrec's tables."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from recommendations.sync import sync_all


class Command(BaseCommand):
    help = (
        "Read every product through VISREC_PRODUCT_ADAPTER and bring visrec's product snapshots and image "
        "states in line (first install, repair); new or changed images are queued for embedding."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-embed", action="store_true", help="do not queue new images (run visrec_embed)")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options) -> None:
        report = sync_all(options["batch_size"], embed=not options["no_embed"])
        self.stdout.write(
            f"Synced {report.products} products ({report.removed} removed); images: {report.images_new} new, "
            f"{report.images_changed} changed, {report.images_removed} removed; {len(report.queued)} to embed."
        )
