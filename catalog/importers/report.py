"""The import report: counts, failures (file, row, sku, reason) and the CSV of failed rows."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Counts:
    """Outcome of the rows of one file."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class ImageCounts:
    """Outcome of the images named by the products file."""

    stored: int = 0
    replaced: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Failure:
    """One problem with one row."""

    file: str
    row: int
    sku: str
    reason: str

    def __str__(self) -> str:
        sku = f" (sku {self.sku})" if self.sku else ""
        return f"{self.file} row {self.row}{sku}: {self.reason}"


@dataclass
class ImportReport:
    """Counts and problems of one import; keeps only the first ``keep`` failures.

    Every failure is also passed to ``sink`` (e.g. a CSV writer) as it happens, so
    memory does not grow with the number of failures.
    """

    products: Counts = field(default_factory=Counts)
    images: ImageCounts = field(default_factory=ImageCounts)
    interactions: Counts = field(default_factory=Counts)
    users_created: int = 0
    categories_created: int = 0
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    new_image_ids: list[int] = field(default_factory=list)  # visrec's ImageState ids to embed
    keep: int = 20
    sink: Callable[[Failure], None] | None = None

    def fail(self, file: str, row: int, sku: str, reason: str) -> None:
        """Record a problem with ``row`` of ``file``."""
        failure = Failure(file, row, sku, reason)
        self.failure_count += 1
        if len(self.failures) < self.keep:
            self.failures.append(failure)
        if self.sink is not None:
            self.sink(failure)


#: First characters that make spreadsheet programs run a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """``value`` with a leading ``'`` when a spreadsheet would run it as a formula (CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def failure_writer(stream: IO[str]) -> Callable[[Failure], None]:
    """A report sink writing ``file,row,sku,reason`` CSV lines to ``stream``.

    Cells a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage
    return first) are written with a leading ``'``.
    """
    writer = csv.writer(stream)
    writer.writerow(["file", "row", "sku", "reason"])

    def write(failure: Failure) -> None:
        cells = [failure.file, failure.row, failure.sku, failure.reason]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])

    return write
