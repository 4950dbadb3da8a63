"""Shared pieces of the torch ranking models (:mod:`.vbpr`, :mod:`.fusion`).

Positive sampling (optionally weighted towards recent interactions), negative sampling
among items that have interactions, item "freshness" buckets, and a ridge "fold-in"
map used to infer a user vector for shoppers unseen at fit time. Pure numpy: torch is
imported by the callers.

Freshness: an item's launch is its first interaction. At time ``t`` an item is in
bucket 0 ("new": no interaction before ``t``, which is what an item without any
interaction is at serving time) or in bucket ``1 + b`` by its age ``t - launch``
(edges :data:`AGE_EDGES_DAYS`). A learned bias per bucket, trained at each positive's
own time, tells how much shoppers favour new and recent products over old ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import FitContext

DAY = 86_400.0
AGE_EDGES_DAYS = np.array([7.0, 14.0, 28.0, 56.0, 112.0, 224.0])
N_AGE_BUCKETS = len(AGE_EDGES_DAYS) + 2


@dataclass
class Positives:
    """Training positives as parallel arrays plus the sampling weight of each pair.

    Attributes
    ----------
    users, items : numpy.ndarray
        Row and column index of each non-zero of ``user_items``.
    weights : numpy.ndarray
        Probability of drawing each pair (sums to one).
    warm_items : numpy.ndarray
        Sorted indices of items with at least one interaction (negatives come from here).
    times : numpy.ndarray, optional
        Unix time of each pair's latest interaction (``None`` without timestamps).
    launch : numpy.ndarray, optional
        Per item, the time of its first interaction (``inf`` for none).
    now : float
        Reference time of the fit (the latest timestamp unless ``context.now``).
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    warm_items: np.ndarray
    times: np.ndarray | None = None
    launch: np.ndarray | None = None
    now: float = 0.0

    def buckets_now(self, n_items: int) -> np.ndarray:
        """Freshness bucket of every item at ``now`` (all 0 without timestamps)."""
        if self.launch is None:
            return np.zeros(n_items, dtype=np.int64)
        return age_buckets(np.full(n_items, self.now), self.launch)


def age_buckets(times: np.ndarray, launch: np.ndarray) -> np.ndarray:
    """Bucket 0 when the item had no interaction before ``times``, else ``1 + age bin``."""
    age = (np.asarray(times, dtype=np.float64) - launch) / DAY
    fresh = ~(age > 0)  # also NaN / inf (never launched)
    return np.where(fresh, 0, 1 + np.searchsorted(AGE_EDGES_DAYS, np.nan_to_num(age), side="right"))


def positives(user_items: sp.csr_matrix, context: FitContext | None = None, half_life_days: float = 0.0) -> Positives:
    """Collect the positive pairs; with ``half_life_days > 0`` recent ones are drawn more often.

    The weight of a pair is ``0.5 ** (age / half_life)`` where ``age`` is measured from
    ``context.now`` (default: the latest timestamp) to the pair's latest interaction.
    """
    coo = sp.coo_matrix(user_items)
    keep = coo.data > 0
    users, items = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    weights = np.ones(len(users), dtype=np.float64)
    stamps = context.timestamps if context is not None else None
    times = launch = None
    now = 0.0
    if stamps is not None and sp.csr_matrix(stamps).nnz:
        lookup = sp.csr_matrix(stamps)
        now = context.now if context.now is not None else float(lookup.data.max())
        times = np.asarray(lookup[users, items]).ravel().astype(np.float64)
        times = np.where(times > 0, times, now)
        launch = np.full(user_items.shape[1], np.inf)
        np.minimum.at(launch, items, times)
        if half_life_days > 0:
            weights = 0.5 ** (np.clip(now - times, 0, None) / DAY / half_life_days)
    total = weights.sum()
    weights = weights / total if total > 0 else np.full(len(users), 1.0 / max(len(users), 1))
    return Positives(users, items, weights, np.unique(items), times, launch, now)


def triples(
    pos: Positives, batch_size: int, rng: np.random.Generator, n_negatives: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of ``(users, positives, negatives, positive buckets, negative buckets)`` minibatches.

    An epoch draws ``len(pos.users)`` pairs by weight (with replacement); negatives are
    uniform over warm items, shape ``(batch,)`` or ``(batch, n_negatives)``. Buckets are
    the items' freshness at the positive's time (zeros without timestamps).
    """
    n = len(pos.users)
    if n == 0:
        return
    draw = rng.choice(n, size=n, p=pos.weights) if not np.allclose(pos.weights, 1.0 / n) else rng.permutation(n)
    for start in range(0, n, batch_size):
        idx = draw[start : start + batch_size]
        shape = (len(idx),) if n_negatives == 1 else (len(idx), n_negatives)
        negatives = pos.warm_items[rng.integers(0, len(pos.warm_items), size=shape)]
        items = pos.items[idx]
        if pos.times is None:
            yield pos.users[idx], items, negatives, np.zeros(len(idx), np.int64), np.zeros(shape, np.int64)
            continue
        t = pos.times[idx]
        t_neg = t if n_negatives == 1 else t[:, None]
        yield (
            pos.users[idx],
            items,
            negatives,
            age_buckets(t, pos.launch[items]),
            age_buckets(t_neg, pos.launch[negatives]),
        )


def history_means(user_items: sp.csr_matrix, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean item vector of each row's history (binary) and the history length."""
    binary = sp.csr_matrix(user_items, copy=True)
    binary.data = (binary.data > 0).astype(np.float32)
    counts = np.asarray(binary.sum(axis=1)).ravel()
    sums = binary @ item_vectors
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32), counts


def fit_fold_in(history: np.ndarray, targets: np.ndarray, reg: float = 1.0) -> np.ndarray:
    """Ridge map ``W`` with ``history @ W ≈ targets`` (with a bias row appended to ``W``)."""
    x = np.hstack([history, np.ones((len(history), 1), dtype=history.dtype)]).astype(np.float64)
    gram = x.T @ x + reg * np.eye(x.shape[1])
    gram[-1, -1] -= reg  # the bias is not shrunk
    return np.linalg.solve(gram, x.T @ targets.astype(np.float64)).astype(np.float32)


def apply_fold_in(history: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Apply a map from :func:`fit_fold_in`."""
    return history @ weights[:-1] + weights[-1]


def seed_torch(seed: int) -> None:
    """Seed torch's CPU generator (torch imported lazily)."""
    import torch

    torch.manual_seed(seed)
