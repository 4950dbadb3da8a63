"""For you and recently viewed: the shopper's own lists."""

from __future__ import annotations

import numpy as np

from ..conf import visrec_settings
from ..data import shopper_key
from ..replicas import serving_read
from ..rules import Rules, overfetch, rules_for
from . import sequence
from .fallbacks import _fill
from .keys import _cache_get_many, _cache_set, _key
from .lists import _blend, _finish, _has_shopper, _normalised, products_sql, raw_products
from .reasons import HISTORY_REASONS, history_reasons, with_history_reasons
from .results import Recommendation, RecommendationList
from .similar import _experiment_arm
from .taste import History, history, taste_expression
from .vectors import nearest_products, product_key
from .versions import Active, LoadedModel, loaded_model


def _model_for_shopper(loaded: LoadedModel | None, key: str, events: History, n: int) -> list[tuple[int, float]]:
    """The active model's ranking for shopper ``key``: its own row, or one folded in from ``events``.

    A shopper the model never saw (new since the last training) is scored from their
    events as they stand: a factor model solves for their user vector against its item
    factors (ALS exactly, one small least-squares solve; BPR and SGD MF approximately,
    ``ml.mf``), neighbour and visual models score from the items themselves. No retrain;
    the list is cached per shopper and latest event (``for_you``'s key), so the fold-in
    runs once per new event.
    """
    if loaded is not None and sequence.is_sequential(loaded.model):  # ranks from this shopper's events
        ids, scores = sequence.recommend_for_session(
            loaded.model, loaded.column, events.product_ids, n, items=loaded.neighbour_cols
        )
    elif loaded is None or (key not in loaded.row and not any(pk in loaded.column for pk in events.product_ids)):
        return []
    else:
        ids, scores = _model_row_scores(loaded, key, events, n)
    keep = (ids >= 0) & np.isfinite(scores)
    scores = scores[keep].astype(float)
    if len(scores):
        scores = scores - min(float(scores.min()), 0.0)
    return list(zip(loaded.pks(ids[keep]), _normalised(scores).tolist(), strict=True))


def _model_row_scores(loaded: LoadedModel, key: str, events: History, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of the model for the shopper's row (an unseen shopper gets a row id past the trained ones).

    The row weighs each event as training does (``INTERACTION_WEIGHTS``), so a folded-in
    purchase counts as much as one in the training matrix.
    """
    import scipy.sparse as sp

    weights = dict(visrec_settings.INTERACTION_WEIGHTS)
    found = [(loaded.column[pk], weights.get(kind, 1.0)) for _, pk, kind, _ in events.events if pk in loaded.column]
    cols = np.array([c for c, _ in found], dtype=np.int64)
    row = sp.csr_matrix(
        (np.array([w for _, w in found], dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
        shape=(1, len(loaded.items)),
    )
    row.sum_duplicates()
    userid = loaded.row.get(key, len(loaded.row))
    ids, scores = loaded.model.recommend(np.array([userid]), row, N=n, items=loaded.neighbour_cols)
    return ids[0], scores[0]


@serving_read
def for_you(
    *,
    user=None,
    session_key: str | None = None,
    limit: int = 12,
    category=None,
    rules: Rules | None = None,
    events: History | None = None,
    exclude=(),
    cached: bool = True,
) -> RecommendationList:
    """Recommendations for a signed-in user or an anonymous session.

    Blends the active model's scores (when it knows the shopper) with the session's
    live taste; cold shoppers get what is trending in ``category`` (the page's
    category, a context hint, not a filter), then overall, then popular. ``events``:
    the shopper's :func:`history` when the caller has already read it. ``exclude``:
    product ids not to show (the product page's own product), kept out of the query
    parameters rather than the rules, so the rules' compiled SQL is shared by every page.
    ``cached=False`` computes afresh and caches nothing (the owner's what-if replay).
    Items ranked from the history carry ``because``: the history product nearest them
    (:mod:`.reasons`; computed with the list and cached with it).
    """
    rules = rules_for("for-you", rules, category=category)
    act, arm = _experiment_arm("for-you", user, session_key)
    if events is None:
        events = history(user, session_key)
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    shopper = shopper_key(user_id, session_key or "") if _has_shopper(user, session_key) else ""
    depth = overfetch(limit, rules) + 8
    cat_id = getattr(category, "pk", category)
    exclude = sorted({product_key(pk) for pk in exclude}, key=str)
    key = _key("for-you", shopper, events.last_id, depth, cat_id, rules.cache_key(), act.key, arm.key, exclude, "why")
    found = _cache_get_many([key]).get(key) if cached else None
    if found is None:
        blend = arm.settings["FOR_YOU_BLEND"]
        ranked, source = _for_you_ranked(shopper, events, depth, cat_id, rules, act, blend, exclude)
        drawn = [pk for pk, _, reason in ranked if reason in HISTORY_REASONS]
        found = (ranked, source, history_reasons(drawn, events, act.embedding))  # cached with the list
        if cached and found[2] is not None:  # (not a list whose reasons failed: the next read tries again)
            _cache_set(key, found, int(visrec_settings.LIST_CACHE_SECONDS))
    ranked, source, because = found
    found = _finish("for-you", ranked, limit, rules, act, source, set(exclude), shopper=(user, session_key))
    found.items = with_history_reasons(found.items, because, events)
    found.arm = arm.label
    found.context = {"category": cat_id, "limit": limit, "exclude": exclude}
    return found


def _for_you_ranked(
    shopper: str, events: History, depth: int, cat_id, rules: Rules, act: Active, blend: dict, exclude=()
):
    seen = [*events.product_ids, *(pk for pk in exclude if pk not in set(events.product_ids))]
    model = _model_for_shopper(loaded_model(act.version), shopper, events, depth + len(exclude)) if shopper else []
    session: list[tuple[int, float]] = []
    if act.embedding is not None and events.events:
        taste = taste_expression(events, act.embedding)
        if taste is not None:
            session = nearest_products(
                taste,
                act.embedding,
                depth,
                exclude=seen,
                rules=rules,
                ef_search=int(visrec_settings.FOR_YOU_EF_SEARCH),
            )
    ranked = _blend({"model": model, "session": session}, dict(blend))
    source = "model+session" if model and session else "model" if model else "session" if session else ""
    if len(ranked) < depth:
        ranked = _fill(ranked, depth, cat_id, set(seen), rules)
        source = source or (ranked[0][2] if ranked else "empty")
    return ranked, source


@serving_read
def recently_viewed(
    *, user=None, session_key: str | None = None, limit: int = 8, exclude=(), events: History | None = None
) -> RecommendationList:
    """The shopper's recently viewed (or clicked, carted, bought) active products, newest first.

    ``events``: the shopper's :func:`history` when the caller has already read it.
    """
    if events is None:
        events = history(user, session_key)
    ids = [pk for pk in events.product_ids if pk not in set(exclude)]
    by_id = {p.pk: p for p in raw_products(*products_sql(ids, None))} if ids else {}
    items = [Recommendation(by_id[pk], 1.0, "recently-viewed") for pk in ids if pk in by_id][:limit]
    return RecommendationList("recently-viewed", items, None, None, "recently-viewed" if items else "empty")
