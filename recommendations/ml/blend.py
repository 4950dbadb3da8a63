"""A popularity prior, blended into a model's personal scores with a validated weight.

Personal models (neighbourhoods, factorisations, image similarity) rank by *what fits
a shopper*; how much a product sells at all is a second, independent signal that
they model only implicitly or not at all. :class:`PriorBlended` models score

    ``z(personal scores of the user) + w * z(log popularity)``

where ``z`` standardises (per user over the catalogue, respectively over items) so
``w`` means the same for every model. ``w`` is a parameter: ``None`` (the default)
learns it from the data at fit time: the newest share of the training interactions
is cut off as a validation set, a twin of the model is fitted on the rest, and the
``w`` of :data:`PRIOR_WEIGHTS` (and the prior's recency, :data:`PRIOR_HALF_LIVES`)
that maximises its Recall@``k`` on the cut is kept (ties: the first). The model
itself is then fitted on everything. A shop where taste is all gets ``w = 0``; one
where a few best-sellers dominate gets a large ``w``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Recommender
from .popularity import recent_item_counts

logger = logging.getLogger(__name__)

#: Candidate prior weights tried on the validation cut.
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Candidate half-lives (days) of the popularity prior; ``None`` = all-time.
PRIOR_HALF_LIVES = (None, 30.0, 120.0)
#: Share of the training entries (the newest by time) that validates the weight.
VALIDATION_FRACTION = 0.2
#: At most this many validation users are scored (a random, seeded sample) ...
MAX_VALIDATION_USERS = 5000
#: ... and at most this many user x item scores held at once (about 200 MB of float32).
MAX_VALIDATION_SCORES = 50_000_000


def estimate_new_item_share(
    user_items: sp.csr_matrix, context: FitContext | None, fraction: float = 0.2
) -> float | None:
    """Share of the newest interactions that went to items nobody had interacted with before.

    The newest ``fraction`` of the (user, item) entries by time is the window; an item is
    new there when its earliest entry falls inside the window. The share is weighted
    by interaction strength. ``None`` without timestamps or without entries.
    """
    if context is None or context.timestamps is None:
        return None
    ts = sp.csr_matrix(context.timestamps, dtype=np.float64).tocoo()
    if ts.shape != user_items.shape:
        raise ValueError("context.timestamps must have the shape of user_items")
    if not ts.nnz:
        return None
    strength = np.asarray(sp.csr_matrix(user_items, dtype=np.float64)[ts.row, ts.col]).ravel()
    cut = np.quantile(ts.data, 1.0 - fraction)
    first = np.full(ts.shape[1], np.inf)
    np.minimum.at(first, ts.col, ts.data)
    late = ts.data >= cut
    total = strength[late].sum()
    if total <= 0:
        return None
    return float(strength[late & (first[ts.col] >= cut)].sum() / total)


def log_prior(
    user_items: sp.csr_matrix,
    context: FitContext | None,
    half_life_days: float | None = 120.0,
    new_item_share: float | None = None,
) -> np.ndarray:
    """``log((1 - s) * recent shopper share + s * new / n_new)`` per item.

    Popularity counts shoppers (not strengths, whose scale differs between shops),
    halved every ``half_life_days`` (:func:`~.popularity.recent_item_counts`). A share
    ``s`` of the mass goes evenly to items nobody has interacted with yet (new
    products): ``new_item_share``, else :func:`estimate_new_item_share` (the shop's own
    history: how much of its newest interactions went to items unseen before), else 0
    (no timestamps, so no evidence that new items sell). Without a share, items nobody
    has interacted with get the median log value of the others (a typical item): no evidence, so
    the prior neither pushes them up nor shuts them out (their own scores decide).
    Floored at ``1e-6 / n_items``.
    """
    shoppers = (sp.csr_matrix(user_items) > 0).astype(np.float64)
    counts = recent_item_counts(shoppers, context, half_life_days)
    share = new_item_share if new_item_share is not None else estimate_new_item_share(user_items, context)
    share = 0.0 if share is None else share
    new = np.asarray(shoppers.getnnz(axis=0)) == 0
    n_items, total, n_new = max(len(counts), 1), counts.sum(), int(new.sum())
    if total <= 0:
        return np.zeros(len(counts), dtype=np.float32)
    prior = counts / total
    if n_new:
        s = min(max(share, 0.0), 1.0)
        prior = (1.0 - s) * prior + s * new / n_new
    logs = np.log(np.maximum(prior, 1e-6 / n_items))
    if n_new and not (prior[new] > 0).any():
        logs[new] = np.median(logs[~new])
    return logs.astype(np.float32)


def log_popularity(
    user_items: sp.csr_matrix,
    context: FitContext | None = None,
    half_life_days: float | None = None,
    new_items: bool = True,
) -> np.ndarray:
    """:func:`log_prior` standardised over items (zeros when constant).

    The new-item share is estimated (none without timestamps); ``new_items=False``
    gives items without interactions no share at all.
    """
    share = None if new_items else 0.0
    prior = log_prior(user_items, context, half_life_days, share).astype(np.float64)
    std = prior.std()
    return ((prior - prior.mean()) / std if std > 0 else np.zeros_like(prior)).astype(np.float32)


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores over the finite entries; ``-inf`` (not recommendable) stays ``-inf``."""
    scores = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    values = np.where(finite, scores, 0.0)
    mean = values.sum(axis=1, keepdims=True) / count
    var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count
    std = np.sqrt(var)
    out = np.where(std > 1e-12, (values - mean) / np.maximum(std, 1e-12), 0.0)
    return np.where(finite, out, -np.inf).astype(np.float32)


