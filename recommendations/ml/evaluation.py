"""Offline evaluation: train/test splits, ranking metrics @k, bootstrap intervals.

Splits work on an interactions table given as four aligned arrays (user index, item
index, value, unix timestamp) and return two boolean masks over its rows,
``(train, test)``. :func:`interactions_matrix` and :func:`relevant_sets` turn masked
rows into what recommenders and metrics consume.

Metrics take a recommendation id matrix ``(n_users, K)`` (best first, ``-1`` for
padding) and the relevant items of each row, and return one value per user (averaged
by :func:`evaluate`, with a bootstrap confidence interval over users). Relevance is
binary. Definitions, for one user with relevant set ``R`` and hits ``rel_1..rel_k``:

- precision@k = hits / k;  recall@k = hits / |R|;  hit rate@k = 1 if hits > 0
- NDCG@k = sum_i rel_i / log2(i + 1) divided by the ideal DCG over min(k, |R|) hits
- MAP@k: AP@k = sum_i precision@i * rel_i / min(k, |R|)
- coverage@k = distinct recommended items / n_items (one value for the whole list)
- novelty@k = mean over recommended items of -log2 p(i), p(i) = share of training
  users who interacted with i, at least 1 / n_users

``cold_*`` metrics restrict relevance to cold items (items with no training
interaction) and average over users with at least one cold relevant item;
``cold_coverage@k`` is distinct recommended cold items / cold items.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .base import Recommender

logger = logging.getLogger(__name__)

Masks = tuple[np.ndarray, np.ndarray]
Relevant = sp.spmatrix | Sequence[Iterable[int]] | Mapping[int, Iterable[int]]

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")
#: At most this many user (or anchor) x item scores are ranked at once (200 MB of float32;
#: a model's scoring makes a few temporaries of that size). 512 users x 1M items would be 2 GB.
MAX_SCORES = 50_000_000


# -- splits ----------------------------------------------------------------------------
def temporal_split(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, timestamps: np.ndarray, split_time: float
) -> Masks:
    """Global time cut: interactions at or after ``split_time`` are the test set.

    Parameters
    ----------
    users, items, values, timestamps : numpy.ndarray
        The interactions table, one entry per row (timestamps in unix seconds).
    split_time : float
        First test instant (unix seconds).

    Returns
    -------
    (train, test) : tuple of numpy.ndarray
        Boolean masks over the rows.
    """
    ts = np.asarray(timestamps)
    test = ts >= split_time
    return ~test, test


def fraction_cut_time(timestamps: np.ndarray, fraction: float) -> float:
    """The time that leaves (about) the last ``fraction`` of interactions after it.

    Ties stay together, so the test share can exceed ``fraction`` when many rows
    share the cut timestamp.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    ts = np.sort(np.asarray(timestamps))
    n_test = max(1, int(round(len(ts) * fraction)))
    return float(ts[len(ts) - n_test])


def fraction_split(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, timestamps: np.ndarray, fraction: float
) -> Masks:
    """Global time cut that leaves the last ``fraction`` of all interactions for test."""
    if len(timestamps) == 0:
        empty = np.zeros(0, dtype=bool)
        return empty, empty
    return temporal_split(users, items, values, timestamps, fraction_cut_time(timestamps, fraction))


