"""Reading CSV files row by row, numbered as in a spreadsheet, in batches."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .targets import ImportConfigError


@contextmanager
def open_csv(path: Path, kind: str) -> Iterator[csv.DictReader]:
    """Open a UTF-8 CSV (a byte-order mark is ignored) and check it has a header."""
    try:
        stream = Path(path).open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ImportConfigError(f"cannot open the {kind} file {path}: {e}") from e
    with stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames:
            raise ImportConfigError(f"the {kind} file {path} is empty (a header row is required)")
        yield reader


def count_rows(path: Path) -> int:
    """Roughly how many data rows ``path`` holds (for the progress bar), read in 1 MiB chunks."""
    with Path(path).open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return max(lines - 1, 0)


def numbered(reader: Iterable[dict], progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Rows with their spreadsheet row number (the header is row 1)."""
    for number, row in enumerate(reader, start=2):
        yield number, row
        if progress is not None:
            progress(1)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def batched_unique(rows: Iterable[Any], size: int, key: Callable[[Any], str]) -> Iterator[list[Any]]:
    """Batches of at most ``size`` items; a batch ends early rather than hold a key twice."""
    batch: list[Any] = []
    keys: set[str] = set()
    for item in rows:
        if len(batch) >= size or key(item) in keys:
            yield batch
            batch, keys = [], set()
        batch.append(item)
        keys.add(key(item))
    if batch:
        yield batch