def blend(personal: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """``z(personal) + weight * prior``; with no prior (empty) the raw scores."""
    if not weight or prior.size == 0:
        return personal
    return standardise_rows(personal) + np.float32(weight) * prior[None, :]


def validation_cut(
    user_items: sp.csr_matrix, context: FitContext | None, fraction: float = VALIDATION_FRACTION, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix, FitContext | None]:
    """Split the entries of ``user_items``: the newest ``fraction`` by time validate.

    Without timestamps a seeded random ``fraction`` of the entries validates.
    Returns ``(fit part, validation part, context restricted to the fit part)``.
    """
    coo = sp.coo_matrix(user_items)
    stamps = context.timestamps if context is not None else None
    if stamps is not None and sp.csr_matrix(stamps).nnz:
        times = np.asarray(sp.csr_matrix(stamps)[coo.row, coo.col]).ravel()
        order = np.argsort(times, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(coo.nnz)
    held = np.zeros(coo.nnz, dtype=bool)
    held[order[len(order) - int(round(fraction * len(order))) :]] = True
    part = [
        sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=coo.shape, dtype=np.float32) for m in (~held, held)
    ]
    fit_context = None
    if context is not None:
        fit_stamps = None
        if stamps is not None:
            fit_stamps = sp.csr_matrix(stamps).multiply(part[0] != 0).tocsr()
        fit_context = FitContext(fit_stamps, context.item_categories, None, dict(context.extra))
    return part[0], part[1], fit_context


def recall_at(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int) -> float:
    """Mean Recall@``k`` of the rows of ``scores`` (``seen`` entries filtered)."""
    return float(per_user_recall(scores, seen, relevant, k).mean()) if len(scores) else 0.0


def per_user_recall(scores: np.ndarray, seen: sp.csr_matrix | None, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@``k`` of each row of ``scores`` (``seen`` entries filtered; ``None``: already done).

    A row whose ``k``-th best score is finite and strictly above the next one has one
    top-``k`` set: the scores at or above that threshold, found by one value partition
    (no index sort). Rows with a tie at the threshold, or non-finite top scores, take
    ``argpartition``'s pick among the tied items, as ranking them would.
    """
    if seen is not None:
        scores = scores.copy()
        rows, cols = seen.nonzero()
        scores[rows, cols] = -np.inf
    n = scores.shape[1]
    k = min(k, n)
    threshold, clear = np.zeros(len(scores)), np.zeros(len(scores), dtype=bool)
    if 0 < k < n:
        part = np.partition(scores, (n - k - 1, n - k, n - 1), axis=1)
        threshold = part[:, n - k]
        clear = (part[:, n - k - 1] < threshold) & np.isfinite(threshold) & np.isfinite(part[:, n - 1])
    tied = np.flatnonzero(~clear)
    top = np.full((len(scores), k), -1, dtype=np.int64)
    if k and len(tied):
        picked = np.argpartition(-scores[tied], k - 1, axis=1)[:, :k]
        top[tied] = np.where(np.isfinite(np.take_along_axis(scores[tied], picked, axis=1)), picked, -1)
    hits = np.zeros(len(scores))
    for row in range(len(scores)):
        wanted = relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]]
        if clear[row]:
            found = np.count_nonzero(scores[row, np.unique(wanted)] >= threshold[row])
        else:
            found = np.isin(top[row], wanted).sum()
        hits[row] = found / max(len(wanted), 1)
    return hits


def prior_options(
    user_items: sp.csr_matrix,
    context: FitContext | None,
    half_lives: tuple[float | None, ...] = PRIOR_HALF_LIVES,
    new_items: tuple[bool, ...] = (False, True),
) -> dict[tuple[float | None, bool], np.ndarray]:
    """Every candidate prior, by ``(half-life, new-item share on)`` (see :func:`log_popularity`).

    Without items lacking interactions, or without timestamps to estimate their share,
    the new-item variant equals the plain one and is left out.
    """
    out = {}
    estimable = estimate_new_item_share(user_items, context) not in (None, 0.0)
    for half_life in half_lives:
        for new in new_items:
            if new and not estimable:
                continue
            out[(half_life, new)] = log_popularity(user_items, context, half_life, new)
    return out


def choose_blend(
    personal: np.ndarray,
    priors: dict[tuple, np.ndarray],
    weights: tuple[float, ...],
    seen: sp.csr_matrix,
    relevant: sp.csr_matrix,
    k: int,
    combine=blend,
) -> tuple[float, tuple | None, float]:
    """``(weight, prior key, recall)`` of the blend with the best Recall@``k``.

    Candidates are tried in order and a later one must be strictly better, so with
    ``weights[0] == 0`` the plain personal scores win every tie: a prior is kept only
    where it helps on the validation cut. A prior's key does not matter at weight 0,
    which is scored once.
    """
    if combine is blend:  # standardise and filter once, not per candidate: the scores blend gives, filtered
        rows, cols = seen.nonzero()
        plain = np.array(personal, copy=True)  # weight 0: the raw personal scores
        plain[rows, cols] = -np.inf
        z = standardise_rows(personal)
        z[rows, cols] = -np.inf
        personal, seen = plain, None

        def combine(_, prior, weight):
            return z + np.float32(weight) * prior[None, :] if weight and prior.size else plain

    best, best_recall = (weights[0], None), -1.0
    plain_done = False
    for key, prior in priors.items():
        for weight in weights:
            if not weight:
                if plain_done:
                    continue
                plain_done = True
            scores = combine(personal, prior, weight)
            recall = float(per_user_recall(scores, seen, relevant, k).mean()) if len(scores) else 0.0
            if recall > best_recall + 1e-9:
                best, best_recall = (weight, key if weight else None), recall
    if not priors:
        best_recall = float(per_user_recall(personal, seen, relevant, k).mean()) if len(personal) else 0.0
    return float(best[0]), best[1], best_recall


class PriorBlended(Recommender):
    """Base of models whose scores blend in a popularity prior (see the module docstring).

    Subclasses store their weight parameter (``None`` = validated) under
    :attr:`weight_param`, implement :meth:`fit_personal` and :meth:`personal_scores`,
    and get ``fit`` and ``score`` from here. :meth:`make_prior` and :meth:`combine`
    may be overridden together with :attr:`prior_weights` for a model with its own prior.
    """

    #: Name of the constructor parameter holding the prior weight.
    weight_param: ClassVar[str] = "prior_weight"
    #: Candidate weights tried on the validation cut.
    prior_weights: ClassVar[tuple[float, ...]] = PRIOR_WEIGHTS
    #: Cut-off of the validation Recall that picks the weight.
    validation_k: ClassVar[int] = 50
    #: Whether the prior gives items without interactions (new products) a share. Only
    #: for models that can tell new items apart (by their image): to a collaborative
    #: model every new item looks the same, and the share would go to arbitrary ones.
    new_item_prior: ClassVar[bool] = False
    #: Constructor parameters of the personal part chosen on the validation cut when
    #: given as ``None``: name -> candidates (the first is used when nothing validates).
    #: After ``fit`` the attributes hold the chosen values.
    tuned_params: ClassVar[dict[str, tuple]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.prior = np.zeros(0, dtype=np.float32)
        self.weight = 0.0
        self.prior_key: tuple[float | None, bool] = (None, False)
        self.chosen: dict[str, Any] = {}

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        """Learn the personal part from the interactions."""
        raise NotImplementedError

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense personal scores (the role ``score`` plays in other models)."""
        raise NotImplementedError

    def make_prior(
        self, user_items: sp.csr_matrix, context: FitContext | None, key: tuple[float | None, bool]
    ) -> np.ndarray:
        """Per-item prior: :func:`log_popularity` with ``key = (half-life, new items)``."""
        return log_popularity(user_items, context, key[0], key[1])

    def half_lives(self) -> tuple[float | None, ...]:
        """Candidate half-lives of the prior, the first being the default (see :data:`PRIOR_HALF_LIVES`)."""
        return PRIOR_HALF_LIVES

    def new_item_options(self) -> tuple[bool, ...]:
        """Whether the prior gives new items their estimated share (:attr:`new_item_prior`)."""
        return (self.new_item_prior,)

    def combine(self, personal: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
        """Final scores from personal scores and the prior (default: :func:`blend`)."""
        return blend(personal, prior, weight)

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> PriorBlended:
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        weight = getattr(self, self.weight_param)
        self.prior_key = (self.half_lives()[0], self.new_item_options()[0])
        self.chosen = {name: getattr(self, name) for name in self.tuned_params}
        if weight is None or None in self.chosen.values():
            weight, key, self.chosen = self._validated(user_items, item_features, context)
            self.prior_key = key or self.prior_key
        self.weight = float(weight)
        for name, value in self.chosen.items():
            setattr(self, name, value)  # the fitted model records its choice (get_params, artifacts)
        self.fit_personal(user_items, item_features, context)
        self.prior = self.make_prior(user_items, context, self.prior_key)
        return self

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.combine(self.personal_scores(userids, user_items), self.prior, self.weight)

    def _candidates(self) -> list[dict[str, Any]]:
        """Every combination of the tuned parameters left ``None`` (the given ones fixed)."""
        combos: list[dict[str, Any]] = [{}]
        for name, options in self.tuned_params.items():
            given = getattr(self, name)
            values = options if given is None else (given,)
            combos = [{**c, name: v} for c in combos for v in values]
        return combos

    def _validated(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> tuple[float, tuple | None, dict[str, Any]]:
        """(weight, prior key, tuned parameters) with the best Recall on a validation cut.

        The weights start at 0 and a later candidate must be strictly better, so the
        plain model (no prior, the first parameters) stays unless the extras help.
        """
        fixed = getattr(self, self.weight_param)
        weights = self.prior_weights if fixed is None else (fixed,)
        candidates = self._candidates()
        best, best_recall = (weights[0], None, candidates[0]), -1.0
        fit_part, held, fit_context = validation_cut(user_items, context)
        held = (held - held.multiply(fit_part != 0)).tocsr()
        held.eliminate_zeros()
        users = np.flatnonzero((np.diff(held.indptr) > 0) & (np.diff(fit_part.indptr) > 0))
        if len(users) == 0:
            return best
        limit = max(100, min(MAX_VALIDATION_USERS, MAX_VALIDATION_SCORES // max(user_items.shape[1], 1)))
        if len(users) > limit:
            users = np.sort(np.random.default_rng(0).choice(users, limit, replace=False))
        k = min(self.validation_k, user_items.shape[1])
        seen, wanted = fit_part[users], held[users]
        keys = [(h, new) for h in self.half_lives() for new in self.new_item_options()]
        priors = {key: self.make_prior(fit_part, fit_context, key) for key in keys}
        # the default combine is blend: passed as such, choose_blend standardises each twin's scores once
        combine = blend if type(self).combine is PriorBlended.combine else self.combine
        for params in candidates:
            twin = type(self)(**{**self.get_params(), **params, self.weight_param: weights[0]})
            twin.fit_personal(fit_part, item_features, fit_context)
            personal = twin.personal_scores(users, seen)
            weight, key, recall = choose_blend(personal, priors, weights, seen, wanted, k, combine)
            if recall > best_recall + 1e-9:
                best, best_recall = (weight, key, params), recall
        logger.debug("%s: validated prior weight, key, parameters %s (recall@%d %.4f)", self.name, best, k, best_recall)
        return best

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "prior": self.prior, "weight": np.asarray(self.weight, dtype=np.float64)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.prior = np.asarray(state["prior"], dtype=np.float32)
        self.weight = float(state["weight"])
