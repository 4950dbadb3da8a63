"""Why an item is on a list, in the shopper's terms.

- "For you": the product of the shopper's own history (viewed, clicked, carted, bought,
  rated) whose image vector is nearest (cosine) the recommended product's, with the
  strongest kind of event the shopper had with it (:class:`Because`). Items that fill a
  list from trending or popular products carry none; their ``reason`` says so.
- Similar items: what the item shares with the anchor product: its category, and its
  colour when the embedding version joins a colour histogram (:mod:`..ml.colour`; the
  histogram is the stored vector's tail, so nothing is recomputed) and the two are close.

Both are one SQL query for a whole ranked list, run when the list is computed and cached
with it, so a cached list carries its reasons and a read costs nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from django.db import DatabaseError, connection, transaction

from ..conf import visrec_settings
from ..ml.colour import ColourSpec
from ..models import EmbeddingModel, ProductSnapshot
from ..replicas import serving_connection
from .results import Because, Recommendation
from .taste import History
from .vectors import _names, _prepared_rows, anchor_sql, fetch_rows, pk_array, product_key

logger = logging.getLogger(__name__)

#: The ``reason`` values of "for you" items ranked from the shopper's history (the others fill up).
HISTORY_REASONS = frozenset({"model", "session"})

#: Event kinds, strongest first: a product viewed and then bought was "bought".
EVENT_STRENGTH = ("purchase", "add_to_cart", "rating", "click", "view")

#: ``why`` of a list item from its ``reason`` (for you and similar items also look at ``because``/the widget).
_WHY = {"trending": "trending", "popular": "popular", "pinned": "pinned", "recently-viewed": "recently-viewed"}


def why(widget: str, rec: Recommendation) -> str:
    """The shopper-facing group of an item's reason.

    "history" (for you, drawn in by the shopper's own products), "trending", "popular",
    "pinned", "similar" (similar items, search by photo), "recently-viewed".
    """
    if rec.reason in _WHY:
        return _WHY[rec.reason]
    if rec.because is not None or widget == "for-you":
        return "history"
    return "similar"


def why_text(widget: str, rec: Recommendation) -> str:
    """The words under a card: "Because you viewed", "Trending now", "Popular", "Same category, close colour"."""
    group = why(widget, rec)
    if rec.because is not None:
        return f"Because you {rec.because.verb}"
    if group == "trending":
        return "Trending now"
    if group == "popular":
        return "Popular"
    if group == "similar" and rec.shares:
        words = {"category": "same category", "colour": "close colour"}
        text = ", ".join(words[s] for s in rec.shares if s in words)
        return text[:1].upper() + text[1:]
    return ""


def _strongest_events(events: History) -> dict[int, str]:
    """Each history product's strongest event kind (:data:`EVENT_STRENGTH`)."""
    rank = {kind: n for n, kind in enumerate(EVENT_STRENGTH)}
    out: dict[int, str] = {}
    for _, pk, kind, _ in events.events:
        if pk not in out or rank.get(kind, len(rank)) < rank.get(out[pk], len(rank)):
            out[pk] = kind
    return out


def _primary_vectors_sql(name: str, model: EmbeddingModel) -> str:
    """A CTE ``name(pid, v)``: the primary image vector of each product of the array parameter (one per product)."""
    n, dims = _names(), int(model.dimensions)
    return (
        f"{name} AS MATERIALIZED (SELECT DISTINCT ON (i.{n.img_product}) i.{n.img_product} AS pid, "
        f"e.{n.emb_vector}::halfvec({dims}) AS v FROM {n.emb} e JOIN {n.img} i ON i.{n.img_pk} = e.{n.emb_image} "
        f"WHERE i.{n.img_product} = ANY(%s::{n.pk_type}[]) AND i.{n.img_primary} AND e.{n.emb_model} = {int(model.pk)} "
        f"ORDER BY i.{n.img_product}, i.{n.img_position}, e.{n.emb_image})"
    )


def nearest_history_sql(model: EmbeddingModel) -> str:
    """SQL: for each product of the first array, the product of the second whose primary vector is nearest (cosine).

    Rows ``(product, history product, cosine distance, its title, its image URL)``; ties go
    to the lower history product id.
    """
    n, quote = _names(), connection.ops.quote_name
    title, url = (quote(ProductSnapshot._meta.get_field(name).column) for name in ("title", "image_url"))
    return (
        f"WITH {_primary_vectors_sql('r', model)}, {_primary_vectors_sql('h', model)} "
        f"SELECT DISTINCT ON (r.pid) r.pid, h.pid, r.v <=> h.v AS d, p.{title}, NULLIF(p.{url}, '') "
        f"FROM r CROSS JOIN h JOIN {n.product} p ON p.{n.product_pk} = h.pid "
        f"ORDER BY r.pid, d, h.pid"
    )


def _guarded(sql: str, params: list) -> list[tuple] | None:
    """Rows of a reasons query, or None when it fails (a list is never lost for want of its reasons).

    Outside a transaction it runs under the widgets' time budget (``statement_timeout``,
    sent with it in one round trip, see :func:`_prepared_rows`); inside one in a
    savepoint, so a failure leaves the caller's transaction usable.
    """
    db = serving_connection()
    budget = [("statement_timeout", f"{int(visrec_settings.WIDGET_TIME_BUDGET_MS)}ms")]
    try:
        if db.in_atomic_block:
            with transaction.atomic(using=db.alias):
                return fetch_rows(sql, params, using=db.alias)[0]
        if visrec_settings.PREPARED_QUERIES and db.vendor == "postgresql":
            return _prepared_rows((sql, params), budget)
        return fetch_rows(sql, params, using=db.alias)[0]
    except DatabaseError:
        logger.warning("could not compute the reasons of a list; it is shown without them", exc_info=True)
        return None


def history_reasons(
    candidates: list[int], events: History, model: EmbeddingModel | None
) -> dict[int, tuple[int, str, str | None]] | None:
    """``{candidate: (history product, its title, its image URL)}``: the history product nearest each candidate.

    One query for the whole list (``candidates`` × the history's products, primary image
    vectors of ``model``). Candidates or history products without a vector are left out;
    empty without a model, candidates or history; None when the query failed.
    """
    history = events.product_ids
    if model is None or not candidates or not history:
        return {}
    rows = _guarded(nearest_history_sql(model), [pk_array(candidates), pk_array(history)])
    return None if rows is None else {row[0]: (row[1], row[3], row[4]) for row in rows}


def with_history_reasons(items: list[Recommendation], found: dict | None, events: History) -> list[Recommendation]:
    """``items`` with ``because`` set on the ones ranked from the history (``found``: :func:`history_reasons`)."""
    found = found or {}
    kinds = _strongest_events(events)
    out = []
    for rec in items:
        hit = found.get(rec.product.pk) if rec.reason in HISTORY_REASONS else None
        if hit is not None:
            rec = replace(rec, because=Because(hit[0], hit[1], hit[2], kinds.get(hit[0], "view")))
        out.append(rec)
    return out


def colour_dimensions(model: EmbeddingModel | None) -> int:
    """How many trailing dimensions of ``model``'s vectors are the colour histogram (0: none)."""
    colour = (model.preprocessing or {}).get("colour") if model is not None else None
    if not colour or not float(colour.get("weight", 0.0)):
        return 0
    return ColourSpec(int(colour["lightness_bins"]), int(colour["chroma_bins"])).dimensions


def colour_similarities(anchor_pk, candidates: list[int], model: EmbeddingModel | None) -> dict[int, float] | None:
    """``{candidate: cosine of its colour histogram with the anchor's}``.

    One query; empty without a colour histogram, None when the query failed.
    """
    tail = colour_dimensions(model)
    if not tail or not candidates:
        return {}
    dims = int(model.dimensions)
    start = dims - tail + 1  # pgvector's subvector counts from 1
    sql = (
        f"WITH a AS MATERIALIZED (SELECT subvector({anchor_sql('%s', model)}, {start}, {tail}) AS v), "
        f"{_primary_vectors_sql('r', model)} "
        f"SELECT r.pid, 1 - (subvector(r.v, {start}, {tail}) <=> (SELECT v FROM a)) FROM r"
    )
    rows = _guarded(sql, [product_key(anchor_pk), pk_array(candidates)])
    return None if rows is None else {row[0]: float(row[1]) for row in rows if row[1] is not None}


def with_shares(items: list[Recommendation], anchor, colours: dict[int, float] | None) -> list[Recommendation]:
    """Similar ``items`` with ``shares``: "category" (the anchor's), "colour" (cosine >= ``WHY_CLOSE_COLOUR``)."""
    colours = colours or {}
    category = getattr(anchor, "category_id", None)
    close = float(visrec_settings.WHY_CLOSE_COLOUR)
    out = []
    for rec in items:
        if rec.reason in _WHY:  # pins and fillers share nothing in particular
            out.append(rec)
            continue
        shares = []
        if category is not None and getattr(rec.product, "category_id", None) == category:
            shares.append("category")
        if colours.get(rec.product.pk, -1.0) >= close:
            shares.append("colour")
        out.append(replace(rec, shares=tuple(shares)) if shares else rec)
    return out
