"""Importing shopper interactions (idempotent by content) into visrec's events."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db.models import Count, Max

from recommendations.models import Interaction

from ..models import Product
from .mapping import BoundMapping, ColumnMapping
from .reading import batched, numbered, open_csv
from .report import ImportReport
from .targets import RowError
from .values import external_username, parse_timestamp


@dataclass(frozen=True)
class InteractionRow:
    """One parsed interactions row."""

    row: int
    user: str
    sku: str
    kind: str
    value: float
    created_at: datetime


_KINDS = frozenset(Interaction.Kind.values)


def parse_interaction(bound: BoundMapping, number: int, row: Mapping[str, str | None]) -> InteractionRow:
    """Parse one interactions row; raises :class:`RowError` with the reason."""
    user, sku = bound.value(row, "user"), bound.value(row, "sku")
    if not user:
        raise RowError("user is empty")
    if not sku:
        raise RowError("sku is empty")
    kind = (bound.value(row, "kind") or Interaction.Kind.PURCHASE).strip().lower()
    if kind not in _KINDS:
        raise RowError(f"kind {kind!r} is not one of {', '.join(sorted(_KINDS))}")
    text = bound.value(row, "value") or "1"
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"value {text!r} is not a finite number")
    return InteractionRow(number, user, sku, kind, value, parse_timestamp(bound.value(row, "timestamp")))


InteractionKey = tuple[int, int, str, float, datetime]


class InteractionImporter:
    """Adds shopper interactions from an interactions CSV, creating shoppers as needed.

    A row is skipped when an identical interaction (same user, product, kind, value
    and time) was stored before this run; the n-th identical row of the file matches
    the n-th identical stored interaction, so repeat purchases are kept. Only keys
    that already existed are counted in memory, so a first import keeps no state.
    """

    def __init__(self, report: ImportReport, *, batch_size: int = 500) -> None:
        self.report = report
        self.batch_size = batch_size
        self.user_model = get_user_model()
        self.file = ""
        self.before_pk = 0
        self.seen: Counter[InteractionKey] = Counter()

    def run(self, path: Path, mapping: ColumnMapping, progress: Callable[[int], None] | None = None) -> None:
        """Import every row of the interactions file at ``path``."""
        self.file = Path(path).name
        self.before_pk = Interaction.objects.aggregate(last=Max("pk"))["last"] or 0
        with open_csv(path, "interactions") as reader:
            bound = mapping.bind("interactions", reader.fieldnames or [])
            rows = self._parsed(bound, numbered(reader, progress, self._unreadable(bound)))
            for batch in batched(rows, self.batch_size):
                self._import_batch(batch)

    def _unreadable(self, bound: BoundMapping) -> Callable[[int, dict | None, str], None]:
        def fail(number: int, row: dict | None, reason: str) -> None:
            self.report.interactions.failed += 1
            self.report.fail(self.file, number, bound.value(row, "sku")[:200] if row else "", reason)

        return fail

    def _parsed(self, bound: BoundMapping, rows: Iterable[tuple[int, dict]]) -> Iterator[InteractionRow]:
        for number, row in rows:
            try:
                yield parse_interaction(bound, number, row)
            except RowError as e:
                self.report.interactions.failed += 1
                self.report.fail(self.file, number, bound.value(row, "sku"), str(e))

    def _import_batch(self, rows: list[InteractionRow]) -> None:
        products = dict(Product.objects.filter(sku__in={r.sku for r in rows}).values_list("sku", "pk"))
        known = []
        for row in rows:
            if row.sku in products:
                known.append(row)
            else:
                self.report.interactions.failed += 1
                self.report.fail(self.file, row.row, row.sku, f"unknown product sku {row.sku!r}")
        users = self._users({r.user for r in known})
        keyed = [(r, (users[r.user], products[r.sku], r.kind, r.value, r.created_at)) for r in known]
        stored = self._stored_before({k for _, k in keyed})
        new = [
            Interaction(user_id=k[0], product_id=k[1], kind=k[2], value=k[3], created_at=k[4], source="import")
            for _, k in keyed
            if not self._already_stored(k, stored)
        ]
        Interaction.objects.bulk_create(new)
        self.report.interactions.created += len(new)
        self.report.interactions.skipped += len(keyed) - len(new)

    def _users(self, external_ids: set[str]) -> dict[str, int]:
        """External id -> user pk; missing shoppers are created with unusable passwords."""
        field = self.user_model.USERNAME_FIELD
        names = {external_username(e): e for e in external_ids}
        found = dict(self.user_model._default_manager.filter(**{f"{field}__in": names}).values_list(field, "pk"))
        missing = [n for n in names if n not in found]
        if missing:
            self.user_model._default_manager.bulk_create(
                [self.user_model(**{field: n}, password=make_password(None)) for n in missing], ignore_conflicts=True
            )
            self.report.users_created += len(missing)
            found.update(self.user_model._default_manager.filter(**{f"{field}__in": missing}).values_list(field, "pk"))
        return {external: found[name] for name, external in names.items()}

    def _stored_before(self, keys: set[InteractionKey]) -> Counter[InteractionKey]:
        if not keys or not self.before_pk:
            return Counter()
        rows = (
            Interaction.objects.filter(
                pk__lte=self.before_pk, user_id__in={k[0] for k in keys}, product_id__in={k[1] for k in keys}
            )
            .values_list("user_id", "product_id", "kind", "value", "created_at")
            .annotate(n=Count("pk"))
            .order_by()
        )
        stored: Counter[InteractionKey] = Counter()
        for user_id, product_id, kind, value, created_at, n in rows:
            key = (user_id, product_id, kind, value, created_at)
            if key in keys:
                stored[key] = n
        return stored

    def _already_stored(self, key: InteractionKey, stored: Counter[InteractionKey]) -> bool:
        if not stored[key]:
            return False
        self.seen[key] += 1
        return self.seen[key] <= stored[key]
