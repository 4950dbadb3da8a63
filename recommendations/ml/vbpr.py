"""VBPR: visual Bayesian personalised ranking (He & McAuley, AAAI 2016), trained in torch.

Score of user ``u`` for item ``i``::

    s(u, i) = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i  (+ b_fresh(i))

with ``f_i`` the item's image vector, ``E`` a learned ``(d, k2)`` projection and
``β'`` a visual bias. Trained with the BPR loss on ``(u, i, j)`` triples by minibatch
Adam on the CPU with a fixed seed. Negatives are drawn from items that have
interactions only, so an item without any (a new product) keeps ``β_i = 0`` and
``γ_i = 0`` and is ranked by its picture alone: ``θ_u·(E f_i) + β'·f_i`` (plus the
fixed ``cold_bias`` prior, 0 by default, which a benchmark may tune on validation).

With timestamps, a learned freshness bias ``b_fresh`` by the item's age since its
first interaction (bucket 0 = no interaction yet; see :mod:`.pairwise`) is added,
trained at each positive's own time. Ages are frozen at fit time: refit regularly.

Serving needs numpy only: every learned array is stored, and ``E f_i`` and ``β'·f_i``
are precomputed at fit.

Users unseen at fit (new sessions, or rows with no training interaction) are folded
in from the history rows passed to :meth:`VBPR.score`: at fit time a ridge map is
learned from each training user's mean history item vector ``[γ_i, E f_i]`` to that
user's learned ``[γ_u, θ_u]``; a new shopper gets the map applied to the mean of
their own history items. This is linear, needs no gradient step at serving time, and
for a shopper with only cold items in the history falls back to the visual part.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .base import FitContext, register, top_n
from .blend import PriorBlended
from .pairwise import N_AGE_BUCKETS, apply_fold_in, fit_fold_in, history_means, positives, seed_torch, triples

log = logging.getLogger(__name__)


def as_features(item_features: np.ndarray | None, n_items: int) -> np.ndarray:
    """Item image vectors as float32, a single zero column when there are none."""
    if item_features is None:
        return np.zeros((n_items, 1), dtype=np.float32)
    features = np.asarray(item_features, dtype=np.float32)
    if features.shape[0] != n_items:
        raise ValueError(f"item_features has {features.shape[0]} rows, user_items {n_items} columns")
    return features


@register
class VBPR(PriorBlended):
    """Visual BPR with numpy serving and a linear fold-in for new users.

    Parameters
    ----------
    factors : int
        Dimension ``k`` of the collaborative factors ``γ``.
    visual_factors : int
        Dimension ``k2`` of the visual user factors ``θ`` (and of ``E f_i``).
    epochs : int
        Passes over the positives.
    lr : float
        Adam learning rate.
    reg : float
        L2 weight on the factors ``γ_u, γ_i, θ_u`` in a batch.
    reg_bias : float
        L2 weight on the item biases ``β_i``.
    reg_visual : float
        L2 weight on ``E`` and ``β'``.
    batch_size : int
        Triples per Adam step.
    half_life_days : float
        When > 0 and timestamps are given, positives are drawn with weight
        ``0.5 ** (age / half_life_days)`` so recent taste counts more; 0 = uniform.
    cold_bias : float
        Fixed prior added to items without interactions (new arrivals); 0 = none.
    freshness : bool
        Learn the freshness bias (needs ``context.timestamps``; ignored without).
    seed : int
        Seed of the initialisation and of the sampling.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "vbpr"
    new_item_prior = True

    def __init__(
        self,
        factors: int = 16,
        visual_factors: int = 16,
        epochs: int = 20,
        lr: float = 0.01,
        reg: float = 1e-3,
        reg_bias: float = 1e-3,
        reg_visual: float = 1e-4,
        batch_size: int = 1024,
        half_life_days: float = 0.0,
        cold_bias: float = 0.0,
        freshness: bool = True,
        seed: int = 0,
        prior_weight: float | None = None,
    ) -> None:
        super().__init__()
        self.prior_weight = prior_weight
        self.factors = int(factors)
        self.visual_factors = int(visual_factors)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.reg = float(reg)
        self.reg_bias = float(reg_bias)
        self.reg_visual = float(reg_visual)
        self.batch_size = int(batch_size)
        self.half_life_days = float(half_life_days)
        self.cold_bias = float(cold_bias)
        self.freshness = bool(freshness)
        self.seed = int(seed)
        self.loss_history_: list[float] = []

    # -- training --------------------------------------------------------------------
    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        """Learn ``β, γ, θ, E, β'`` with BPR on the interactions and the image vectors."""
        import torch

        user_items = sp.csr_matrix(user_items)
        n_users, n_items = user_items.shape
        features = as_features(item_features, n_items)
        pos = positives(user_items, context, self.half_life_days)
        rng = np.random.default_rng(self.seed)
        seed_torch(self.seed)
        k, k2, d = self.factors, self.visual_factors, features.shape[1]
        params = {
            "beta": torch.zeros(n_items),
            "gamma_user": torch.randn(n_users, k) * 0.01,
            "gamma_item": torch.randn(n_items, k) * 0.01,
            "theta_user": torch.randn(n_users, k2) * 0.01,
            "E": torch.randn(d, k2) * (1.0 / np.sqrt(d)),
            "beta_visual": torch.zeros(d),
            "age_bias": torch.zeros(N_AGE_BUCKETS),
        }
        for p in params.values():
            p.requires_grad_(True)
        feats = torch.from_numpy(features)
        optimiser = torch.optim.Adam(list(params.values()), lr=self.lr)
        self.loss_history_ = []
        for epoch in range(self.epochs):
            total, count = 0.0, 0
            for batch in triples(pos, self.batch_size, rng):
                u, i, j, ai, aj = (torch.from_numpy(a) for a in batch)
                loss = self._batch_loss(params, feats, u, i, j, ai, aj)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * len(u), count + len(u)
            self.loss_history_.append(total / max(count, 1))
            log.debug("vbpr epoch %d/%d loss %.4f", epoch + 1, self.epochs, self.loss_history_[-1])
        arrays = {name: p.detach().numpy().astype(np.float32) for name, p in params.items()}
        if not self.freshness:
            arrays["age_bias"][:] = 0.0
        self.item_age_bucket_ = pos.buckets_now(n_items)
        self._set_learned(arrays, features, user_items, pos.warm_items)

    def _batch_loss(self, params: dict, feats, u, i, j, ai, aj):
        import torch.nn.functional as F

        gu, tu = params["gamma_user"][u], params["theta_user"][u]
        gi, gj = params["gamma_item"][i], params["gamma_item"][j]
        bi, bj = params["beta"][i], params["beta"][j]
        diff = feats[i] - feats[j]
        if self.freshness:
            bi, bj = bi + params["age_bias"][ai], bj + params["age_bias"][aj]
        x = bi - bj + (gu * (gi - gj)).sum(1) + (tu * (diff @ params["E"])).sum(1) + diff @ params["beta_visual"]
        reg = self.reg * ((gu**2).sum() + (gi**2).sum() + (gj**2).sum() + (tu**2).sum()) / len(u)
        reg = reg + self.reg_bias * ((bi**2).sum() + (bj**2).sum()) / len(u)
        reg = reg + self.reg_visual * ((params["E"] ** 2).sum() + (params["beta_visual"] ** 2).sum())
        return -F.logsigmoid(x).mean() + reg

    def _set_learned(self, arrays: dict, features: np.ndarray, user_items: sp.csr_matrix, warm: np.ndarray) -> None:
        cold = np.ones(features.shape[0], dtype=bool)
        cold[warm] = False
        arrays["beta"][cold] = 0.0
        arrays["gamma_item"][cold] = 0.0
        seen = np.asarray(user_items.getnnz(axis=1)).ravel() > 0
        self.beta_ = arrays["beta"]
        self.gamma_user_, self.gamma_item_ = arrays["gamma_user"], arrays["gamma_item"]
        self.theta_user_, self.E_, self.beta_visual_ = arrays["theta_user"], arrays["E"], arrays["beta_visual"]
        self.age_bias_ = arrays["age_bias"]
        self.cold_items_, self.seen_users_ = cold, seen
        self._precompute(features)
        item_vectors = np.hstack([self.gamma_item_, self.visual_items_])
        history, _ = history_means(user_items[seen], item_vectors)
        targets = np.hstack([self.gamma_user_[seen], self.theta_user_[seen]])
        empty = np.zeros((item_vectors.shape[1] + 1, targets.shape[1]), dtype=np.float32)
        self.fold_in_ = fit_fold_in(history, targets) if seen.any() else empty

    def _precompute(self, features: np.ndarray) -> None:
        self.visual_items_ = (features @ self.E_).astype(np.float32)
        self.visual_bias_ = (features @ self.beta_visual_).astype(np.float32)

    @property
    def item_bias_(self) -> np.ndarray:
        fresh = self.age_bias_[self.item_age_bucket_]
        return self.beta_ + self.visual_bias_ + fresh + np.float32(self.cold_bias) * self.cold_items_

    # -- serving ---------------------------------------------------------------------
    def user_vectors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """``(γ_u, θ_u)`` per requested row: learned for known users, folded in for others."""
        userids = np.asarray(userids, dtype=np.int64)
        known = (userids < len(self.seen_users_)) & (userids >= 0)
        known[known] = self.seen_users_[userids[known]]
        gamma = np.zeros((len(userids), self.factors), dtype=np.float32)
        theta = np.zeros((len(userids), self.visual_factors), dtype=np.float32)
        gamma[known], theta[known] = self.gamma_user_[userids[known]], self.theta_user_[userids[known]]
        new = ~known
        if new.any():
            rows = sp.csr_matrix(user_items)[np.flatnonzero(new)]
            history, counts = history_means(rows, np.hstack([self.gamma_item_, self.visual_items_]))
            folded = apply_fold_in(history, self.fold_in_) * (counts > 0)[:, None]
            gamma[new], theta[new] = folded[:, : self.factors], folded[:, self.factors :]
        return gamma, theta

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """``β_i + β'·f_i + γ_u·γ_i + θ_u·(E f_i)`` for every item (numpy only)."""
        gamma, theta = self.user_vectors(np.atleast_1d(userids), user_items)
        return (gamma @ self.gamma_item_.T + theta @ self.visual_items_.T + self.item_bias_).astype(np.float32)

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of ``[γ_i, E f_i]`` (cold items compare by their picture)."""
        vectors = np.hstack([self.gamma_item_, self.visual_items_])
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        itemids = np.atleast_1d(np.asarray(itemids, dtype=np.int64))
        sims = vectors[itemids] @ vectors.T
        sims[np.arange(len(itemids)), itemids] = -np.inf
        return top_n(sims, N)

    # -- persistence -----------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """All learned arrays, with ``E f_i`` and ``β'·f_i`` precomputed (load needs no refit)."""
        return {
            **super().get_state(),
            "beta": self.beta_,
            "gamma_user": self.gamma_user_,
            "gamma_item": self.gamma_item_,
            "theta_user": self.theta_user_,
            "E": self.E_,
            "beta_visual": self.beta_visual_,
            "visual_items": self.visual_items_,
            "visual_bias": self.visual_bias_,
            "cold_items": self.cold_items_,
            "seen_users": self.seen_users_,
            "fold_in": self.fold_in_,
            "age_bias": self.age_bias_,
            "item_age_bucket": self.item_age_bucket_,
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`'s arrays."""
        super().set_state(state)
        self.beta_, self.E_, self.beta_visual_ = state["beta"], state["E"], state["beta_visual"]
        self.gamma_user_, self.gamma_item_ = state["gamma_user"], state["gamma_item"]
        self.theta_user_, self.fold_in_ = state["theta_user"], state["fold_in"]
        self.cold_items_, self.seen_users_ = state["cold_items"].astype(bool), state["seen_users"].astype(bool)
        self.visual_items_, self.visual_bias_ = state["visual_items"], state["visual_bias"]
        self.age_bias_, self.item_age_bucket_ = state["age_bias"], state["item_age_bucket"]
