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
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Ids, Scores, register, top_n
from .blend import PriorBlended

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


class _FactorModel(PriorBlended):
    """Scores are ``user_factors @ item_factors.T``; subclasses fit and fold in new users."""

    needs_item_features = False
    user_factors: np.ndarray
    item_factors: np.ndarray

    def __init__(self, prior_weight: float | None) -> None:
        super().__init__()
        self.prior_weight = prior_weight
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

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._user_vectors(userids, user_items) @ self.item_factors.T

    def score_items(self, userids: np.ndarray, user_items: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """``score(...)[:, items]`` computed for ``items`` only.

        The prior blend standardises each row over every item; its mean and spread come
        from the factors' column sums and Gram matrix (kept per fitted model), so scoring a
        few thousand items of a large catalogue gives the same values without the rest.
        """
        if type(self).combine is not PriorBlended.combine:
            return super().score_items(userids, user_items, items)
        items = np.asarray(items, dtype=np.int64)
        users = self._user_vectors(userids, user_items)
        factors, prior = self._subset(items)
        personal = users @ factors.T
        if not self.weight or self.prior.size == 0:
            return personal
        sums, gram = self._moments()
        n = max(len(self.item_factors), 1)
        users64 = users.astype(np.float64)
        mean = users64 @ sums / n
        var = np.maximum(np.einsum("ij,jk,ik->i", users64, gram, users64) / n - mean**2, 0.0)
        std = np.sqrt(var)[:, None]
        z = np.where(std > 1e-12, (personal - mean[:, None]) / np.maximum(std, 1e-12), 0.0)
        return (z + np.float32(self.weight) * prior[None, :]).astype(np.float32)

    def _subset(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Item factors and prior of ``items``; the copy is kept while the same ``items`` array comes back (serving)."""
        cached = getattr(self, "_subset_cache", None)
        if cached is not None and cached[0] is items and cached[1] is self.item_factors:
            return cached[2], cached[3]
        self.keep_subset(items, np.ascontiguousarray(self.item_factors[items]))
        return self._subset_cache[2], self._subset_cache[3]

    def keep_subset(self, items: np.ndarray, factors: np.ndarray) -> None:
        """Score ``items`` (the same array object each call) from ``factors`` (``item_factors[items]``).

        Serving scores one fixed subset of a large catalogue on every call; it passes the
        subset's factors here as a memory-mapped array that all web processes share,
        rather than each process copying them on its first call.
        """
        if factors.shape != (len(items), self.item_factors.shape[1]):
            raise ValueError("factors must hold one row of item factors per item of items")
        prior = self.prior[items] if self.prior.size else self.prior
        self._subset_cache = (items, self.item_factors, factors, prior)

    def _moments(self, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """Column sums and Gram matrix of the item factors (float64), computed once per fitted factors.

        Summed over row chunks: a float64 copy of a million items' factors would
        briefly double a web process's memory.
        """
        cached = getattr(self, "_moments_cache", None)
        if cached is None or cached[0] is not self.item_factors:
            d = self.item_factors.shape[1]
            sums, gram = np.zeros(d), np.zeros((d, d))
            for start in range(0, len(self.item_factors), chunk):
                block = self.item_factors[start : start + chunk].astype(np.float64)
                sums += block.sum(axis=0)
                gram += block.T @ block
            cached = (self.item_factors, sums, gram)
            self._moments_cache = cached
        return cached[1], cached[2]

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        return _cosine_top_n(self.neighbour_vectors(), np.atleast_1d(np.asarray(itemids)), N)

    def neighbour_vectors(self) -> np.ndarray:
        return self.item_factors

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "user_factors": self.user_factors, "item_factors": self.item_factors}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.user_factors = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors = np.asarray(state["item_factors"], dtype=np.float32)


@register
class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``'s CPU solver.

    Parameters
    ----------
    factors : int, optional
        Latent dimensions; ``None`` = 64 or 16, whichever ranks better on the
        validation cut (:mod:`.blend`): few shoppers support few factors.
    regularization : float, optional
        L2 penalty; ``None`` = 0.1 or 10, validated likewise.
    alpha : float
        Confidence scale: ``c_ui = alpha * r_ui``.
    iterations : int
        ALS sweeps.
    random_state : int
        Seed of the initial factors.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "als"
    tuned_params = {"factors": (64, 16), "regularization": (0.1, 10.0)}

    def __init__(
        self,
        factors: int | None = None,
        regularization: float | None = None,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 42,
        prior_weight: float | None = None,
    ) -> None:
        super().__init__(prior_weight)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
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
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Exact ALS user step: ``(Y'Y + Y'(C - I)Y + reg I) x = Y'C p``.

        ``Y'Y`` is computed once per fitted factors (:meth:`_moments`): a call then costs
        one small solve per shopper, however large the catalogue.
        """
        factors = self.item_factors.shape[1]
        base = self._moments()[1] + self.regularization * np.eye(factors)
        out = np.zeros((user_items.shape[0], factors), dtype=np.float32)
        for row in range(user_items.shape[0]):
            start, stop = user_items.indptr[row], user_items.indptr[row + 1]
            items, conf = user_items.indices[start:stop], self.alpha * user_items.data[start:stop].astype(np.float64)
            yi = self.item_factors[items].astype(np.float64)
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
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
        prior_weight: float | None = None,
    ) -> None:
        super().__init__(prior_weight)
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=1,  # Hogwild SGD across threads differs run to run; one thread repeats for a seed
            random_state=self.random_state,
        )
        model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        weights = sp.csr_matrix(user_items, dtype=np.float32)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        out = np.asarray(weights @ self.item_factors) / np.maximum(totals, 1e-12)[:, None]
        out[:, -1] = 1.0
        return out.astype(np.float32)

    def neighbour_vectors(self) -> np.ndarray:
        return self.item_factors[:, :-1]  # the last column is the item bias


