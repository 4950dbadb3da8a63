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
) -> RecommendationList:
    """Products that look like ``product``, blended with the active model's item neighbours.

    Rules apply (inactive and out-of-stock never shown; the admin's rules scoped to this
    product's page; its "not similar" neighbours hidden, good matches first); a product
    without a vector gets popular products of its category. ``cached=False`` computes
    afresh (the admin preview). Raises ``DatabaseError`` only if even that fails.
    """
    rules = rules_for("similar-items", rules, anchor=product)
    act, arm = _experiment_arm("similar-items", user, session_key)
    depth = overfetch(limit, rules) + 8  # spare candidates for products excluded later
    cards: dict = {}
    ranked, source = cached_ranked(
        ("similar", product.pk, depth, rules.cache_key(), act.key, arm.key),
        product.pk,
        cached,
        lambda: _similar_ranked(product, depth, rules, act, arm.settings["SIMILAR_BLEND"], cards),
    )
    found = _finish("similar-items", ranked, limit, rules, act, source, {product.pk}, (user, session_key), cards)
    found.arm = arm.label
    return found


def cached_ranked(parts: tuple, anchor_pk, cached: bool, compute: Callable[[], tuple[Ranked, str]]):
    """``(ranked, source)`` of a list anchored on a product: from the cache, or computed by ``compute()`` and cached.

    The key is ``parts``; an entry stays valid until the anchor's version changes (its
    product or images saved) or ``LIST_CACHE_SECONDS`` pass (a minute for a "popular"
    fallback). ``cached=False`` computes afresh and stores nothing (the admin preview).
    """
    key, pv_key = _key(*parts), product_version_key(anchor_pk)
    hit = _cache_get_many([key, pv_key]) if cached else {}
    pv = hit.get(pv_key, "")
    if key in hit and hit[key][0] == pv:
        return hit[key][1], hit[key][2]
    ranked, source = compute()
    if cached:
        _cache_set(key, (pv, ranked, source), int(visrec_settings.LIST_CACHE_SECONDS) if source != "popular" else 60)
    return ranked, source


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
