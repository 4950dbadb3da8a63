"""``manage.py visrec_import``: bulk-import products, images and interactions from CSV.

See ``docs/import-format.md`` for the file format, column mappings and presets.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from catalog import importers
from catalog.importers import ImportConfigError, ImportOptions, ImportReport


class Command(BaseCommand):
    help = (
        "Import products (with images) and shopper interactions from CSV files. Idempotent: "
        "products match by SKU, images by checksum, interactions by content."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=Path, help="products CSV (sku, title, ..., image)")
        parser.add_argument(
            "--images", type=Path, help="folder the image paths are relative to (default: the products file's folder)"
        )
        parser.add_argument("--interactions", type=Path, help="interactions CSV (user, sku, kind, value, timestamp)")
        parser.add_argument("--preset", choices=sorted(importers.PRESETS), help="a shipped column mapping")
        parser.add_argument("--mapping", type=Path, help="JSON column mapping file")
        parser.add_argument(
            "--column",
            action="append",
            default=[],
            metavar="TARGET=SOURCE",
            help="map a field to a column, e.g. sku=item_id or interactions.user=customer (repeatable)",
        )
        parser.add_argument("--report", type=Path, help="write every failed row with its reason to this CSV")
        parser.add_argument("--embed", action="store_true", help="queue embedding of the new images afterwards")
        parser.add_argument(
            "--no-decode", action="store_true", help="only read image headers (faster; truncated files fail later)"
        )
        parser.add_argument("--batch-size", type=int, default=500, help="rows per database batch (default 500)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        try:
            report = self._import(options)
        except ImportConfigError as e:
            raise CommandError(str(e)) from e
        self._summary(report, options, time.perf_counter() - started)
        self._embedding(report, options["embed"])

    def _import(self, options: dict) -> ImportReport:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        mapping = importers.build_mapping(options["preset"], options["mapping"], options["column"])
        opts = ImportOptions(
            products=options["products"],
            interactions=options["interactions"],
            images_dir=options["images"],
            mapping=mapping,
            batch_size=options["batch_size"],
            decode=not options["no_decode"],
        )
        with ExitStack() as stack:
            report = ImportReport()
            if options["report"]:
                stream = stack.enter_context(Path(options["report"]).open("w", newline="", encoding="utf-8"))
                report.sink = importers.failure_writer(stream)
            return importers.run_import(opts, report, None if options["no_progress"] else self._progress_bar)

    @staticmethod
    @contextmanager
    def _progress_bar(kind: str, path: Path) -> Iterator[Callable[[int], object]]:
        with tqdm(total=importers.count_rows(path), desc=kind, unit=" rows", file=sys.stderr) as bar:
            yield bar.update

    def _summary(self, report: ImportReport, options: dict, seconds: float) -> None:
        out = self.stdout.write
        if options["products"]:
            p, i = report.products, report.images
            out(f"Products: {p.created} created, {p.updated} updated, {p.skipped} skipped, {p.failed} failed")
            out(
                f"Images: {i.stored} stored ({i.replaced} replacing an earlier one), "
                f"{i.unchanged} unchanged, {i.failed} failed"
            )
            out(f"Categories: {report.categories_created} created")
        if options["interactions"]:
            n = report.interactions
            out(f"Interactions: {n.created} created, {n.skipped} skipped (already imported), {n.failed} failed")
            out(f"Shoppers: {report.users_created} created")
        if report.failure_count:
            out(self.style.WARNING(f"{report.failure_count} problem(s):"))
            for failure in report.failures:
                out(f"  {failure}")
            hidden = report.failure_count - len(report.failures)
            if hidden:
                where = f"see {options['report']}" if options["report"] else "use --report FILE.csv to list them all"
                out(f"  ... and {hidden} more ({where})")
        out(f"Finished in {seconds:.1f}s.")

    def _embedding(self, report: ImportReport, embed: bool) -> None:
        count = len(report.new_image_ids)
        if not count:
            return
        if not embed:
            self.stdout.write(f"Run `python manage.py visrec_embed --missing` to embed {count} new image(s).")
            return
        from recommendations.tasks import enqueue_embedding

        with transaction.atomic():
            enqueue_embedding(report.new_image_ids)
        self.stdout.write(f"Queued {count} new image(s) for embedding.")
