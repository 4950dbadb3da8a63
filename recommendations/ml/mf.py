"""Matrix factorisation: implicit-feedback ALS and BPR (the ``implicit`` library), explicit SGD MF.

The learned factors are kept as plain arrays, so a saved model scores without
refitting and without ``implicit`` objects being pickled. Shoppers unseen in training
are folded in from the rows passed to :meth:`score`: exactly for ALS (one
least-squares solve), approximately for BPR (mean of their items' factors) and by a
ridge regression on their ratings for :class:`SGDMF`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Ids, Recommender, Scores, register, top_n

logger = logging.getLogger(__name__)


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _cosine_top_n(factors: np.ndarray, itemids: np.ndarray, n: int) -> tuple[Ids, Scores]:
    """Items nearest to ``itemids`` by cosine of ``factors`` (self and zero vectors excluded)."""
    norms = np.linalg.norm(factors, axis=1)
    unit = factors / np.maximum(norms, 1e-12)[:, None]
    scores = unit[itemids] @ unit.T
    scores[:, norms < 1e-12] = -np.inf
    scores[np.arange(len(itemids)), itemids] = -np.inf
    return top_n(scores, n)


class _FactorModel(Recommender):
    """Scores are ``user_factors @ item_factors.T``; subclasses fit and fold in new users."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def __init__(self) -> None:
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _user_vectors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        userids = np.atleast_1d(np.asarray(userids))
        known = userids < len(self.user_factors)
        out = np.empty((len(userids), self.item_factors.shape[1]), dtype=np.float32)
        out[known] = self.user_factors[userids[known]]
        if (~known).any():
            out[~known] = self._fold_in(sp.csr_matrix(user_items, dtype=np.float32)[np.flatnonzero(~known)])
        return out

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._user_vectors(userids, user_items) @ self.item_factors.T

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        return _cosine_top_n(self.item_factors, np.atleast_1d(np.asarray(itemids)), N)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors = np.asarray(state["item_factors"], dtype=np.float32)


@register
class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``'s CPU solver.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
        L2 penalty.
    alpha : float
        Confidence scale: ``c_ui = alpha * r_ui``.
    iterations : int
        ALS sweeps.
    random_state : int
        Seed of the initial factors.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 42,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                num_threads=_threads(),
                random_state=self.random_state,
            )
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=show_progress)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Exact ALS user step: ``(Y'Y + Y'(C - I)Y + reg I) x = Y'C p``."""
        y = self.item_factors.astype(np.float64)
        base = y.T @ y + self.regularization * np.eye(y.shape[1])
        out = np.zeros((user_items.shape[0], y.shape[1]), dtype=np.float32)
        for row in range(user_items.shape[0]):
            start, stop = user_items.indptr[row], user_items.indptr[row + 1]
            items, conf = user_items.indices[start:stop], self.alpha * user_items.data[start:stop].astype(np.float64)
            yi = y[items]
            a = base + (yi * (conf - 1.0)[:, None]).T @ yi
            out[row] = np.linalg.solve(a, yi.T @ conf)
        return out


@register
class BPR(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) via ``implicit``'s CPU trainer.

    ``implicit`` appends an item-bias column (the user side of it is 1); new users
    get the mean factors of their items, weighted by strength, and bias weight 1.

    Parameters
    ----------
    factors : int
        Latent dimensions (plus the bias column).
    learning_rate : float
        SGD step.
    regularization : float
        L2 penalty.
    iterations : int
        Epochs.
    random_state : int
        Seed of the initial factors and the sampling.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> BPR:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=_threads(),
            random_state=self.random_state,
        )
        model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=show_progress)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        weights = sp.csr_matrix(user_items, dtype=np.float32)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        out = np.asarray(weights @ self.item_factors) / np.maximum(totals, 1e-12)[:, None]
        out[:, -1] = 1.0
        return out.astype(np.float32)

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        return _cosine_top_n(self.item_factors[:, :-1], np.atleast_1d(np.asarray(itemids)), N)


@register
class SGDMF(_FactorModel):
    """Biased matrix factorisation for explicit ratings, trained by mini-batch SGD.

    Predicts ``r_ui = mu + b_u + b_i + p_u . q_i`` from the non-zero entries of
    ``user_items`` (the ratings) and recommends by predicted rating. New users get
    ``(b_u, p_u)`` from a ridge regression of their ratings on the item factors.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    learning_rate : float
        SGD step.
    regularization : float
        L2 penalty on factors and biases.
    epochs : int
        Passes over the ratings.
    batch_size : int
        Ratings per update.
    init_std : float
        Standard deviation of the initial factors.
    random_state : int
        Seed of the initial factors and the shuffling.
    """

    name = "sgd_mf"

    def __init__(
        self,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularization: float = 0.1,
        epochs: int = 40,
        batch_size: int = 256,
        init_std: float = 0.1,
        random_state: int = 42,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.random_state = random_state
        self.mean = 0.0

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> SGDMF:
        coo = sp.coo_matrix(user_items)
        users, items, ratings = coo.row, coo.col, coo.data.astype(np.float32)
        n_users, n_items = coo.shape
        rng = np.random.default_rng(self.random_state)
        self.mean = float(ratings.mean()) if len(ratings) else 0.0
        p = rng.normal(0.0, self.init_std, (n_users, self.factors)).astype(np.float32)
        q = rng.normal(0.0, self.init_std, (n_items, self.factors)).astype(np.float32)
        bu, bi = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
        lr, reg = self.learning_rate, self.regularization
        for epoch in range(self.epochs):
            order = rng.permutation(len(ratings))
            for start in range(0, len(order), self.batch_size):
                b = order[start : start + self.batch_size]
                u, i = users[b], items[b]
                err = ratings[b] - (self.mean + bu[u] + bi[i] + np.einsum("ij,ij->i", p[u], q[i]))
                pu, qi = p[u], q[i]
                np.add.at(bu, u, lr * (err - reg * bu[u]))
                np.add.at(bi, i, lr * (err - reg * bi[i]))
                np.add.at(p, u, lr * (err[:, None] * qi - reg * pu))
                np.add.at(q, i, lr * (err[:, None] * pu - reg * qi))
            if show_progress:
                logger.info("sgd_mf epoch %d/%d", epoch + 1, self.epochs)
        # biases ride along as extra columns: user [p, b_u, 1] . item [q, 1, mu + b_i]
        self.user_factors = np.hstack([p, bu[:, None], np.ones((n_users, 1), np.float32)])
        self.item_factors = np.hstack([q, np.ones((n_items, 1), np.float32), (self.mean + bi)[:, None]])
        return self

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        q = self.item_factors[:, : self.factors + 1].astype(np.float64)  # factors and the b_u column
        item_bias = self.item_factors[:, -1].astype(np.float64)
        out = np.zeros((user_items.shape[0], self.factors + 2), dtype=np.float32)
        out[:, -1] = 1.0
        ridge = self.regularization * np.eye(self.factors + 1)
        for row in range(user_items.shape[0]):
            start, stop = user_items.indptr[row], user_items.indptr[row + 1]
            if start == stop:
                continue
            items, ratings = user_items.indices[start:stop], user_items.data[start:stop].astype(np.float64)
            qi = q[items]
            out[row, :-1] = np.linalg.solve(qi.T @ qi + ridge, qi.T @ (ratings - item_bias[items]))
        return out

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        return _cosine_top_n(self.item_factors[:, : self.factors], np.atleast_1d(np.asarray(itemids)), N)

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "mean": np.asarray(self.mean)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.mean = float(state["mean"])