def _per_user_order(users: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (user, time, row); plus each sorted row's rank within its user and user size."""
    users = np.asarray(users)
    order = np.lexsort((np.arange(len(users)), np.asarray(timestamps), users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    return order, rank, np.repeat(sizes, sizes)


def per_user_split(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, timestamps: np.ndarray, fraction: float
) -> Masks:
    """Each user's last ``fraction`` of interactions (by time) are test.

    A user with ``n`` interactions gives ``min(floor(fraction * n + 0.5), n - 1)`` to
    the test set, so every user keeps at least one training interaction. Ties in time
    are broken by row order (later rows are later).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    order, rank, size = _per_user_order(users, timestamps)
    n_test = np.minimum(np.floor(fraction * size + 0.5).astype(np.int64), size - 1)
    test = np.zeros(len(order), dtype=bool)
    test[order] = rank >= size - n_test
    return ~test, test


def leave_last_out(users: np.ndarray, items: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> Masks:
    """Each user's last interaction is test (users with at least two interactions)."""
    order, rank, size = _per_user_order(users, timestamps)
    test = np.zeros(len(order), dtype=bool)
    test[order] = (rank == size - 1) & (size >= 2)
    return ~test, test


_SPLITS = {
    "temporal": temporal_split,
    "fraction": fraction_split,
    "per_user": per_user_split,
    "leave_last_out": leave_last_out,
}


def validation_split(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray,
    train: np.ndarray,
    method: str = "fraction",
    **kwargs: float,
) -> Masks:
    """Apply a split inside the training rows only (for hyper-parameter tuning).

    Parameters
    ----------
    users, items, values, timestamps : numpy.ndarray
        The whole interactions table.
    train : numpy.ndarray
        Boolean mask of the training rows (the test rows are never looked at).
    method : str
        "temporal" (``split_time=``), "fraction" (``fraction=``), "per_user"
        (``fraction=``) or "leave_last_out".
    **kwargs
        The split's own parameter.

    Returns
    -------
    (fit, validation) : tuple of numpy.ndarray
        Boolean masks over the whole table; both are subsets of ``train``.
    """
    if method not in _SPLITS:
        raise ValueError(f"unknown split {method!r}; choose from {sorted(_SPLITS)}")
    train = np.asarray(train, dtype=bool)
    rows = np.flatnonzero(train)
    sub_fit, sub_val = _SPLITS[method](users[rows], items[rows], values[rows], timestamps[rows], **kwargs)
    fit = np.zeros(len(train), dtype=bool)
    val = np.zeros(len(train), dtype=bool)
    fit[rows[sub_fit]] = True
    val[rows[sub_val]] = True
    return fit, val


def interactions_matrix(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    mask: np.ndarray | None = None,
    aggregate: str = "sum",
) -> sp.csr_matrix:
    """Sparse ``(n_users, n_items)`` matrix of the (masked) rows.

    ``aggregate`` combines repeated user-item pairs: "sum" (interaction strength) or
    "max" (e.g. the latest timestamp, for :class:`~recommendations.ml.base.FitContext`).
    """
    if mask is not None:
        users, items, values = users[mask], items[mask], values[mask]
    if aggregate == "sum":
        m = sp.csr_matrix((np.asarray(values, dtype=np.float64), (users, items)), shape=shape)
        m.sum_duplicates()
        return m.astype(np.float32)
    if aggregate != "max":
        raise ValueError("aggregate must be 'sum' or 'max'")
    key = np.asarray(users, dtype=np.int64) * shape[1] + np.asarray(items, dtype=np.int64)
    order = np.lexsort((np.asarray(values), key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    pick = order[last]
    return sp.csr_matrix((np.asarray(values, dtype=np.float64)[pick], (users[pick], items[pick])), shape=shape)


def relevant_sets(users: np.ndarray, items: np.ndarray, mask: np.ndarray | None = None) -> dict[int, set[int]]:
    """``{user: set of items}`` of the (masked) rows, e.g. the test set."""
    if mask is not None:
        users, items = users[mask], items[mask]
    out: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        out.setdefault(u, set()).add(i)
    return out


# -- metrics ---------------------------------------------------------------------------
def _relevant_csr(relevant: Relevant, n_rows: int, n_items: int | None = None) -> sp.csr_matrix:
    """Binary csr matrix with one row per recommendation row."""
    if sp.issparse(relevant):
        m = sp.csr_matrix(relevant, dtype=np.float32, copy=True)
        m.sum_duplicates()
        m.eliminate_zeros()
        m.data[:] = 1.0
        return m
    rows = relevant.items() if isinstance(relevant, Mapping) else enumerate(relevant)
    r, c = [], []
    for row, its in rows:
        its = list(its)
        r.extend([row] * len(its))
        c.extend(its)
    width = max(n_items or 0, max(c) + 1 if c else 0)
    m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_rows, width))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def hit_matrix(rec_ids: np.ndarray, relevant: Relevant) -> np.ndarray:
    """Boolean ``(n_users, K)``: whether each recommended id is relevant to its row."""
    rec_ids = np.asarray(rec_ids, dtype=np.int64)
    n_rows, n_cols = rec_ids.shape
    rel = _relevant_csr(relevant, n_rows)
    if rel.shape[0] != n_rows:
        raise ValueError("relevant must have one row per recommendation row")
    width = max(rel.shape[1], int(rec_ids.max(initial=-1)) + 1, 1)
    rel = rel.tocoo()
    keys = np.sort(rel.row.astype(np.int64) * width + rel.col)
    query = np.arange(n_rows, dtype=np.int64)[:, None] * width + rec_ids
    pos = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    return (keys[pos] == query) & (rec_ids >= 0) if len(keys) else np.zeros((n_rows, n_cols), dtype=bool)


def _n_relevant(relevant: Relevant, n_rows: int) -> np.ndarray:
    return np.diff(_relevant_csr(relevant, n_rows).indptr).astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _precision(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def _recall(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_rel, 1)


def _hit_rate(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def _ndcg(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    dcg = hits[:, :k] @ disc[: hits[:, :k].shape[1]]
    ideal = np.r_[0.0, np.cumsum(disc)][np.minimum(n_rel, k).astype(np.int64)]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def _map(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec_at_i = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    denom = np.minimum(n_rel, k)
    return np.divide((prec_at_i * h).sum(axis=1), denom, out=np.zeros(len(h)), where=denom > 0)


_METRIC_FUNCS = {"precision": _precision, "recall": _recall, "ndcg": _ndcg, "map": _map, "hit_rate": _hit_rate}


def _per_user(name: str, rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    rec_ids = np.asarray(rec_ids)
    return _METRIC_FUNCS[name](hit_matrix(rec_ids, relevant), _n_relevant(relevant, len(rec_ids)), k)


def precision_at_k(rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user precision@k: relevant items among the first ``k`` / ``k``."""
    return _per_user("precision", rec_ids, relevant, k)


def recall_at_k(rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user recall@k: relevant items among the first ``k`` / all relevant items."""
    return _per_user("recall", rec_ids, relevant, k)


def ndcg_at_k(rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user NDCG@k (binary relevance, log2 discount, ideal over min(k, |R|) hits)."""
    return _per_user("ndcg", rec_ids, relevant, k)


def map_at_k(rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user average precision@k, normalised by min(k, |R|)."""
    return _per_user("map", rec_ids, relevant, k)


def hit_rate_at_k(rec_ids: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user 1.0 when any of the first ``k`` items is relevant, else 0.0."""
    return _per_user("hit_rate", rec_ids, relevant, k)


def catalog_coverage(rec_ids: np.ndarray, k: int, n_items: int, among: np.ndarray | None = None) -> float:
    """Distinct items in the top-``k`` lists / ``n_items`` (or / ``len(among)``, counting only those)."""
    ids = np.unique(np.asarray(rec_ids)[:, :k])
    ids = ids[ids >= 0]
    if among is None:
        return len(ids) / n_items if n_items else 0.0
    among = np.asarray(among)
    return float(np.isin(ids, among).sum() / len(among)) if len(among) else 0.0


def item_popularity(train_user_items: sp.spmatrix) -> np.ndarray:
    """Share of training users who interacted with each item, at least ``1 / n_users``."""
    m = sp.csr_matrix(train_user_items)
    n_users = max(m.shape[0], 1)
    counts = np.bincount(m.indices[m.data != 0], minlength=m.shape[1]).astype(np.float64)
    return np.maximum(counts, 1.0) / n_users


def novelty_at_k(rec_ids: np.ndarray, k: int, popularity: np.ndarray) -> np.ndarray:
    """Per-user mean ``-log2 popularity`` of the first ``k`` recommended items (padding ignored)."""
    ids = np.asarray(rec_ids)[:, :k]
    valid = ids >= 0
    info = np.where(valid, -np.log2(popularity[np.where(valid, ids, 0)]), 0.0)
    n = valid.sum(axis=1)
    return np.divide(info.sum(axis=1), n, out=np.zeros(len(ids)), where=n > 0)


def bootstrap_ci(per_user_values: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean, resampling users.

    Parameters
    ----------
    per_user_values : numpy.ndarray
        One value per user.
    n : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling (same seed, same interval).
    level : float
        Coverage of the interval.

    Returns
    -------
    (low, high) : tuple of float
        NaNs when there are no values.
    """
    values = np.asarray(per_user_values, dtype=np.float64)
    m = len(values)
    if m == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    step = max(1, 2_000_000 // m)
    for start in range(0, n, step):
        stop = min(n, start + step)
        means[start:stop] = values[rng.integers(0, m, size=(stop - start, m))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its percentile bootstrap interval, resampling users *together*.

    ``a`` and ``b`` hold one value per user for two models on the same users in the same
    order (e.g. per-user Recall@50). Each resample draws users with replacement and takes
    the mean difference over the same draw for both, so what the users have in common (an
    easy or a hard user) cancels: the interval is that of the difference, narrower than
    what two separate intervals suggest.

    Returns
    -------
    (mean, low, high) : tuple of float
        NaNs when there are no users.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("a and b must hold one value per user, for the same users")
    diff = a - b
    if not len(diff):
        return math.nan, math.nan, math.nan
    low, high = bootstrap_ci(diff, n, seed, level)
    return float(diff.mean()), low, high


# -- model evaluation ------------------------------------------------------------------
def batch_rows(n_items: int, batch_size: int) -> int:
    """Rows scored per batch: ``batch_size``, fewer when ``rows x n_items`` would pass :data:`MAX_SCORES`."""
    return max(1, min(batch_size, MAX_SCORES // max(n_items, 1)))


def recommend_all(
    model: Recommender, userids: np.ndarray, train_user_items: sp.csr_matrix, n: int, batch_size: int = 512
) -> np.ndarray:
    """Top-``n`` ids for ``userids`` in batches (of at most :data:`MAX_SCORES` scores), training items filtered out."""
    out = np.full((len(userids), n), -1, dtype=np.int64)
    batch_size = batch_rows(train_user_items.shape[1], batch_size)
    for start in range(0, len(userids), batch_size):
        batch = userids[start : start + batch_size]
        ids, _ = model.recommend(batch, train_user_items[batch], N=n, filter_already_liked_items=True)
        out[start : start + len(batch)] = ids
    return out


def _summarise(metrics: dict[str, float], key: str, values: np.ndarray, n_bootstrap: int, seed: int) -> None:
    metrics[key] = float(values.mean()) if len(values) else math.nan
    if n_bootstrap:
        metrics[f"{key}_low"], metrics[f"{key}_high"] = bootstrap_ci(values, n_bootstrap, seed)


def metrics_from_recommendations(
    rec_ids: np.ndarray,
    relevant: Relevant,
    train_user_items: sp.spmatrix,
    k_list: Sequence[int] = (12, 50),
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """All metrics of :func:`evaluate` from precomputed recommendation lists.

    Parameters
    ----------
    rec_ids : numpy.ndarray
        ``(n_users, K)`` recommended item ids, best first, ``-1`` padding.
    relevant : sparse matrix, sequence or mapping
        Relevant items per row of ``rec_ids``.
    train_user_items : scipy.sparse matrix
        The training matrix (defines popularity, for novelty, and cold items).
    k_list : sequence of int
        Cut-offs; each must be at most ``K``.
    n_bootstrap, seed : int
        Bootstrap resamples (0 = no intervals) and their seed.

    Returns
    -------
    dict
        ``"<metric>@k"`` means plus ``"_low"``/``"_high"`` 95 % bounds; ``coverage@k``;
        ``cold_<metric>@k`` and ``cold_coverage@k``; ``n_users``, ``n_cold_users``, ``n_items``.
    """
    rec_ids = np.asarray(rec_ids, dtype=np.int64)
    n_items = train_user_items.shape[1]
    rel = _relevant_csr(relevant, len(rec_ids), n_items)
    train_counts = np.bincount(sp.csr_matrix(train_user_items).indices, minlength=n_items)
    cold_items = np.flatnonzero(train_counts == 0)
    cold_rel = rel @ sp.diags((train_counts == 0).astype(np.float32))
    cold_rel.eliminate_zeros()
    cold_users = np.flatnonzero(np.diff(cold_rel.indptr) > 0)
    hits, cold_hits = hit_matrix(rec_ids, rel), hit_matrix(rec_ids, cold_rel)[cold_users]
    n_rel = np.diff(rel.indptr).astype(np.float64)
    n_cold = np.diff(cold_rel.indptr).astype(np.float64)[cold_users]
    popularity = item_popularity(train_user_items)
    metrics: dict[str, float] = {"n_users": len(rec_ids), "n_cold_users": len(cold_users), "n_items": n_items}
    for k in k_list:
        if k > rec_ids.shape[1]:
            raise ValueError(f"k={k} exceeds the {rec_ids.shape[1]} recommendations per user")
        for name, func in _METRIC_FUNCS.items():
            _summarise(metrics, f"{name}@{k}", func(hits, n_rel, k), n_bootstrap, seed)
            _summarise(metrics, f"cold_{name}@{k}", func(cold_hits, n_cold, k), n_bootstrap, seed)
        _summarise(metrics, f"novelty@{k}", novelty_at_k(rec_ids, k, popularity), n_bootstrap, seed)
        metrics[f"coverage@{k}"] = catalog_coverage(rec_ids, k, n_items)
        metrics[f"cold_coverage@{k}"] = catalog_coverage(rec_ids, k, n_items, among=cold_items)
    return metrics


def evaluate(
    model: Recommender,
    train_user_items: sp.csr_matrix,
    test_relevant: Mapping[int, Iterable[int]] | sp.spmatrix,
    k_list: Sequence[int] = (12, 50),
    users: np.ndarray | None = None,
    min_train_items: int = 1,
    batch_size: int = 512,
    n_bootstrap: int = 1000,
    seed: int = 0,
    drop_train_items: bool = True,
) -> dict[str, float]:
    """Rank all items for the test users and measure the ranking.

    Parameters
    ----------
    model : Recommender
        A fitted model; ``model.recommend`` is called with training items filtered.
    train_user_items : scipy.sparse.csr_matrix
        ``(n_users, n_items)`` training interactions (the model's input rows).
    test_relevant : dict or sparse matrix
        Held-out relevant items: ``{user: items}`` or a ``(n_users, n_items)`` matrix.
    k_list : sequence of int
        Cut-offs.
    users : numpy.ndarray, optional
        Users to evaluate; default: users with a relevant test item and at least
        ``min_train_items`` training items.
    min_train_items : int
        See ``users``.
    batch_size : int
        Users per ``recommend`` call.
    n_bootstrap, seed : int
        Bootstrap resamples for the 95 % intervals (0 = none) and their seed.
    drop_train_items : bool
        Drop relevant items the user already has in training: they are filtered from
        the recommendations, so they could never be hit.

    Returns
    -------
    dict
        See :func:`metrics_from_recommendations`.
    """
    train = sp.csr_matrix(train_user_items)
    n_users, n_items = train.shape
    rel = _relevant_csr(test_relevant, n_users, n_items)
    if rel.shape != train.shape:
        raise ValueError("test_relevant must cover the same users and items as train_user_items")
    if drop_train_items:
        rel = _relevant_csr(rel - rel.multiply(train != 0), n_users, n_items)
    if users is None:
        has_train = np.diff(train.indptr) >= min_train_items
        users = np.flatnonzero((np.diff(rel.indptr) > 0) & has_train)
    users = np.asarray(users, dtype=np.int64)
    rec_ids = recommend_all(model, users, train, max(k_list), batch_size)
    logger.debug("evaluated %s on %d users", getattr(model, "name", model), len(users))
    return metrics_from_recommendations(rec_ids, rel[users], train, k_list, n_bootstrap, seed)


# -- the shop owner's similar-items judgements ---------------------------------------------


def judgement_agreement(
    similar_items: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    pairs: np.ndarray,
    labels: np.ndarray,
    k: int = 8,
    n_items: int | None = None,
) -> dict[str, float]:
    """How far item-to-item neighbours agree with the owner's judgements.

    Parameters
    ----------
    similar_items : callable
        ``similar_items(itemids, N) -> (ids, scores)``, e.g. a fitted model's method.
    pairs : numpy.ndarray
        ``(m, 2)`` item indices ``(anchor, neighbour)``.
    labels : numpy.ndarray
        ``(m,)``: ``1`` good match, ``-1`` not similar.
    k : int
        Size of the neighbour list shown.
    n_items : int, optional
        Items ``similar_items`` ranks: anchors are asked for in batches of at most
        :data:`MAX_SCORES` scores (of 256 without it).

    Returns
    -------
    dict
        ``judged_good_in_top@k`` (share of good pairs whose neighbour is in the anchor's
        top ``k``), ``judged_bad_excluded@k`` (share of not-similar pairs whose neighbour
        is not), ``judgement_agreement@k`` (share of all judged pairs the list agrees
        with) and ``judged_pairs``; NaN where there is nothing to average.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(labels)
    out = {f"judged_good_in_top@{k}": np.nan, f"judged_bad_excluded@{k}": np.nan, f"judgement_agreement@{k}": np.nan}
    out["judged_pairs"] = float(len(pairs))
    if not len(pairs):
        return out
    anchors, row = np.unique(pairs[:, 0], return_inverse=True)
    step = batch_rows(n_items or 1, 256)
    ids = np.concatenate(
        [np.asarray(similar_items(anchors[i : i + step], k)[0])[:, :k] for i in range(0, len(anchors), step)]
    )
    in_top = (ids[row] == pairs[:, 1, None]).any(axis=1)
    agrees = np.where(labels > 0, in_top, ~in_top)
    good, bad = labels > 0, labels <= 0
    if good.any():
        out[f"judged_good_in_top@{k}"] = float(in_top[good].mean())
    if bad.any():
        out[f"judged_bad_excluded@{k}"] = float((~in_top[bad]).mean())
    out[f"judgement_agreement@{k}"] = float(agrees.mean())
    return out


def cosine_neighbours(features: np.ndarray) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """``similar_items`` over item feature rows by cosine (the item itself and zero rows excluded)."""
    norms = np.linalg.norm(features, axis=1)
    unit = np.divide(features, norms[:, None], out=np.zeros_like(features, dtype=np.float32), where=norms[:, None] > 0)

    def similar(itemids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = unit[itemids] @ unit.T
        scores[np.arange(len(itemids)), itemids] = -np.inf
        scores[:, norms == 0] = -np.inf
        n = min(n, scores.shape[1])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        ids = np.take_along_axis(top, order, axis=1)
        return ids, np.take_along_axis(scores, ids, axis=1)

    return similar
