"""The entry point: run a products and/or interactions import with progress."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .interactions import InteractionImporter
from .mapping import ColumnMapping
from .products import ProductImporter
from .report import ImportReport
from .targets import ImportConfigError

ProgressFactory = Callable[[str, Path], AbstractContextManager[Callable[[int], Any]]]


@dataclass
class ImportOptions:
    """What to import and how (the command's options)."""

    products: Path | None = None
    interactions: Path | None = None
    images_dir: Path | None = None
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    batch_size: int = 500
    decode: bool = True
    workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 8))
    #: False: rows of existing products fail as refused (create only).
    update_existing: bool = True


def run_import(options: ImportOptions, report: ImportReport, progress: ProgressFactory | None = None) -> ImportReport:
    """Import the products file, then the interactions file, into ``report``.

    ``progress(kind, path)`` may give a context manager yielding a callback that is
    advanced by one per row read (a progress bar).
    """
    if options.products is None and options.interactions is None:
        raise ImportConfigError("nothing to import: give a products file, an interactions file or both")
    if options.products is not None:
        images_dir = options.images_dir or Path(options.products).parent
        if not Path(images_dir).is_dir():
            raise ImportConfigError(f"the images folder {images_dir} does not exist")
        importer = ProductImporter(
            images_dir,
            report,
            batch_size=options.batch_size,
            decode=options.decode,
            workers=options.workers,
            update_existing=options.update_existing,
        )
        with _progress(progress, "products", options.products) as advance:
            importer.run(options.products, options.mapping, advance)
    if options.interactions is not None:
        importer = InteractionImporter(report, batch_size=options.batch_size)
        with _progress(progress, "interactions", options.interactions) as advance:
            importer.run(options.interactions, options.mapping, advance)
    return report


def _progress(
    factory: ProgressFactory | None, kind: str, path: Path
) -> AbstractContextManager[Callable[[int], Any] | None]:
    return factory(kind, path) if factory is not None else nullcontext()
