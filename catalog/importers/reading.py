"""Reading CSV files row by row, numbered as in a spreadsheet, in batches."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .targets import ImportConfigError

#: A field longer than this (characters) fails its row; the rest of the file is imported.
MAX_FIELD_CHARS = 128 * 1024
#: What the csv module may read as one field, so a long field is read whole and only its row
#: fails; a longer one is a csv error, which fails its row too.
READ_FIELD_LIMIT = 16 * 1024 * 1024

RowProblem = Callable[[int, dict | None, str], None]


@contextmanager
def open_csv(path: Path, kind: str) -> Iterator[csv.DictReader]:
    """Open a UTF-8 CSV (a byte-order mark is ignored) and check it has a header."""
    try:
        stream = Path(path).open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ImportConfigError(f"cannot open the {kind} file {path}: {e}") from e
    if csv.field_size_limit() < READ_FIELD_LIMIT:
        csv.field_size_limit(READ_FIELD_LIMIT)
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


def numbered(
    reader: Iterable[dict], progress: Callable[[int], None] | None = None, problem: RowProblem | None = None
) -> Iterator[tuple[int, dict]]:
    """Rows with their spreadsheet row number (the header is row 1).

    A row the csv module cannot read, or with a field over :data:`MAX_FIELD_CHARS`, is
    passed to ``problem(number, row or None, reason)`` instead (raised without it) and the
    reading goes on with the next row.
    """
    rows = iter(reader)
    number = 1
    while True:
        number += 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            if problem is None:
                raise
            problem(number, None, f"the row cannot be read: {e}")
        else:
            if (reason := _too_long(row)) and problem is not None:
                problem(number, row, reason)
            else:
                yield number, row
        if progress is not None:
            progress(1)


def _too_long(row: dict) -> str:
    for name, value in row.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and len(text) > MAX_FIELD_CHARS:
                column = repr(name) if name is not None else "(an extra column)"
                return f"column {column} is longer than {MAX_FIELD_CHARS} characters"
    return ""


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
