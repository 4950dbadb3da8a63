"""Complete the look: products of *other* categories that go with a product.

Co-purchases first: the products that shoppers put in their basket or bought within
``COMPLEMENT_WINDOW_SECONDS`` of this one (visrec's own event table), most shoppers
first. Below them, and for a product with no such history (a new one), the active model
version's compatibility model (:mod:`recommendations.ml.complements`): the products whose
pictures past buyers paired with pictures like this one. Products of the anchor's own
category never appear (the shop's category, through visrec's product snapshots); the
list tops up with popular products of other categories.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from django.db import connection

from ..conf import visrec_settings
from ..models import Interaction
from ..replicas import serving_read
from ..rules import Rules, overfetch, rules_for
from .fallbacks import _ranked_ids
from .lists import _finish, _normalised
from .results import ProductNotEmbedded, Ranked, RecommendationList
from .similar import anchored_context, cached_ranked, page_spare
from .vectors import fetch_rows, product_key, product_vector, text_array
from .versions import Active, active, loaded_model

logger = logging.getLogger(__name__)

WIDGET = "complete-the-look"
ANCHOR_EVENTS = 2000  # the anchor's latest basket/purchase events whose shoppers' baskets are read


@serving_read
def complete_the_look(
    product,
    limit: int = 8,
    *,
    rules: Rules | None = None,
    user=None,
    session_key: str | None = None,
    cached: bool = True,
    exclude=(),
) -> RecommendationList:
    """Products of other categories that go with ``product``: co-purchased first, then the compatibility model's.

    Rules apply as in the other lists (the admin's rules for ``"complete-the-look"``
    scoped to this product's page), plus the anchor's category excluded. ``source``:
    "co-purchase", "compatibility" or "popular" (what ranked the first products).
    ``exclude``: product ids not to show (those the page has shown already), as for
    :func:`~recommendations.serving.similar.similar_items`.
    """
    rules = other_categories(rules_for(WIDGET, rules, anchor=product), product)
    act = active()
    exclude = {product.pk, *exclude}
    depth = overfetch(limit, rules) + 8 + page_spare(exclude)
    ranked, source = cached_ranked(
        ("complements", product.pk, depth, rules.cache_key(), act.key),
        product.pk,
        cached,
        lambda: _complements_ranked(product, depth, act),
    )
    found = _finish(WIDGET, ranked, limit, rules, act, source, exclude, (user, session_key))
    found.context = anchored_context(product, limit, exclude)
    return found


def other_categories(rules: Rules, product) -> Rules:
    """``rules`` that also leave out ``product``'s own category (unchanged for a product without one)."""
    category = getattr(product, "category_id", None)
    if category is None or category in rules.exclude_categories:
        return rules
    return replace(rules, exclude_categories=(*rules.exclude_categories, category))


def _complements_ranked(product, depth: int, act: Active) -> tuple[Ranked, str]:
    """Co-purchased products (scores above 1), then the model's partners (up to 1), then popular ones.

    More candidates than ``depth`` are kept: products of the anchor's category are dropped
    only when the list is loaded through the rules.
    """
    wanted = depth * 4
    bought = copurchased(product.pk, wanted)
    ranked: Ranked = [(pk, 1.0 + s, "co-purchase") for pk, s in _normalised_rows(bought)]
    seen = {product.pk} | {pk for pk, _ in bought}
    model = [(pk, s) for pk, s in compatible(product.pk, act, wanted + len(seen)) if pk not in seen]
    ranked += [(pk, s, "compatibility") for pk, s in _normalised_rows(model)]
    seen |= {pk for pk, _ in model}
    source = "co-purchase" if bought else "compatibility" if model else "popular"
    if len(ranked) < wanted:
        ranked += [(pk, s, "popular") for pk, s in _ranked_ids("popular", None, wanted) if pk not in seen]
    return ranked, source


def _normalised_rows(rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Scores scaled into ``(0, 1]`` (the best 1), order kept."""
    if not rows:
        return []
    scores = np.array([s for _, s in rows], dtype=np.float64)
    scores = _normalised(scores - scores.min() + 1e-3 * max(float(np.ptp(scores)), 1.0))
    return [(pk, float(s)) for (pk, _), s in zip(rows, scores, strict=True)]


def copurchased(pk, limit: int) -> list[tuple[int, float]]:
    """``[(product pk, shoppers)]`` of the products bought with ``pk``, most shoppers first.

    "With": an event of ``COMPLEMENT_KINDS`` by the same signed-in user (or, for
    anonymous events, the same session) within ``COMPLEMENT_WINDOW_SECONDS`` of one on
    ``pk``. Two index lookups per anchor event (by product, then by the shopper's history),
    over the anchor's latest ``ANCHOR_EVENTS`` events: a best seller's list costs no more
    than that (and is cached).
    """
    quote = connection.ops.quote_name
    table = quote(Interaction._meta.db_table)
    kinds = text_array(visrec_settings.COMPLEMENT_KINDS)
    window = float(visrec_settings.COMPLEMENT_WINDOW_SECONDS)
    near = "b.created_at BETWEEN a.created_at - make_interval(secs => %s) AND a.created_at + make_interval(secs => %s)"
    sql = (
        f"WITH a AS (SELECT user_id, session_key, created_at FROM {table} "
        f"WHERE product_id = %s AND kind = ANY(%s::text[]) ORDER BY created_at DESC LIMIT {ANCHOR_EVENTS}), "
        f"b AS (SELECT b.product_id, 'u' || b.user_id::text AS who FROM a JOIN {table} b "
        f"ON b.user_id = a.user_id AND {near} WHERE b.kind = ANY(%s::text[]) "
        f"UNION ALL SELECT b.product_id, 's' || b.session_key FROM a JOIN {table} b "
        f"ON a.user_id IS NULL AND b.user_id IS NULL AND b.session_key = a.session_key AND {near} "
        f"WHERE b.kind = ANY(%s::text[])) "
        f"SELECT product_id, COUNT(DISTINCT who) FROM b WHERE product_id <> %s "
        f"GROUP BY product_id ORDER BY 2 DESC, 1 LIMIT {int(limit)}"
    )
    key = product_key(pk)
    params = [key, kinds, window, window, kinds, window, window, kinds, key]
    rows, _ = fetch_rows(sql, params)
    return [(row[0], float(row[1])) for row in rows]


def compatible(pk, act: Active, limit: int) -> list[tuple[int, float]]:
    """``[(product pk, score)]``: the compatibility model's best partners of ``pk``'s picture (none without either)."""
    loaded = loaded_model(act.version)
    found = getattr(loaded, "complements", None)
    if found is None or act.embedding is None:
        return []
    try:
        vector = np.asarray(product_vector(product_key(pk), act.embedding), dtype=np.float32)
    except ProductNotEmbedded:
        return []
    return found.partners(vector, limit, exclude=pk)
