"""Similar items: visual neighbours blended with the active model's item neighbours."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection

from .. import experiments
from ..conf import visrec_settings
from ..models import ProductSnapshot
from ..replicas import on_primary, reading_replica, serving_read
from ..rules import Rules, overfetch, rules_for
from .fallbacks import _ranked_ids
from .keys import _cache_get_many, _cache_set, _key, product_version_key
from .lists import _blend, _finish, _normalised, raw_products
from .reasons import colour_similarities, with_shares
from .results import Ranked, Recommendation, RecommendationList
from .vectors import anchor_vector, nearest_products, product_key
from .versions import Active, LoadedModel, active, loaded_model


def _model_neighbours(loaded: LoadedModel | None, pk: int, n: int) -> list[tuple[int, float]]:
    if loaded is None or pk not in loaded.column:
        return []
    try:
        ids, scores = loaded.similar_items(loaded.column[pk], n)
    except NotImplementedError:
        return []
    keep = (ids >= 0) & np.isfinite(scores)
    return list(zip(loaded.pks(ids[keep]), _normalised(scores[keep].astype(float)).tolist(), strict=True))


@serving_read
def similar_items(
    product,
    limit: int = 8,
    *,
    rules: Rules | None = None,
    user=None,
    session_key: str | None = None,
    cached: bool = True,
    exclude=(),
) -> RecommendationList:
    """Products that look like ``product``, blended with the active model's item neighbours.

    Rules apply (inactive and out-of-stock never shown; the admin's rules scoped to this
    product's page; its "not similar" neighbours hidden, good matches first); a product
    without a vector gets popular products of its category. ``cached=False`` computes
    afresh (the admin preview). ``exclude``: product ids not to show (those the page has
    shown already); the list ranks as many more candidates, so it stays full. Items carry
    ``shares`` (:mod:`.reasons`: same category, close colour), computed with the list and
    cached with it. Raises ``DatabaseError`` only if even that fails.
    """
    rules = rules_for("similar-items", rules, anchor=product)
    act, arm = _experiment_arm("similar-items", user, session_key)
    exclude = {product.pk, *exclude}
    depth = overfetch(limit, rules) + 8 + page_spare(exclude)  # spare candidates for products excluded later
    cards: dict = {}

    def compute():
        ranked, source = _similar_ranked(product, depth, rules, act, arm.settings["SIMILAR_BLEND"], cards)
        return ranked, source, colour_similarities(product.pk, [pk for pk, _, _ in ranked], act.embedding)

    key = ("similar", product.pk, depth, rules.cache_key(), act.key, arm.key, "shares")
    ranked, source, colours = cached_ranked(key, product.pk, cached, compute)
    found = _finish("similar-items", ranked, limit, rules, act, source, exclude, (user, session_key), cards)
    found.items = with_shares(found.items, product, colours)
    found.arm = arm.label
    found.context = anchored_context(product, limit, exclude)
    return found


def page_spare(exclude: set) -> int:
    """Extra candidates for the page's products left out of a list (``exclude`` but the anchor), in steps of 8.

    Steps keep a few cached lists per product rather than one per page.
    """
    return 8 * -(-(len(exclude) - 1) // 8)


def anchored_context(product, limit: int, exclude: set) -> dict:
    """What a list anchored on ``product`` was asked for, as its impression logs it (the what-if replay)."""
    shown = sorted(exclude - {product.pk}, key=str)  # the page's products above this list
    return {"product": product.pk, "category": getattr(product, "category_id", None), "limit": limit, "exclude": shown}


def cached_ranked(parts: tuple, anchor_pk, cached: bool, compute: Callable[[], tuple]) -> tuple:
    """``(ranked, source, *extras)`` of a list anchored on a product: cached, or ``compute()``'s, then cached.

    The key is ``parts``; an entry stays valid until the anchor's version changes (its
    product or images saved) or ``LIST_CACHE_SECONDS`` pass (a minute for a "popular"
    fallback). ``cached=False`` computes afresh and stores nothing (the admin preview). An
    extra that is None (reasons whose query failed) is not stored: the next read tries again.
    """
    key, pv_key = _key(*parts), product_version_key(anchor_pk)
    hit = _cache_get_many([key, pv_key]) if cached else {}
    pv = hit.get(pv_key, "")
    if key in hit and hit[key][0] == pv:
        return hit[key][1:]
    found = tuple(compute())
    if cached and all(extra is not None for extra in found[2:]):
        timeout = int(visrec_settings.LIST_CACHE_SECONDS) if found[1] != "popular" else 60
        _cache_set(key, (pv, *found), timeout)
    return found


@serving_read
def anchor_product(pk: int):
    """The product ``pk`` with what ``similar_items`` needs of an anchor (id, category), or None.

    One plain query (the other fields are deferred): the similar-items API looks the
    anchor up on every call. A product a read replica does not have yet (created moments
    ago) is looked up on the primary.
    """
    quote = connection.ops.quote_name
    columns = [ProductSnapshot._meta.pk.column, ProductSnapshot._meta.get_field("category_id").column]
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(ProductSnapshot._meta.db_table)} "
        f"WHERE {quote(ProductSnapshot._meta.pk.column)} = %s"
    )
    try:
        key = product_key(pk)
    except ValidationError:
        return None
    found = next(iter(raw_products(sql, [key])), None)
    if found is None and reading_replica():
        with on_primary():
            found = next(iter(raw_products(sql, [key])), None)
    return found


def _experiment_arm(widget: str, user, session_key: str | None) -> tuple[Active, experiments.Arm]:
    """The active versions and blend settings of this shopper's experiment arm (the defaults outside one)."""
    act, arm = active(), experiments.arm_for(widget, user, session_key)
    if arm.version is not None and arm.version.pk != act.version_id:
        act = Active(act.embedding, arm.version)
    return act, arm


def _similar_ranked(
    product, depth: int, rules: Rules, act: Active, blend: dict, cards: dict | None = None
) -> tuple[Ranked, str]:
    visual: list[tuple[int, float]] = []
    if act.embedding is not None:
        anchor = anchor_vector(product.pk, act.embedding)
        visual = nearest_products(anchor, act.embedding, depth, exclude=[product.pk], rules=rules, cards=cards)
    model = _model_neighbours(loaded_model(act.version), product.pk, depth)
    ranked = _blend({"visual": visual, "model": model}, dict(blend))
    source = "visual" if visual else "model" if model else "popular"
    if len(ranked) < depth:
        category = getattr(product, "category_id", None)
        seen = {product.pk} | {pk for pk, _, _ in ranked}
        fill = [(pk, s, "popular") for pk, s in _ranked_ids("popular", category) if pk not in seen]
        ranked += fill[: depth - len(ranked)]
    return ranked, source


def similar_items_or_fallback(product, limit: int = 8) -> list[Recommendation]:
    """Similar items as a plain list (kept for older callers)."""
    return similar_items(product, limit).items
