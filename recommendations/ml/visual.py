"""Image-based recommenders: item-to-item visual similarity and image-based CF.

Both score items by the cosine between image vectors, so a product is recommendable
the moment its image is embedded, before anyone has interacted with it (item cold
start). Items without an image (zero rows of ``item_features``) get no visual score.

:class:`ImageCF` models a shopper by several *taste vectors*: weighted spherical
k-means on the image vectors of what they interacted with (weights: interaction
strength, halved every ``half_life_days`` before their latest interaction), the
number of tastes growing with the history. An item scores a soft maximum of its cosines to
the tastes. Both models blend in the validated popularity prior of :mod:`.blend`, which
may give items nobody has interacted with yet a share estimated from the shop's own
history (:func:`.blend.estimate_new_item_share`); validation keeps it only where it helps.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Ids, Recommender, Scores, register, top_n
from .blend import PriorBlended
from .judged import learn_pair_weights, reweight
from .popularity import DAY

logger = logging.getLogger(__name__)


def _unit_rows(x: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(x, axis=1)
    keep = keep & (norms > 1e-8)
    return np.where(keep[:, None], x / np.maximum(norms, 1e-12)[:, None], 0.0).astype(np.float32), keep


#: Imaged items per whitened component (see :func:`prepare_features`).
WHITEN_ITEMS_PER_COMPONENT = 10


def prepare_features(item_features: np.ndarray, center: bool = True, whiten: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit image vectors, optionally centred or PCA-whitened, and the has-image mask.

    Centring removes the direction all (non-negative, CNN) vectors share, which
    spreads cosines out. Whitening (``whiten`` > 0) also projects onto that many
    principal components of the catalogue's vectors and scales each to unit
    variance, so rare visual traits weigh as much as common ones. At most one
    component per ``WHITEN_ITEMS_PER_COMPONENT`` imaged items is kept: the trailing
    components of a small catalogue's covariance are sampling noise (photo framing,
    backgrounds), and whitening would blow them up to the weight of real traits.
    Rows of zeros (no image) stay zero.
    """
    x = np.asarray(item_features, dtype=np.float32)
    x, has_image = _unit_rows(x, np.ones(len(x), dtype=bool))
    if not (center or whiten) or has_image.sum() < 2:
        return x, has_image
    mean = x[has_image].mean(axis=0)
    centred = np.where(has_image[:, None], x - mean, 0.0).astype(np.float32)
    if whiten:
        imaged = centred[has_image].astype(np.float64)
        values, vectors = np.linalg.eigh(imaged.T @ imaged / len(imaged))
        n_components = min(whiten, len(values), max(1, len(imaged) // WHITEN_ITEMS_PER_COMPONENT))
        top = np.argsort(values)[::-1][:n_components]
        top = top[values[top] > 1e-10 * max(values.max(), 1e-30)]
        projection = (vectors[:, top] / np.sqrt(values[top])).astype(np.float32)
        centred = centred @ projection
    return _unit_rows(centred, has_image)


def history_weights(
    user_items: sp.csr_matrix, context: FitContext | None, half_life_days: float | None
) -> sp.csr_matrix:
    """Interaction strength, decayed by age relative to each user's latest interaction.

    Without timestamps (or without a half-life) the strengths are returned unchanged.
    """
    weights = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    if not half_life_days or context is None or context.timestamps is None:
        return weights
    ts = sp.csr_matrix(context.timestamps, dtype=np.float64, copy=True)
    if ts.shape != weights.shape:
        raise ValueError("context.timestamps must have the shape of user_items")
    counts = np.diff(ts.indptr)
    latest = np.zeros(ts.shape[0])
    nonempty = counts > 0
    latest[nonempty] = np.maximum.reduceat(ts.data, ts.indptr[:-1][nonempty]) if ts.nnz else 0.0
    ts.data = np.exp2(-(np.repeat(latest, counts) - ts.data) / (half_life_days * DAY))
    return sp.csr_matrix(weights.multiply(ts))


def spherical_kmeans(x: np.ndarray, weights: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Weighted spherical k-means of unit rows, deterministic.

    Starts from the heaviest row, then repeatedly the row farthest from the chosen
    centres; empty clusters are dropped.

    Returns
    -------
    (centres, mass) : tuple of numpy.ndarray
        ``(k', d)`` unit centres (``k' <= k``) and each centre's share of the weight.
    """
    k = max(1, min(k, len(x)))
    chosen = [int(np.argmax(weights))]
    best = x @ x[chosen[0]]
    for _ in range(1, k):
        nxt = int(np.argmin(best))
        chosen.append(nxt)
        best = np.maximum(best, x @ x[nxt])
    centres = x[chosen]
    assign = np.zeros(len(x), dtype=np.int64)
    for it in range(iterations):
        new_assign = np.argmax(x @ centres.T, axis=1)
        if it and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        sums = np.zeros((len(centres), x.shape[1]), dtype=np.float64)
        np.add.at(sums, assign, weights[:, None] * x)
        norms = np.linalg.norm(sums, axis=1)
        keep = norms > 1e-12
        centres = (sums[keep] / norms[keep, None]).astype(np.float32)
        assign = np.cumsum(keep)[assign] - 1
    assign = np.argmax(x @ centres.T, axis=1)
    mass = np.bincount(assign, weights=weights, minlength=len(centres))
    return centres.astype(np.float32), mass / max(mass.sum(), 1e-12)


def _batched_top_n(queries: np.ndarray, features: np.ndarray, valid: np.ndarray, itemids: np.ndarray, n: int):
    scores = queries @ features.T
    scores[:, ~valid] = -np.inf
    scores[np.arange(len(itemids)), itemids] = -np.inf
    return top_n(scores, n)


class _VisualBase(Recommender):
    """Holds the prepared image vectors; item-to-item similarity by cosine."""

    center: bool
    whiten: int = 0

    def __init__(self) -> None:
        self.features = np.zeros((0, 0), dtype=np.float32)
        self.has_image = np.zeros(0, dtype=bool)

    def _set_features(self, item_features: np.ndarray | None, n_items: int, context: FitContext | None = None) -> None:
        if item_features is None:
            raise ValueError(f"{type(self).__name__} needs item_features (image vectors)")
        if len(item_features) != n_items:
            raise ValueError("item_features must have one row per item column of user_items")
        self.features, self.has_image = prepare_features(item_features, self.center, self.whiten)
        pairs = getattr(context, "judged_pairs", None)
        if pairs is not None and len(pairs):  # the owner's judgements re-weight the dimensions
            weights = learn_pair_weights(self.features, pairs, context.judged_labels)
            features = reweight(self.features, weights)
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            self.features = np.divide(features, norms, out=np.zeros_like(features), where=norms > 1e-12)

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        itemids = np.atleast_1d(np.asarray(itemids))
        out_ids, out_scores = [], []
        for start in range(0, len(itemids), 1024):
            batch = itemids[start : start + 1024]
            ids, scores = _batched_top_n(self.features[batch], self.features, self.has_image, batch, N)
            no_image = ~self.has_image[batch]
            ids[no_image], scores[no_image] = -1, -np.inf
            out_ids.append(ids)
            out_scores.append(scores)
        if not out_ids:
            return top_n(np.zeros((0, len(self.features)), np.float32), N)
        return np.vstack(out_ids), np.vstack(out_scores)

    def neighbour_vectors(self) -> np.ndarray:
        return self.features  # unit rows; zero rows for items without an image

    def get_state(self) -> dict[str, np.ndarray]:
        return {"features": self.features, "has_image": self.has_image}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.features = np.asarray(state["features"], dtype=np.float32)
        self.has_image = np.asarray(state["has_image"], dtype=bool)


@register
class VisualSimilarity(PriorBlended, _VisualBase):
    """Content-based: items closest to the weighted mean image vector of the shopper's history.

    ``similar_items`` is "looks like this" by cosine of image vectors. Items without
    an image are never recommended by this model (score ``-inf``).

    Parameters
    ----------
    center : bool
        Centre the image vectors on the catalogue mean before the cosine.
    whiten : int, optional
        PCA-whiten onto this many components (0 = no whitening); ``None`` = 128 or 0,
        whichever ranks better on the validation cut (:mod:`.blend`): whitening helps
        a large catalogue of real photos, a small one of drawn products less.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "visual_similarity"
    new_item_prior = True

    tuned_params = {"whiten": (128, 0)}

    def __init__(self, center: bool = True, whiten: int | None = None, prior_weight: float | None = None) -> None:
        super().__init__()
        self.center = center
        self.whiten = whiten
        self.prior_weight = prior_weight

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        self._set_features(item_features, user_items.shape[1], context)

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        profiles = np.asarray(sp.csr_matrix(user_items, dtype=np.float32) @ self.features)
        profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
        scores = profiles @ self.features.T
        scores[:, ~self.has_image] = -np.inf
        return scores


@register
class ImageCF(PriorBlended, _VisualBase):
    """Image-based collaborative filtering with several taste vectors per shopper.

    Shoppers seen in training keep the tastes learned at fit time (with recency
    weights from ``FitContext.timestamps``); user ids beyond the training matrix
    (anonymous sessions) get tastes built on the fly from the rows passed in.

    The defaults of ``half_life_days``, ``max_tastes``, ``items_per_taste`` and
    ``taste_temperature`` are those ``benchmarks/tune_defaults.py`` chose by validation
    Recall@50 on synthetic shops (table in ``docs/benchmarks/defaults.md``), not on any
    benchmark dataset; a shop's own validation (``benchmarks/quality.py``'s grid) may
    override them.

    Parameters
    ----------
    half_life_days : float, optional
        History recency: a purchase's weight halves every ``half_life_days`` before
        the shopper's latest one (needs ``FitContext.timestamps``); ``None`` = no decay.
        Default 90 (``benchmarks/tune_defaults.py``).
    max_tastes : int
        Most taste vectors per shopper. Default 2 (``benchmarks/tune_defaults.py``).
    items_per_taste : int
        One more taste per this many (distinct, imaged) history items. Default 4
        (``benchmarks/tune_defaults.py``).
    iterations : int
        Spherical k-means iterations.
    taste_temperature : float
        How tastes combine: ``t * log sum_k mass_k exp(cos_k / t)``; 0 = the best
        taste alone (max), large = the mass-weighted mean of the cosines. Default 1.0
        (``benchmarks/tune_defaults.py``).
    popularity_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); 0 = pure visual; ``None`` =
        validated at fit, with the prior's recency and new-item share.
    center : bool
        Centre image vectors on the catalogue mean.
    whiten : int, optional
        PCA-whiten image vectors onto this many components (0 = no whitening);
        ``None`` = 128 or 0, whichever ranks better on the validation cut.
    """

    name = "image_cf"
    new_item_prior = True
    weight_param = "popularity_weight"
    tuned_params = {"whiten": (128, 0)}

    def __init__(
        self,
        half_life_days: float | None = 90.0,
        max_tastes: int = 2,
        items_per_taste: int = 4,
        iterations: int = 10,
        taste_temperature: float = 1.0,
        popularity_weight: float | None = None,
        center: bool = True,
        whiten: int | None = None,
    ) -> None:
        super().__init__()
        self.half_life_days = half_life_days
        self.max_tastes = max_tastes
        self.items_per_taste = items_per_taste
        self.iterations = iterations
        self.popularity_weight = popularity_weight
        self.taste_temperature = taste_temperature
        self.center = center
        self.whiten = whiten
        self.tastes = np.zeros((0, 0), dtype=np.float32)
        self.taste_mass = np.zeros(0, dtype=np.float32)
        self.taste_indptr = np.zeros(1, dtype=np.int64)

    @property
    def log_prior(self) -> np.ndarray:
        """Per-item prior (standardised log of recent popularity, possibly with a new-item share)."""
        return self.prior

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        self._set_features(item_features, user_items.shape[1], context)
        weights = history_weights(user_items, context, self.half_life_days)
        self.tastes, self.taste_mass, self.taste_indptr = self._tastes(weights)
        logger.debug("image_cf: %d taste vectors for %d users", len(self.tastes), user_items.shape[0])

    def _n_tastes(self, n_items: int) -> int:
        return max(1, min(self.max_tastes, math.ceil(n_items / max(self.items_per_taste, 1))))

    def _tastes(self, weights: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Taste vectors of each row of ``weights``, their weight shares and ``indptr``."""
        tastes, masses, indptr = [], [], [0]
        for row in range(weights.shape[0]):
            start, stop = weights.indptr[row], weights.indptr[row + 1]
            items, w = weights.indices[start:stop], weights.data[start:stop]
            ok = self.has_image[items] & (w > 0)
            if ok.any():
                x = self.features[items[ok]]
                centres, mass = spherical_kmeans(x, w[ok], self._n_tastes(int(ok.sum())), self.iterations)
                tastes.append(centres)
                masses.append(mass)
                indptr.append(indptr[-1] + len(centres))
            else:
                indptr.append(indptr[-1])
        d = self.features.shape[1]
        stacked = np.vstack(tastes).astype(np.float32) if tastes else np.zeros((0, d), dtype=np.float32)
        mass = np.concatenate(masses).astype(np.float32) if masses else np.zeros(0, dtype=np.float32)
        return stacked, mass, np.asarray(indptr, dtype=np.int64)

    def _user_tastes(self, userids: np.ndarray, user_items: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stacked tastes of the requested users (stored, or from their rows when new), masses, owner rows."""
        n_known = len(self.taste_indptr) - 1
        new = np.flatnonzero(userids >= n_known)
        new_tastes, new_mass, new_indptr = self._tastes(sp.csr_matrix(user_items, dtype=np.float64)[new])
        parts, masses, owners = [], [], []
        for row, user in enumerate(userids):
            if user < n_known:
                span = slice(self.taste_indptr[user], self.taste_indptr[user + 1])
                block, mass = self.tastes[span], self.taste_mass[span]
            else:
                j = int(np.searchsorted(new, row))
                span = slice(new_indptr[j], new_indptr[j + 1])
                block, mass = new_tastes[span], new_mass[span]
            parts.append(block)
            masses.append(mass)
            owners.append(np.full(len(block), row))
        d = self.features.shape[1]
        if not parts:
            return np.zeros((0, d), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return np.vstack(parts), np.concatenate(masses), np.concatenate(owners)

    def visual_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Taste-to-item cosines combined per user (see ``taste_temperature``); -1 for items without an image."""
        userids = np.atleast_1d(np.asarray(userids))
        tastes, mass, owner = self._user_tastes(userids, user_items)
        visual = np.zeros((len(userids), len(self.features)), dtype=np.float32)
        if not len(tastes):
            return visual
        sims = tastes @ self.features.T
        starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
        best = np.maximum.reduceat(sims, starts, axis=0)
        if self.taste_temperature > 0:
            t = self.taste_temperature
            group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(owner)]))
            spread = mass[:, None] * np.exp((sims - best[group]) / t)
            best = best + t * np.log(np.add.reduceat(spread, starts, axis=0))
        visual[owner[starts]] = best
        visual[np.ix_(np.unique(owner), ~self.has_image)] = -1.0
        return visual

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.visual_scores(userids, user_items)

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            **super().get_state(),
            "tastes": self.tastes,
            "taste_mass": self.taste_mass,
            "taste_indptr": self.taste_indptr,
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.tastes = np.asarray(state["tastes"], dtype=np.float32)
        self.taste_mass = np.asarray(state["taste_mass"], dtype=np.float32)
        self.taste_indptr = np.asarray(state["taste_indptr"], dtype=np.int64)
