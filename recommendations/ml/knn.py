"""Neighbourhood models: item-based and user-based kNN with shrunk cosine similarity.

``sim(a, b) = a . b / (|a| |b| + shrink)`` over interaction vectors; each item (or
user) keeps only its ``k`` most similar neighbours, as a sparse matrix. Similarities
are computed in row chunks with sparse products, so memory stays at
``chunk x n_items`` however large the catalogue. Items no neighbour reaches (score 0)
are ordered by popularity through a tie-break far below any similarity.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Ids, Scores, register
from .blend import PriorBlended

#: scale of the popularity tie-break added to neighbourhood scores
TIE_BREAK = 1e-9


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a csr matrix (ties: lowest column)."""
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    keep = order[rank < k]
    keep.sort()
    return sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(np.minimum(counts, k))]), shape=m.shape)


def shrunk_cosine(
    left: sp.csr_matrix,
    right_t: sp.csr_matrix,
    left_norms: np.ndarray,
    right_norms: np.ndarray,
    shrink: float,
    k: int,
    chunk: int = 2048,
    exclude: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Top-``k`` shrunk cosine similarities of each row of ``left`` with each column of ``right_t``.

    Parameters
    ----------
    left : scipy.sparse.csr_matrix
        ``(n, d)`` row vectors.
    right_t : scipy.sparse.csr_matrix
        ``(d, m)`` column vectors.
    left_norms, right_norms : numpy.ndarray
        Euclidean norms of the rows of ``left`` and the columns of ``right_t``.
    shrink : float
        Added to the denominator: pairs with little support get smaller similarities.
    k : int
        Neighbours kept per row.
    chunk : int
        Rows per sparse product.
    exclude : numpy.ndarray, optional
        ``(n,)`` column to drop in each row (e.g. the row itself), ``-1`` for none.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, m)`` with at most ``k`` positive entries per row.
    """
    blocks = []
    for start in range(0, left.shape[0], chunk):
        stop = min(start + chunk, left.shape[0])
        block = sp.csr_matrix(left[start:stop] @ right_t, dtype=np.float32)
        rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
        block.data /= left_norms[start:stop][rows] * right_norms[block.indices] + shrink
        if exclude is not None:
            block.data[block.indices == exclude[start:stop][rows]] = 0.0
        block.data[block.data < 0] = 0.0
        block.eliminate_zeros()
        blocks.append(topk_per_row(block, k))
    if not blocks:
        return sp.csr_matrix((0, right_t.shape[1]), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def popularity_tie_break(user_items: sp.csr_matrix) -> np.ndarray:
    """Tiny per-item scores (below any similarity) that rank items no neighbour reaches by popularity."""
    counts = np.asarray(sp.csr_matrix(user_items).getnnz(axis=0), dtype=np.float64)
    return (TIE_BREAK * counts / max(counts.max(initial=0.0), 1.0)).astype(np.float32)


def _norms(m: sp.csr_matrix, axis: int) -> np.ndarray:
    return np.sqrt(np.asarray(m.multiply(m).sum(axis=axis), dtype=np.float64).ravel()).astype(np.float32)


def _csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape),
    }


def _csr_from_state(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in state[f"{prefix}_shape"])
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]), shape=shape)


@register
class ItemKNN(PriorBlended):
    """Item-based kNN: a user's score for item j is ``sum_i r_ui * sim(i, j)``.

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    shrink : float
        Cosine shrinkage term.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "item_knn"
    needs_item_features = False

    def __init__(self, k: int = 100, shrink: float = 100.0, prior_weight: float | None = None) -> None:
        super().__init__()
        self.prior_weight = prior_weight
        self.k = k
        self.shrink = shrink
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        self.tie_break = np.zeros(0, dtype=np.float32)

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        x = sp.csr_matrix(user_items, dtype=np.float32)
        item_users = x.T.tocsr()
        norms = _norms(x, axis=0)
        n_items = x.shape[1]
        self.similarity = shrunk_cosine(item_users, x, norms, norms, self.shrink, self.k, exclude=np.arange(n_items))
        self.tie_break = popularity_tie_break(x)

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray((sp.csr_matrix(user_items, dtype=np.float32) @ self.similarity).toarray())
        return scores + self.tie_break

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        """The stored neighbours of each item, best first (ties: lowest column).

        Read from the item's row of the sparse similarity alone: a dense row of the
        whole catalogue would cost milliseconds per call at a million items.
        """
        itemids = np.atleast_1d(np.asarray(itemids))
        ids = np.full((len(itemids), N), -1, dtype=np.int64)
        scores = np.full((len(itemids), N), -np.inf, dtype=np.float32)
        sim = self.similarity
        for row, item in enumerate(itemids):
            span = slice(sim.indptr[item], sim.indptr[item + 1])
            cols, values = sim.indices[span], sim.data[span]
            positive = values > 0
            cols, values = cols[positive], values[positive]
            best = np.lexsort((cols, -values))[:N]
            ids[row, : len(best)], scores[row, : len(best)] = cols[best], values[best]
        return ids, scores

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), **_csr_state("similarity", self.similarity), "tie_break": self.tie_break}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.similarity = _csr_from_state("similarity", state)
        self.tie_break = np.asarray(state["tie_break"], dtype=np.float32)


@register
class UserKNN(PriorBlended):
    """User-based kNN: items of the ``k`` most similar training users, weighted by similarity.

    New users (ids beyond the training matrix) are compared by the rows passed in;
    a training user is never its own neighbour.

    Parameters
    ----------
    k : int
        Neighbours per user.
    shrink : float
        Cosine shrinkage term.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "user_knn"
    needs_item_features = False

    def __init__(self, k: int = 200, shrink: float = 10.0, prior_weight: float | None = None) -> None:
        super().__init__()
        self.prior_weight = prior_weight
        self.k = k
        self.shrink = shrink
        self.user_items = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        self.user_items = sp.csr_matrix(user_items, dtype=np.float32)
        self._prepare()

    def _prepare(self) -> None:
        self._items_users = self.user_items.T.tocsr()
        self._norms = _norms(self.user_items, axis=1)
        self._tie_break = popularity_tie_break(self.user_items)

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        userids = np.atleast_1d(np.asarray(userids))
        rows = sp.csr_matrix(user_items, dtype=np.float32)
        n_train = self.user_items.shape[0]
        exclude = np.where(userids < n_train, userids, -1)
        sims = shrunk_cosine(
            rows, self._items_users, _norms(rows, 1), self._norms, self.shrink, self.k, exclude=exclude
        )
        return np.asarray((sims @ self.user_items).toarray()) + self._tie_break

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), **_csr_state("user_items", self.user_items)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.user_items = _csr_from_state("user_items", state)
        self._prepare()