@register
class SGDMF(_FactorModel):
    """Biased matrix factorisation for explicit ratings, trained by mini-batch SGD with Adagrad steps.

    Predicts ``r_ui = mu + b_u + b_i + p_u . q_i`` from the non-zero entries of
    ``user_items`` (the ratings) and recommends by predicted rating. Each minibatch
    sums the gradients of every rating a parameter takes part in, and Adagrad divides
    each parameter's step by the root of its accumulated squared gradients: a shopper
    with hundreds of ratings in one batch moves no further than one with a single
    rating, so the fit cannot diverge however skewed the activity is.

    With ``negatives > 0``, that many unobserved items per rating are drawn as
    ratings of 0 with weight ``negative_weight``: a ranking over the whole catalogue
    must also learn *what* a shopper rates, not only how well (top-N quality of
    rating-only MF is poor; Cremonesi et al. 2010). New users get ``(b_u, p_u)``
    from a ridge regression of their ratings on the item factors.

    Parameters
    ----------
    factors : int, optional
        Latent dimensions; ``None`` = 32 or 8, whichever ranks better on the
        validation cut (:mod:`.blend`).
    learning_rate : float
        Adagrad base step.
    regularization : float
        L2 penalty on factors and biases.
    epochs : int
        Passes over the ratings.
    batch_size : int
        Ratings per update.
    init_std : float
        Standard deviation of the initial factors.
    negatives : int
        Unobserved items drawn per rating as 0-ratings (0 = ratings only).
    negative_weight : float
        Loss weight of a drawn 0-rating relative to an observed rating.
    random_state : int
        Seed of the initial factors, the shuffling and the negative draws.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "sgd_mf"
    tuned_params = {"factors": (32, 8)}

    def __init__(
        self,
        factors: int | None = None,
        learning_rate: float = 0.05,
        regularization: float = 0.02,
        epochs: int = 30,
        batch_size: int = 1024,
        init_std: float = 0.1,
        negatives: int = 2,
        negative_weight: float = 0.5,
        random_state: int = 42,
        prior_weight: float | None = None,
    ) -> None:
        super().__init__(prior_weight)
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.negatives = negatives
        self.negative_weight = negative_weight
        self.random_state = random_state
        self.mean = 0.0

    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        coo = sp.coo_matrix(user_items)
        n_users, n_items = coo.shape
        rng = np.random.default_rng(self.random_state)
        ratings = coo.data.astype(np.float32)
        self.mean = float(ratings.mean()) if len(ratings) and not self.negatives else 0.0
        params = _SGDParams.init(rng, n_users, n_items, self.factors, self.init_std)
        for epoch in range(self.epochs):
            order = rng.permutation(len(ratings))
            for start in range(0, len(order), self.batch_size):
                b = order[start : start + self.batch_size]
                users, items, targets, weights = self._batch(rng, coo.row[b], coo.col[b], ratings[b], n_items)
                params.step(users, items, targets - self.mean, weights, self.learning_rate, self.regularization)
            logger.debug("sgd_mf epoch %d/%d", epoch + 1, self.epochs)
        p, q, bu, bi = params.p, params.q, params.bu, params.bi
        # biases ride along as extra columns: user [p, b_u, 1] . item [q, 1, mu + b_i]
        self.user_factors = np.hstack([p, bu[:, None], np.ones((n_users, 1), np.float32)])
        self.item_factors = np.hstack([q, np.ones((n_items, 1), np.float32), (self.mean + bi)[:, None]])

    def _batch(self, rng: np.random.Generator, users, items, ratings, n_items: int):
        """Observed ratings plus ``negatives`` drawn 0-ratings per rating, with loss weights."""
        weights = np.ones(len(users), np.float32)
        if not self.negatives:
            return users, items, ratings, weights
        n_neg = len(users) * self.negatives
        return (
            np.concatenate([users, np.repeat(users, self.negatives)]),
            np.concatenate([items, rng.integers(0, n_items, n_neg)]),
            np.concatenate([ratings, np.zeros(n_neg, np.float32)]),
            np.concatenate([weights, np.full(n_neg, self.negative_weight, np.float32)]),
        )

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

    def neighbour_vectors(self) -> np.ndarray:
        return self.item_factors[:, : self.factors]  # the other columns carry the biases

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "mean": np.asarray(self.mean)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.mean = float(state["mean"])


@dataclass
class _SGDParams:
    """Factors and biases of :class:`SGDMF` with their Adagrad accumulators."""

    p: np.ndarray
    q: np.ndarray
    bu: np.ndarray
    bi: np.ndarray
    acc: dict

    @classmethod
    def init(cls, rng: np.random.Generator, n_users: int, n_items: int, factors: int, std: float) -> _SGDParams:
        p = rng.normal(0.0, std, (n_users, factors)).astype(np.float32)
        q = rng.normal(0.0, std, (n_items, factors)).astype(np.float32)
        bu, bi = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
        acc = {name: np.full_like(x, 1e-8) for name, x in (("p", p), ("q", q), ("bu", bu), ("bi", bi))}
        return cls(p, q, bu, bi, acc)

    def step(self, users, items, targets, weights, lr: float, reg: float) -> None:
        """One Adagrad step on the weighted squared error of a minibatch (gradients summed per parameter)."""
        pu, qi = self.p[users], self.q[items]
        err = weights * (targets - (self.bu[users] + self.bi[items] + np.einsum("ij,ij->i", pu, qi)))
        self._update("bu", self.bu, users, err - reg * self.bu[users], lr)
        self._update("bi", self.bi, items, err - reg * self.bi[items], lr)
        self._update("p", self.p, users, err[:, None] * qi - reg * pu, lr)
        self._update("q", self.q, items, err[:, None] * pu - reg * qi, lr)

    def _update(self, name: str, param: np.ndarray, index: np.ndarray, grad: np.ndarray, lr: float) -> None:
        rows, inverse = np.unique(index, return_inverse=True)
        total = np.zeros((len(rows), *param.shape[1:]), dtype=np.float32)
        np.add.at(total, inverse, grad)
        self.acc[name][rows] += total**2
        param[rows] += lr * total / np.sqrt(self.acc[name][rows])
