"""Popular and trending rankings, the last good list, and topping lists up when they run short."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from ..conf import visrec_settings
from ..models import ProductSnapshot
from ..replicas import serving_read
from ..rules import Rules, rules_for
from .keys import _cache_get_many, _cache_set, _key, _prefix
from .lists import _arranged
from .results import Ranked, Recommendation, RecommendationList

_RANKED_DEPTH = 200  # cached trending/popular candidates per category


_RANKED_KEPT = 2048


_ranked_local: dict[str, tuple[float, list[tuple[int, float]]]] = {}  # cache key -> (fresh until, rows)


_ranked_lock = threading.Lock()


def _ranked_ids(kind: str, category=None, at_least: int = 0) -> list[tuple[int, float]]:
    """Top popular (all time) or trending (recent window) product ids, cached.

    At least ``_RANKED_DEPTH`` (and ``at_least``, rounded up to a multiple of it) are kept.
    The rankings are shop-wide aggregates (hundreds of milliseconds over a large catalogue),
    so each process keeps its copy for ``TRENDING_CACHE_SECONDS`` besides the shared cache
    (a copy read from the shared cache may be up to twice that old), and one thread per
    process computes a missing one while the others wait for it: an emptied or restarted
    cache then costs one query per ranking, not one per request.
    """
    cat_id = getattr(category, "pk", category)
    depth = _RANKED_DEPTH * max(1, -(-int(at_least) // _RANKED_DEPTH))
    key = _key("ranked", kind, cat_id, depth)
    local = _ranked_local.get(key)
    if local is not None and time.monotonic() < local[0]:
        return local[1]
    with _ranked_lock:
        local = _ranked_local.get(key)
        if local is not None and time.monotonic() < local[0]:
            return local[1]
        ttl = int(visrec_settings.TRENDING_CACHE_SECONDS)
        rows = _cache_get_many([key]).get(key)
        if rows is None:
            rows = _rank(kind, cat_id, depth)
            _cache_set(key, rows, ttl)
        if len(_ranked_local) >= _RANKED_KEPT:
            _ranked_local.clear()
        _ranked_local[key] = (time.monotonic() + ttl, rows)
        return rows


def _rank(kind: str, cat_id, depth: int) -> list[tuple[int, float]]:
    qs = ProductSnapshot.objects.filter(recommendable=True, active=True, in_stock=True)
    if cat_id is not None:
        qs = qs.filter(category_id=cat_id)
    since = None
    if kind == "trending":
        since = timezone.now() - timedelta(seconds=int(visrec_settings.TRENDING_WINDOW_SECONDS))
    qs = _by_popularity(qs, since)
    if kind == "trending":
        qs = qs.filter(popularity__gt=0)
    return [(pk, float(score)) for pk, score in qs.values_list("pk", "popularity")[:depth]]


def _by_popularity(products, since=None):
    """``products`` by weighted event count (purchases 4, carts 2, others 1), most popular first."""
    weight = Q()
    events = "product__visrec_interactions"
    kind = f"{events}__kind"
    if since is not None:
        weight &= Q(**{f"{events}__created_at__gte": since})
    return products.annotate(
        popularity=Count(events, filter=weight & Q(**{kind: "purchase"})) * 4
        + Count(events, filter=weight & Q(**{kind: "add_to_cart"})) * 2
        + Count(events, filter=weight & ~Q(**{f"{kind}__in": ["purchase", "add_to_cart"]}))
    ).order_by("-popularity", "pk")


@serving_read
def popular(limit: int = 8, category=None, exclude: list[int] | None = None, *, rules: Rules | None = None):
    """Best sellers (weighted interactions), optionally within a category; a list of Recommendation.

    The admin's pins, blocks, boosts and category exclusions for every widget (or for
    ``"popular"``) apply, as in the other lists.
    """
    rules = rules_for("popular", rules or Rules(exclude_interacted_kinds=()), category=category)
    exclude = set(exclude or ())
    ranked = [(pk, s, "popular") for pk, s in _ranked_ids("popular", category, limit + len(exclude))]
    items = _arranged(ranked, limit, rules, exclude, merch=True)  # the admin's pins and boosts apply here too
    if category is None and not exclude and limit >= _LAST_GOOD_SIZE and items:
        _remember_popular(items)
    return items


@serving_read
def trending(limit: int = 8, category=None, exclude=(), *, rules: Rules | None = None) -> list[Recommendation]:
    """Most interacted-with products over the recent window (``TRENDING_WINDOW_SECONDS``)."""
    rules = rules or Rules(exclude_interacted_kinds=())
    ranked = [(pk, s, "trending") for pk, s in _ranked_ids("trending", category)]
    return _arranged(ranked, limit, rules, set(exclude))


_LAST_GOOD_SIZE = 24


_LAST_GOOD_REFRESH = 3600.0


def _remember_popular(items: list[Recommendation]) -> None:
    """Keep the last good popular list (with its products) for when the database is down."""
    _cache_set(_prefix() + "last-good-popular", (time.time(), items), 30 * 24 * 3600)


_LAST_GOOD_CHECK = 60.0


_last_good_checked: dict[str, float] = {}  # cache key -> when this process last found it fresh


def remember_popular_if_stale() -> None:
    """Refresh the last good popular list when it is missing or older than an hour.

    One cache read, at most once a minute per process (the widgets call this on every render).
    """
    key = _prefix() + "last-good-popular"
    now = time.monotonic()
    if now - _last_good_checked.get(key, -_LAST_GOOD_CHECK) < _LAST_GOOD_CHECK:
        return
    found = _cache_get_many([key]).get(key)
    if found is None or time.time() - found[0] > _LAST_GOOD_REFRESH:
        popular(_LAST_GOOD_SIZE)
        found = _cache_get_many([key]).get(key)
    if found is not None:
        _last_good_checked.clear()
        _last_good_checked[key] = now


def fallback_list(widget: str, limit: int, exclude=()) -> RecommendationList:
    """The last good popular list from the cache (no database needed), or an empty list."""
    try:
        key = _prefix() + "last-good-popular"
        items = (_cache_get_many([key]).get(key) or (0, []))[1]
    except Exception:
        items = []
    items = [r for r in items if r.product.pk not in set(exclude)][:limit]
    return RecommendationList(widget, items, None, None, "cache-fallback" if items else "empty")


def _fill(ranked: Ranked, limit: int, category, seen: set[int], rules: Rules) -> Ranked:
    """Top ``ranked`` up with trending (in ``category``, then overall), then popular ids."""
    out = list(ranked)
    seen = set(seen) | {pk for pk, _, _ in ranked}
    sources = [("trending", category), ("trending", None), ("popular", category), ("popular", None)]
    for kind, cat in dict.fromkeys(sources):
        if len(out) >= limit:
            break
        for pk, score in _ranked_ids(kind, cat):
            if pk not in seen:
                seen.add(pk)
                out.append((pk, score, kind))
    return out
