"""The shopper's history and the session taste built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from ..conf import visrec_settings
from ..models import EmbeddingModel, Interaction
from ..replicas import PRIMARY
from . import clock
from .lists import _has_shopper
from .vectors import SQLVector, _names, fetch_rows, pk_array


@dataclass
class History:
    """A shopper's latest events, newest first."""

    events: list[tuple[int, int, str, Any]] = field(default_factory=list)  # (id, product, kind, time)

    @property
    def last_id(self) -> int:
        return self.events[0][0] if self.events else 0

    @property
    def product_ids(self) -> list[int]:
        return list(dict.fromkeys(pk for _, pk, _, _ in self.events))


def history(user=None, session_key: str | None = None, limit: int | None = None) -> History:
    """The shopper's latest interactions (one indexed query), always read from the primary.

    They are the shopper's own fresh writes: read from a read replica they could miss the
    click just made (see :mod:`recommendations.replicas`). Serving at a past moment
    (:func:`clock.serving_at`, the what-if replay) reads the events up to it.
    """
    if not _has_shopper(user, session_key):
        return History()
    n = int(limit or visrec_settings.TASTE_HISTORY)
    quote = connection.ops.quote_name
    signed_in = user is not None and getattr(user, "is_authenticated", False)
    column, value = ("user_id", user.pk) if signed_in else ("session_key", session_key)
    at = clock.as_of()
    until = "AND created_at <= %s " if at is not None else ""
    sql = (  # as ``Interaction.objects.for_shopper`` selects, written out: this runs on every page
        f"SELECT id, product_id, kind, created_at FROM {quote(Interaction._meta.db_table)} "
        f"WHERE {quote(column)} = %s {until}ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    params = [value, at, n] if at is not None else [value, n]
    return History([tuple(row) for row in fetch_rows(sql, params, using=PRIMARY)[0]])


def _taste_weights(events: History) -> dict[int, float]:
    """Weight of each product in the shopper's taste: the event kinds' weights, halved every half-life."""
    weights = dict(visrec_settings.TASTE_WEIGHTS)
    half_life = max(float(visrec_settings.TASTE_HALF_LIFE_SECONDS), 1.0)
    now = clock.now()
    out: dict[int, float] = {}
    for _, pk, kind, created in events.events:
        age = max((now - created).total_seconds(), 0.0)
        out[pk] = out.get(pk, 0.0) + float(weights.get(kind, 1.0)) * 0.5 ** (age / half_life)
    return out


def taste_expression(events: History, model: EmbeddingModel) -> SQLVector | None:
    """SQL for the shopper's live taste: the weighted sum of the primary image vectors of recent events.

    Computed inside PostgreSQL (``vector * array_fill(weight)`` summed), so the vectors
    never travel to Python and back; the HNSW query takes it as an init-plan parameter,
    as it would a literal. Cosine distance ignores the sum's length. NULL when none of the
    products has a vector (the neighbour query then finds nothing). None without events.
    """
    weights = _taste_weights(events)
    if not weights:
        return None
    n, dims = _names(), int(model.dimensions)
    sql = (
        f"(SELECT sum(t.{n.emb_vector}::vector * array_fill(w.weight, ARRAY[{dims}])::vector)::halfvec({dims}) "
        f"FROM unnest(%s::{n.pk_type}[], %s::real[]) AS w(product_id, weight) "
        f"JOIN {n.img} ti ON ti.{n.img_product} = w.product_id AND ti.{n.img_primary} "
        f"JOIN {n.emb} t ON t.{n.emb_image} = ti.{n.img_pk} AND t.{n.emb_model} = {int(model.pk)})"
    )
    return SQLVector(sql, (pk_array(weights), "{" + ",".join(repr(float(w)) for w in weights.values()) + "}"))
