"""Loading cards in ranked order (one query), arranging and blending ranked lists."""

from __future__ import annotations

import numpy as np
from django.db import connection

from ..models import Interaction
from ..rules import Rules, arrange, overfetch
from . import clock
from .cards import _card_fields, products_from_rows
from .results import Ranked, Recommendation, RecommendationList
from .rules_sql import rules_where
from .vectors import _names, fetch_rows, pk_array, text_array
from .versions import Active


def raw_products(sql: str, params) -> list:
    """Cards (:class:`ProductSnapshot` instances) of a written-out query (:func:`products_sql`).

    Its columns are set, the others deferred; columns that are not fields become
    attributes. Prepared like the other serving queries, and without ``RawQuerySet``'s
    per-query set-up.
    """
    return products_from_rows(*fetch_rows(sql, params))


def products_sql(ids, rules: Rules | None, user=None, session_key: str | None = None) -> tuple[str, list]:
    """SQL (and params) of the cards of products ``ids`` that pass ``rules`` (None: active), for :func:`raw_products`.

    One query over visrec's product snapshots: the card's columns (the primary image's URL
    among them), the rules' filter, and the shopper's products that must not be shown
    again (per the rules, e.g. bought) as a ``NOT EXISTS`` (those up to :func:`clock.as_of`
    when serving at a past moment).
    """
    n, quote = _names(), connection.ops.quote_name
    where, where_params = rules_where(rules)
    sql = (
        f"SELECT {', '.join(f'{n.product}.{quote(f.column)}' for f in _card_fields())} "
        f"FROM {n.product} WHERE {n.product}.{n.product_pk} = ANY(%s::{n.pk_type}[]) AND {where}"
    )
    params = [pk_array(ids), *where_params]
    if rules is not None and rules.exclude_interacted_kinds and _has_shopper(user, session_key):
        signed_in = user is not None and getattr(user, "is_authenticated", False)
        shopper = ("user_id", user.pk) if signed_in else ("session_key", session_key)
        at = clock.as_of()
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM {quote(Interaction._meta.db_table)} x "
            f"WHERE x.product_id = {n.product}.{n.product_pk} AND x.kind = ANY(%s::text[]) "
            f"AND x.{quote(shopper[0])} = %s{' AND x.created_at <= %s' if at is not None else ''})"
        )
        params += [text_array(rules.exclude_interacted_kinds), shopper[1], *([at] if at is not None else [])]
    return sql, params


def _load(ranked: Ranked, rules: Rules, exclude=(), pinned: bool = True, shopper=(None, None), cards=None):
    """Products of ``ranked`` (and the rules' pins) that pass the rules, in order (one query, :func:`products_sql`).

    ``cards``: products already loaded under the same ``rules`` (by the neighbour query,
    see :func:`nearest_products`); they are used as they are unless the shopper's own
    products must be left out (a per-shopper filter the shared neighbour query has not
    applied), and only the others are queried. Returns ``(items, pins)``.
    """
    pins = [pk for pk in rules.pins() if pk not in exclude] if pinned else []
    wanted = {pk for pk, _, _ in ranked if pk not in exclude} | set(pins)
    if not wanted:
        return [], []
    by_id = {}
    if cards and not (rules.exclude_interacted_kinds and _has_shopper(*shopper)):
        by_id = {pk: cards[pk] for pk in wanted if pk in cards}
        wanted -= by_id.keys()
    if wanted:
        by_id.update((p.pk, p) for p in raw_products(*products_sql(wanted, rules, *shopper)))
    items = [Recommendation(by_id[pk], score, reason) for pk, score, reason in ranked if pk in by_id]
    pinned_items = [Recommendation(by_id[pk], 1.0, "pinned") for pk in pins if pk in by_id]
    return items, pinned_items


def _finish(
    widget: str, ranked: Ranked, limit: int, rules: Rules, act: Active, source: str, exclude=(), shopper=(), cards=None
):
    """The list shown: ``ranked``'s products that pass the rules, arranged (pins, boosts, good matches, diversity)."""
    shown = _arranged(rules.lift(ranked), limit, rules, exclude, shopper or (None, None), merch=True, cards=cards)
    return RecommendationList(widget, shown, act.version_id, act.embedding_version, source)


def _arranged(
    ranked: Ranked, limit: int, rules: Rules, exclude=(), shopper=(None, None), merch: bool = False, cards=None
) -> list[Recommendation]:
    """Up to ``limit`` of ``ranked``'s products that pass the rules, arranged by :func:`arrange`.

    Candidates are loaded best first, a few more than the list needs at a time, until the
    list is full or they run out (a blend ranks several times more candidates than a
    widget shows; popular lists hundreds). ``merch``: the admin's pins, boosts and good
    matches apply; with boosts in force every candidate is loaded, as a boost can lift
    any of them.
    """
    step = len(ranked) if merch and rules.merch.boosts else overfetch(limit, rules) + 8
    loaded: list[Recommendation] = []
    pins: list[Recommendation] = []
    start = 0
    while True:
        items, pinned = _load(
            ranked[start : start + step], rules, exclude, pinned=merch and start == 0, shopper=shopper, cards=cards
        )
        pins = pinned if start == 0 else pins
        loaded += items
        start += step
        shown = arrange(rules.order(loaded) if merch else loaded, limit, rules, pins)
        if len(shown) >= limit or start >= len(ranked):
            return shown


def _has_shopper(user, session_key) -> bool:
    return bool(session_key) or (user is not None and getattr(user, "is_authenticated", False))


def _normalised(scores: np.ndarray) -> np.ndarray:
    top = float(np.max(scores)) if len(scores) else 0.0
    return scores / top if top > 0 else scores


def _blend(sources: dict[str, list[tuple[int, float]]], weights: dict[str, float]) -> Ranked:
    """Weighted sum of each source's scores; the reason is the source that contributed most."""
    total: dict[int, float] = {}
    best: dict[int, tuple[float, str]] = {}
    used = {name: rows for name, rows in sources.items() if rows}
    for name, rows in used.items():
        w = float(weights.get(name, 1.0)) if len(used) > 1 else 1.0
        for pk, score in rows:
            total[pk] = total.get(pk, 0.0) + w * score
            if w * score > best.get(pk, (float("-inf"), ""))[0]:
                best[pk] = (w * score, name)
    return sorted(((pk, s, best[pk][1]) for pk, s in total.items()), key=lambda t: -t[1])
