"""Multimodal fusion recommender: user features × (CF factors ⊕ image features), in torch.

Representations (all of dimension ``k``):

- user ``z_u = p_u + mean_{j ∈ history(u)} (q_j + W_h f_j) + b_h``: a learned user
  embedding plus the mean of the history's CF factors and projected image vectors. In
  training the positive item is left out of its own history mean (leave-one-out) and
  ``p_u`` is dropped at random, so the history part alone also ranks well: that is
  what a new shopper (no ``p_u``) is scored with.
- item modalities: CF factors ``q_i`` (learned from scratch here, so the module needs
  no other recommender; zero for items without interactions) and visual
  ``v_i = W_v f_i + b_v`` from the image vector ``f_i``. ``item_dropout`` hides
  ``q_i`` and ``b_i`` of random items in training (DropoutNet-style), so items
  without interactions are scored on the same scale as the others.

Fusion modes (parameter ``mode``):

``concat``
    ``x_i = MLP([q_i ; v_i])``; score ``z_u·x_i``.
``weighted``
    per-item softmax gates over the modalities, ``g_i = softmax(W_g [q_i ; v_i])``,
    ``x_i = g_i,cf q_i + g_i,vis v_i``; score ``z_u·x_i``.
``attention``
    user-conditioned attention over the modality vectors,
    ``α_{u,i,m} = softmax_m((A_q z_u)·(A_k x_i^m) / √k)``, score
    ``Σ_m α_{u,i,m} z_u·x_i^m``.

Every mode adds a visual-similarity channel ``w_sim · cos(ĥ_u, s_i)``, where ``s_i``
is the item's image vector centred and reduced by PCA (``sim_dims``) and ``ĥ_u`` the
normalised mean of the user's history in that space (leave-one-out in training): the
user's "mean image vector" compared with every item's picture, which ranks products
without interactions well. ``w_sim`` is learned. Every mode also adds the item bias
``b_i + w·f_i`` (CF plus visual) and, with timestamps, a learned freshness bias by the
item's age since its first interaction (see :mod:`.pairwise`; ages frozen at fit
time). Training: BPR or sampled softmax over negatives drawn among items with
interactions, Adam, fixed seed. After fit every item-side quantity is precomputed, so
scoring and persistence are numpy only.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .base import FitContext, register, top_n
from .blend import PriorBlended
from .pairwise import N_AGE_BUCKETS, history_means, positives, seed_torch, triples
from .vbpr import as_features

log = logging.getLogger(__name__)

MODES = ("concat", "weighted", "attention")
LOSSES = ("bpr", "softmax")


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _build_network(mode: str, n_users: int, n_items: int, d: int, k: int, hidden: int, sim_weight: float):
    """The torch module holding every learned parameter (torch imported here)."""
    import torch
    from torch import nn

    class FusionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user = nn.Embedding(n_users, k)
            self.item = nn.Embedding(n_items, k)
            self.bias = nn.Embedding(n_items, 1)
            self.visual = nn.Linear(d, k)
            self.visual_bias = nn.Linear(d, 1, bias=False)
            self.history = nn.Linear(d, k)
            self.age = nn.Embedding(N_AGE_BUCKETS, 1)
            nn.init.zeros_(self.age.weight)
            self.sim_weight = nn.Parameter(torch.tensor(sim_weight))
            for emb in (self.user, self.item):
                nn.init.normal_(emb.weight, std=0.01)
            nn.init.zeros_(self.bias.weight)
            nn.init.zeros_(self.visual_bias.weight)
            if mode == "concat":
                self.mlp = nn.Sequential(nn.Linear(2 * k, hidden), nn.ReLU(), nn.Linear(hidden, k))
            elif mode == "weighted":
                self.gate = nn.Linear(2 * k, 2)
            else:
                self.query = nn.Linear(k, k, bias=False)
                self.key = nn.Linear(k, k, bias=False)

        def modalities(self, q, v):
            """``(..., 2, k)`` modality vectors, or the fused ``(..., k)`` vector."""
            if mode == "concat":
                return self.mlp(torch.cat([q, v], dim=-1))
            if mode == "weighted":
                gates = torch.softmax(self.gate(torch.cat([q, v], dim=-1)), dim=-1)
                return gates[..., :1] * q + gates[..., 1:] * v
            return torch.stack([q, v], dim=-2)

        def score(self, user, items, buckets, feats, item_dropout: float = 0.0):
            """``user``: (z (B, k), ĥ (B, r), sims (n_items, r)); ``items``: (B,) or (B, n) → scores like ``items``.

            With ``item_dropout`` a random share of the items lose their CF factors and
            bias, as an item without interactions has none (DropoutNet-style).
            """
            z, h, sims = user
            f = feats[items]
            similarity = ((h if items.dim() == 1 else h[:, None, :]) * sims[items]).sum(-1)
            keep = (torch.rand(items.shape) >= item_dropout).float()[..., None]
            reps = self.modalities(self.item(items) * keep, self.visual(f))
            zz = z if items.dim() == 1 else z[:, None, :]
            bias = (self.bias(items) * keep).squeeze(-1) + self.visual_bias(f).squeeze(-1)
            bias = bias + self.age(buckets).squeeze(-1) + self.sim_weight * similarity
            if mode != "attention":
                return (zz * reps).sum(-1) + bias
            keys = self.key(reps)  # (..., 2, k)
            query = self.query(zz)[..., None, :]
            alpha = torch.softmax((keys * query).sum(-1) / k**0.5, dim=-1)
            return (alpha * (reps * zz[..., None, :]).sum(-1)).sum(-1) + bias

    return FusionNet()


@register
class Fusion(PriorBlended):
    """User embedding + history (CF and image) against fused item CF/image representations.

    Parameters
    ----------
    mode : str
        ``"concat"``, ``"weighted"`` or ``"attention"`` (see the module docstring).
    factors : int
        Dimension ``k`` of every representation.
    hidden : int
        Hidden width of the ``concat`` MLP.
    epochs, lr, batch_size : int, float, int
        Adam schedule.
    reg : float
        L2 weight on the user/item embeddings in a batch.
    reg_weights : float
        L2 weight on the image projections.
    loss : str
        ``"bpr"`` or ``"softmax"`` (sampled softmax over ``negatives`` items).
    negatives : int
        Negatives per positive for the sampled softmax.
    user_dropout : float
        Probability of hiding ``p_u`` in training (teaches the history-only path).
    item_dropout : float
        Probability of hiding an item's CF factors and bias in training, so items
        without interactions are scored on the same scale as the others.
    half_life_days : float
        When > 0 and timestamps are given, recent positives are drawn more often.
    sim_dims : int
        Dimensions of the centred PCA image space of the similarity channel (0 = no channel).
    sim_weight : float
        Initial weight of the similarity channel (learned).
    cold_bias : float
        Fixed prior added to items without interactions (new arrivals).
    freshness : bool
        Learn the freshness bias (needs ``context.timestamps``; ignored without).
    seed : int
        Seed of the initialisation and of the sampling.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    name = "fusion"
    new_item_prior = True
    default_mode: ClassVar[str] = "concat"

    def __init__(
        self,
        mode: str | None = None,
        factors: int = 32,
        hidden: int = 64,
        epochs: int = 15,
        lr: float = 0.01,
        batch_size: int = 1024,
        reg: float = 1e-3,
        reg_weights: float = 1e-5,
        loss: str = "bpr",
        negatives: int = 8,
        user_dropout: float = 0.2,
        item_dropout: float = 0.2,
        half_life_days: float = 0.0,
        sim_dims: int = 256,
        sim_weight: float = 5.0,
        cold_bias: float = 0.0,
        freshness: bool = True,
        seed: int = 0,
        prior_weight: float | None = None,
    ) -> None:
        super().__init__()
        self.prior_weight = prior_weight
        mode = mode or self.default_mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        self.mode, self.loss = mode, loss
        self.factors, self.hidden, self.epochs = int(factors), int(hidden), int(epochs)
        self.lr, self.batch_size, self.reg, self.reg_weights = (
            float(lr),
            int(batch_size),
            float(reg),
            float(reg_weights),
        )
        self.negatives, self.user_dropout, self.item_dropout = int(negatives), float(user_dropout), float(item_dropout)
        self.half_life_days, self.cold_bias, self.seed = float(half_life_days), float(cold_bias), int(seed)
        self.freshness, self.sim_dims, self.sim_weight = bool(freshness), int(sim_dims), float(sim_weight)
        self.loss_history_: list[float] = []

    # -- training --------------------------------------------------------------------
    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        """Learn the embeddings, projections and the fusion layer."""
        import torch

        user_items = sp.csr_matrix(user_items)
        n_users, n_items = user_items.shape
        features = as_features(item_features, n_items)
        pos = positives(user_items, context, self.half_life_days)
        rng = np.random.default_rng(self.seed)
        seed_torch(self.seed)
        net = _build_network(self.mode, n_users, n_items, features.shape[1], self.factors, self.hidden, self.sim_weight)
        feats = torch.from_numpy(features)
        self.sim_items_ = similarity_space(features, self.sim_dims, self.seed)
        sims = torch.from_numpy(self.sim_items_.astype(np.float32))
        binary = (user_items > 0).astype(np.float32).tocsr()
        counts = torch.from_numpy(np.asarray(binary.sum(axis=1), dtype=np.float32).ravel())
        feature_sums = torch.from_numpy(np.asarray(binary @ features, dtype=np.float32))
        sim_sums = torch.from_numpy(np.asarray(binary @ sims.numpy(), dtype=np.float32))
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr)
        n_neg = self.negatives if self.loss == "softmax" else 1
        self.loss_history_ = []
        net.train()
        for epoch in range(self.epochs):
            total, count = 0.0, 0
            for u, i, j, ai, aj in triples(pos, self.batch_size, rng, n_negatives=n_neg):
                u_t, i_t, j_t = torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(j)
                if not self.freshness:
                    ai, aj = np.zeros_like(ai), np.zeros_like(aj)
                z = self._train_users(net, binary, u, u_t, i_t, feats, counts, feature_sums)
                h = torch.nn.functional.normalize(sim_sums[u_t] - sims[i_t], dim=1)
                loss = self._loss(
                    net, (z, h, sims), u_t, (i_t, torch.from_numpy(ai)), (j_t, torch.from_numpy(aj)), feats
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * len(u), count + len(u)
            self.loss_history_.append(total / max(count, 1))
            log.debug("fusion[%s] epoch %d/%d loss %.4f", self.mode, epoch + 1, self.epochs, self.loss_history_[-1])
        net.eval()
        buckets = pos.buckets_now(n_items) if self.freshness else np.zeros(n_items, dtype=np.int64)
        self._export(net, features, user_items, pos.warm_items, buckets)

    def _train_users(self, net, binary: sp.csr_matrix, u: np.ndarray, u_t, i_t, feats, counts, feature_sums):
        """``z_u`` with the positive left out of its own history and ``p_u`` dropped at random."""
        import torch

        rows = binary[u].tocoo()
        indices = torch.from_numpy(np.vstack([rows.row, rows.col]).astype(np.int64))
        matrix = torch.sparse_coo_tensor(
            indices, torch.from_numpy(rows.data), (len(u), binary.shape[1]), check_invariants=False
        )
        cf_sum = torch.sparse.mm(matrix, net.item.weight) - net.item(i_t)
        visual_sum = feature_sums[u_t] - feats[i_t]
        n = (counts[u_t] - 1.0).clamp(min=0.0)[:, None]
        history = (cf_sum + visual_sum @ net.history.weight.T) / n.clamp(min=1.0)
        history = history + net.history.bias * (n > 0)
        keep = (torch.rand(len(u), 1) >= self.user_dropout).float()
        return net.user(u_t) * keep + history

    def _loss(self, net, user, u_t, positive, negative, feats):
        import torch.nn.functional as F

        (i_t, ai), (j_t, aj) = positive, negative
        s_pos = net.score(user, i_t, ai, feats, self.item_dropout)
        s_neg = net.score(user, j_t, aj, feats, self.item_dropout)
        if self.loss == "bpr":
            data = -F.logsigmoid(s_pos - s_neg).mean()
        else:
            logits = _cat_first(s_pos, s_neg)
            data = F.cross_entropy(logits, logits.new_zeros(len(logits), dtype=u_t.dtype))
        emb = (net.user(u_t) ** 2).sum() + (net.item(i_t) ** 2).sum() + (net.item(j_t) ** 2).sum()
        emb = emb + (net.bias(i_t) ** 2).sum() + (net.bias(j_t) ** 2).sum()
        embeddings = ("user.", "item.", "bias.", "age.")
        weights = sum(
            (p**2).sum() for n, p in net.named_parameters() if n.endswith("weight") and not n.startswith(embeddings)
        )
        return data + self.reg * emb / len(u_t) + self.reg_weights * weights

    def _export(self, net, features: np.ndarray, user_items: sp.csr_matrix, warm: np.ndarray, buckets) -> None:
        """Precompute every item-side array with numpy-friendly shapes."""
        import torch

        cold = np.ones(features.shape[0], dtype=bool)
        cold[warm] = False
        with torch.no_grad():
            net.item.weight[torch.from_numpy(cold)] = 0.0
            net.bias.weight[torch.from_numpy(cold)] = 0.0
            feats = torch.from_numpy(features)
            q, v = net.item.weight, net.visual(feats)
            state = {
                "user_vectors": net.user.weight.numpy().copy(),
                "history_items": (q + net.history(feats) - net.history.bias).numpy().copy(),
                "history_bias": net.history.bias.numpy().copy(),
                "item_bias": (
                    net.bias.weight.squeeze(1)
                    + net.visual_bias(feats).squeeze(1)
                    + net.age(torch.from_numpy(buckets)).squeeze(1)
                ).numpy(),
                "item_repr": net.modalities(q, v).numpy().copy(),
                "cold_items": cold,
                "seen_users": np.asarray(user_items.getnnz(axis=1)).ravel() > 0,
                "sim_items": self.sim_items_,
                "sim_weight": np.float32(net.sim_weight.item()) * np.ones(1, dtype=np.float32),
            }
            if self.mode == "attention":
                state["item_keys"] = net.key(net.modalities(q, v)).numpy().copy()
                state["query"] = net.query.weight.numpy().T.copy()
        self._set_arrays(state)

    # -- serving ---------------------------------------------------------------------
    def user_vectors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """``z_u``: learned ``p_u`` (known users only) plus the mean of the given history rows."""
        userids = np.atleast_1d(np.asarray(userids, dtype=np.int64))
        history, counts = history_means(sp.csr_matrix(user_items), self.history_items_)
        z = history + self.history_bias_ * (counts > 0)[:, None]
        known = (userids >= 0) & (userids < len(self.seen_users_))
        known[known] = self.seen_users_[userids[known]]
        z[known] += self.user_vectors_[userids[known]]
        return z.astype(np.float32)

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Fused scores for every item (numpy only)."""
        z = self.user_vectors(userids, user_items)
        bias = self.item_bias_ + np.float32(self.cold_bias) * self.cold_items_
        sims = self.sim_items_.astype(np.float32)
        taste, _ = history_means(sp.csr_matrix(user_items), sims)
        taste /= np.maximum(np.linalg.norm(taste, axis=1, keepdims=True), 1e-12)
        bias = bias + self.sim_weight_[0] * (taste @ sims.T)
        if self.mode != "attention":
            return (z @ self.item_repr_.T + bias).astype(np.float32)
        query = z @ self.query_
        logits = np.stack([query @ self.item_keys_[:, m].T for m in range(2)], axis=-1) / np.sqrt(self.factors)
        dots = np.stack([z @ self.item_repr_[:, m].T for m in range(2)], axis=-1)
        return ((_softmax(logits, axis=-1) * dots).sum(-1) + bias).astype(np.float32)

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of the fused item representations."""
        vectors = self.item_repr_.reshape(len(self.item_repr_), -1)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        itemids = np.atleast_1d(np.asarray(itemids, dtype=np.int64))
        sims = vectors[itemids] @ vectors.T
        sims[np.arange(len(itemids)), itemids] = -np.inf
        return top_n(sims, N)

    def neighbour_vectors(self) -> np.ndarray:
        return self.item_repr_.reshape(len(self.item_repr_), -1)  # a view of the stored array

    # -- persistence -----------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """The precomputed arrays scoring needs."""
        names = ["user_vectors", "history_items", "history_bias", "item_bias", "item_repr", "cold_items", "seen_users"]
        names += ["sim_items", "sim_weight"]
        if self.mode == "attention":
            names += ["item_keys", "query"]
        return {**super().get_state(), **{n: getattr(self, f"{n}_") for n in names}}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`'s arrays."""
        super().set_state(state)
        self._set_arrays({k: v for k, v in state.items() if k not in ("prior", "weight")})

    def _set_arrays(self, state: dict[str, np.ndarray]) -> None:
        for key, value in state.items():
            setattr(self, f"{key}_", value.astype(bool) if key in ("cold_items", "seen_users") else value)


#: The last few similarity spaces computed, by features (address, shape, checksum), dims and seed:
#: refits on the same catalogue (validation, then the final fit; other fusion modes) share one.
_SPACES: dict[tuple, np.ndarray] = {}


def similarity_space(features: np.ndarray, dims: int, seed: int = 0, sample: int = 5000) -> np.ndarray:
    """Image vectors centred, projected on their top ``dims`` principal axes and L2-normalised (float16).

    Items without an image (zero rows) stay zero. ``dims = 0`` gives an empty space.
    """
    key = (features.__array_interface__["data"][0], features.shape, float(features[::7].sum()), dims, seed, sample)
    if key not in _SPACES:
        if len(_SPACES) >= 4:
            _SPACES.pop(next(iter(_SPACES)))
        _SPACES[key] = _similarity_space(features, dims, seed, sample)
        _SPACES[key].setflags(write=False)
    return _SPACES[key]


def _similarity_space(features: np.ndarray, dims: int, seed: int, sample: int) -> np.ndarray:
    has = np.abs(features).sum(axis=1) > 0
    dims = min(dims, features.shape[1], int(has.sum()))
    if dims <= 0:
        return np.zeros((len(features), 1), dtype=np.float16)
    centred = features - features[has].mean(axis=0)
    rows = np.flatnonzero(has)
    rows = np.random.default_rng(seed).choice(rows, size=min(sample, len(rows)), replace=False)
    sample_rows = centred[rows].astype(np.float64)
    values, vectors = np.linalg.eigh(sample_rows.T @ sample_rows)  # the sample's principal axes, as its SVD's
    axes = vectors[:, np.argsort(values)[::-1][:dims]].astype(np.float32)  # (a d x d eigenproblem: seconds)
    out = centred @ axes
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out[~has] = 0.0
    return out.astype(np.float16)


def _cat_first(first, rest):
    """``[first | rest]`` along the last axis (``first``: (B,), ``rest``: (B, n))."""
    import torch

    return torch.cat([first[:, None], rest], dim=1)


@register
class FusionConcat(Fusion):
    """:class:`Fusion` in ``concat`` mode."""

    name = "fusion_concat"
    default_mode = "concat"


@register
class FusionWeighted(Fusion):
    """:class:`Fusion` in ``weighted`` mode."""

    name = "fusion_weighted"
    default_mode = "weighted"


@register
class FusionAttention(Fusion):
    """:class:`Fusion` in ``attention`` mode."""

    name = "fusion_attention"
    default_mode = "attention"
