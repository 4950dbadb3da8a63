"""Shopper events: the one way views, clicks, carts, purchases and ratings are recorded.

Shop code calls :func:`record` (a product of the shop, a kind, the shopper); the events
API and the widget beacon use the lower-level :func:`record_interaction` /
:func:`record_interactions`; an ``Idempotency-Key`` makes a batch run once (:func:`run_once`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .conf import get_adapter
from .models import EventBatch, Interaction

KINDS = frozenset(Interaction.Kind.values)


def record(product, kind: str, *, user=None, session_key: str = "", value: float = 1.0, source: str = ""):
    """Record that a shopper did ``kind`` to ``product`` (an instance of ``VISREC_PRODUCT_MODEL``).

    The event counts for the product the adapter maps it to
    (:meth:`~recommendations.adapters.ProductAdapter.recommendable_pk`, e.g. a variant's
    parent); an event on a product that maps to none, or by nobody (no user and no
    session), is ignored. Returns the stored :class:`~recommendations.models.Interaction`
    or None. Unknown kinds raise ``ValueError``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r} (one of {sorted(KINDS)})")
    if (user is None or not user.is_authenticated) and not session_key:
        return None
    pk = get_adapter().recommendable_pk(product)
    if pk is None:
        return None
    if pk != product.pk:
        product = type(product)(pk=pk)
    fields = {"source": source} if source else {}
    if value != 1.0:
        fields["value"] = value
    return record_interaction(product, kind, user=user, session_key=session_key, **fields)


#: Kinds recorded with asynchronous commit (see :func:`record_interaction`).
BROWSING_KINDS = frozenset({"view", "click"})


def record_interaction(product, kind: str, *, user=None, session_key: str = "", **fields) -> Interaction:
    """Record one shopper action (validated against the model's choices).

    ``product`` and ``user`` are saved instances, so their foreign keys need no existence
    query. Browsing events (views, clicks) commit asynchronously (``synchronous_commit``
    off for that one transaction): the page does not wait for the disk, and a database
    crash can lose at most the last fraction of a second of them. Carts, purchases and
    ratings commit durably. Outside a transaction a browsing event is one round trip: the
    setting and the insert go out together in a psycopg pipeline, which PostgreSQL runs as
    one implicit transaction (no ``BEGIN``/``SET``/``COMMIT`` exchanges).
    """
    interaction = Interaction(
        product=product,
        kind=kind,
        user=user if user is not None and user.is_authenticated else None,
        session_key=session_key or "",
        **fields,
    )
    if product.pk is None:
        raise ValueError("record_interaction needs a saved product")
    asynchronous = kind in BROWSING_KINDS and connection.vendor == "postgresql"
    if asynchronous and not connection.in_atomic_block and set(fields) <= {"source"}:
        # Django's own checks of the fields a caller's values reach; the rest is set here, valid by construction
        interaction.clean_fields(exclude=[f.name for f in Interaction._meta.fields if f.name not in _CALLER_FIELDS])
        _insert_browsing(interaction)
        return interaction
    interaction.full_clean(exclude=["product", "user"])
    with transaction.atomic():
        if asynchronous:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        interaction.save()
    return interaction


_CALLER_FIELDS = frozenset({"session_key", "source"})


def _insert_browsing(interaction: Interaction) -> None:
    """Insert a view or click in one round trip, committed asynchronously (see :func:`record_interaction`).

    Written out rather than through ``Model.save``: a product page records one per view.
    """
    fields = [f for f in Interaction._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(Interaction._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(Interaction._meta.pk.column)}"
    )
    values = [f.get_db_prep_save(f.pre_save(interaction, True), connection) for f in fields]
    connection.ensure_connection()
    with connection.connection.pipeline(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('synchronous_commit', 'off', true)")
        cursor.execute(sql, values)
        interaction.pk = cursor.fetchone()[0]
    interaction._state.adding, interaction._state.db = False, connection.alias


def record_interactions(interactions: list[Interaction]) -> list[Interaction]:
    """Store a batch of validated, unsaved interactions atomically; the stored rows, in order.

    An interaction whose ``event_key`` is already stored is not stored again: the stored
    row takes its place in the result, so a retried batch records nothing twice. A
    concurrent request storing the same keys makes the insert wait, then retry once.
    """
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _record_new_interactions(interactions)
        except IntegrityError:
            if attempt or not any(i.event_key for i in interactions):
                raise
    raise AssertionError("unreachable")


def _record_new_interactions(interactions: list[Interaction]) -> list[Interaction]:
    keys = [i.event_key for i in interactions if i.event_key]
    stored = {i.event_key: i for i in Interaction.objects.filter(event_key__in=keys)} if keys else {}
    new = []
    for interaction in interactions:
        if interaction.event_key in stored:
            continue
        new.append(interaction)
        if interaction.event_key:
            stored[interaction.event_key] = interaction
    Interaction.objects.bulk_create(new)
    return [stored[i.event_key] if i.event_key else i for i in interactions]


class IdempotencyKeyReused(ValueError):
    """An idempotency key came back with a different request body."""


IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


def fingerprint(data: Any) -> str:
    """SHA-256 of a JSON-able request body, independent of key order and whitespace."""
    return _sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode())


def run_once(
    scope: str, key: str, body_fingerprint: str, produce: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """Run ``produce`` (one transaction with it) once per ``(scope, key)`` and keep its ``(status, body)``.

    Returns ``(status, body, replayed)``. A repeat within ``IDEMPOTENCY_KEY_TTL`` returns
    the kept result without running it;
    with another body it raises :class:`IdempotencyKeyReused`. When ``produce`` raises,
    nothing is kept (the key may be used again). A concurrent repeat waits for the first.
    """
    with transaction.atomic():
        EventBatch.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_KEY_TTL).delete()
        try:
            with transaction.atomic():
                batch = EventBatch.objects.create(
                    scope=scope, key=key, fingerprint=body_fingerprint, status_code=0, response={}
                )
        except IntegrityError:
            kept = EventBatch.objects.get(scope=scope, key=key)
            if kept.fingerprint != body_fingerprint:
                raise IdempotencyKeyReused(key) from None
            return kept.status_code, kept.response, True
        batch.status_code, batch.response = produce()
        batch.save(update_fields=["status_code", "response"])
        return batch.status_code, batch.response, False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
