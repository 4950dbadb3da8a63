"""Sequence recommenders: SASRec (causal self-attention) and GRU4Rec over each shopper's ordered events.

A shopper's history is the list of items they interacted with, oldest first (each
item once, at its latest interaction; items of the same moment in a seeded random
order). The model reads that list and predicts the next item (Kang & McAuley,
"Self-Attentive Sequential Recommendation", ICDM 2018; Hidasi et al., "Session-based
Recommendations with Recurrent Neural Networks", ICLR 2016).

Item representation (shared by the sequence's inputs and the scored outputs)::

    e_i = W f_i + m_i · v_i        b_i = w·f_i + m_i · c_i

with ``f_i`` the item's L2-normalised image vector, ``W`` and ``w`` a learned
projection, ``v_i`` / ``c_i`` an ID embedding and bias, and ``m_i`` = 1 for items seen
in training, 0 for the others. During training ``m_i`` is also 0 for a random share
``id_dropout`` of the occurrences, so the model learns to read the picture: a
never-bought item still has a representation, can appear in a session, and can be
recommended. A sequence encoder (causal Transformer blocks with learned positions,
or a GRU) turns the inputs into a state ``h_t`` after each event; the score of item
``i`` as the next one is ``h_t · e_i + b_i`` (plus, with timestamps, a learned bias by
the item's age since its first interaction at the time of the event, as in :mod:`.vbpr`;
frozen at the fit's time for serving). Training: sampled softmax of every next
item against ``negatives`` items drawn uniformly from the whole catalogue per batch
(Adam, seeded); ``W`` starts as the pictures' principal directions, so the model
starts from visual similarity. Being a :class:`~.blend.PriorBlended` model, the popularity prior's
weight is validated at fit time like every other model's.

torch trains (CPU, or the GPU with ``device="auto"``); serving is numpy only: every
learned array is stored, the item vectors ``e_i``, ``b_i`` precomputed, and the
forward pass re-implemented (tested against torch's), so a web process that serves a
sequence model never loads torch. :meth:`SequenceRecommender.score_sequences` scores
live sessions (item columns, newest last); :meth:`~.base.Recommender.score` uses the
shopper's training history (for users known at fit) followed by the items of the
passed row that are not in it, the row's strongest last.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .base import FitContext, register, top_n
from .blend import PriorBlended
from .mf import _cosine_top_n
from .pairwise import AGE_EDGES_DAYS, DAY, N_AGE_BUCKETS, age_buckets
from .vbpr import as_features

log = logging.getLogger(__name__)

LN_EPS = 1e-5


# -- histories -------------------------------------------------------------------------------
def ordered_histories(user_items: sp.csr_matrix, context: FitContext | None, seed: int = 0) -> list[np.ndarray]:
    """Per row the item columns with a positive entry, oldest first.

    Order is by ``context.timestamps`` (the latest interaction of each pair); ties, and
    every row when there are no timestamps, are broken in a seeded random order, never
    by item id.
    """
    return timed_histories(user_items, context, seed)[0]


def timed_histories(
    user_items: sp.csr_matrix, context: FitContext | None, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`ordered_histories` and, beside each, the times of its items (zeros without timestamps)."""
    coo = sp.coo_matrix(user_items)
    keep = coo.data > 0
    rows, cols = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    times = np.zeros(len(rows))
    stamps = context.timestamps if context is not None else None
    if stamps is not None and stamps.shape == user_items.shape and len(rows):
        times = np.asarray(sp.csr_matrix(stamps)[rows, cols], dtype=np.float64).ravel()
    ties = np.random.default_rng(seed).random(len(rows))
    order = np.lexsort((ties, times, rows))
    bounds = np.cumsum(np.bincount(rows, minlength=user_items.shape[0]))[:-1]
    return np.split(cols[order], bounds), np.split(times[order], bounds)


def training_windows(
    histories: list[np.ndarray], max_len: int, times: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, max_len + 1)`` windows of the histories, right-padded with -1, and their items' times.

    A history longer than ``max_len + 1`` is cut from its end into windows that overlap
    by one item, so each transition (item -> next item) is a target exactly once.
    """
    spans = []
    for user, history in enumerate(histories):
        end = len(history)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            spans.append((user, start, end))
            if start == 0:
                break
            end = start + 1
    windows = np.full((len(spans), max_len + 1), -1, dtype=np.int64)
    window_times = np.zeros((len(spans), max_len + 1), dtype=np.float64)
    for n, (user, start, end) in enumerate(spans):
        windows[n, : end - start] = histories[user][start:end]
        if times is not None:
            window_times[n, : end - start] = times[user][start:end]
    return windows, window_times


def pad_right(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` items of each sequence, right-padded with -1, and their lengths."""
    lengths = np.array([min(len(s), max_len) for s in sequences], dtype=np.int64)
    out = np.full((len(sequences), max(int(lengths.max(initial=0)), 1)), -1, dtype=np.int64)
    for n, seq in enumerate(sequences):
        if lengths[n]:
            out[n, : lengths[n]] = np.asarray(seq, dtype=np.int64)[-lengths[n] :]
    return out, lengths


# -- torch (training only) -----------------------------------------------------------------
def _torch_net(encoder: str, n_items: int, d_img: int, params: dict):
    """The torch module (built inside a function: torch is imported only to train)."""
    import torch
    from torch import nn

    dim, dropout = params["dim"], params["dropout"]

    class Block(nn.Module):
        """Pre-norm Transformer block with causal multi-head self-attention."""

        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.ff1, self.ff2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, causal):
            b, length, _ = x.shape
            heads = params["heads"]
            q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(dim // heads)
            att = self.drop(att.masked_fill(~causal, float("-inf")).softmax(-1))
            x = x + self.drop(self.proj((att @ v).transpose(1, 2).reshape(b, length, dim)))
            return x + self.drop(self.ff2(self.drop(torch.relu(self.ff1(self.ln2(x))))))

    class Net(nn.Module):
        """Item encoder (image projection + ID embedding) and a sequence encoder."""

        def __init__(self) -> None:
            super().__init__()
            self.item_id = nn.Embedding(n_items, dim)
            nn.init.normal_(self.item_id.weight, std=0.02)
            self.item_bias = nn.Embedding(n_items, 1)
            nn.init.zeros_(self.item_bias.weight)
            self.image = nn.Linear(d_img, dim, bias=False)
            self.image_bias = nn.Linear(d_img, 1, bias=False)
            nn.init.zeros_(self.image_bias.weight)
            self.age_bias = nn.Parameter(torch.zeros(N_AGE_BUCKETS))
            if encoder == "sasrec":
                self.position = nn.Embedding(params["max_len"], dim)
                nn.init.normal_(self.position.weight, std=0.02)
                self.blocks = nn.ModuleList(Block() for _ in range(params["layers"]))
            else:
                self.gru = nn.GRU(dim, dim, num_layers=params["layers"], batch_first=True)
            self.norm = nn.LayerNorm(dim)
            self.drop = nn.Dropout(dropout)

        def items(self, features, ids, keep):
            """``(e_i, b_i)`` of the 1-d ``ids`` with the ID part where ``keep`` is 1 (pictures projected once)."""
            unique, inverse = torch.unique(ids, return_inverse=True)
            f = features[unique]
            vec = self.image(f)[inverse] + self.item_id(ids) * keep.unsqueeze(-1)
            return vec, self.image_bias(f).squeeze(-1)[inverse] + self.item_bias(ids).squeeze(-1) * keep

        def encode(self, x):
            """State after each position of ``x`` (B, L, dim): it sees that position and the earlier ones."""
            x = self.drop(x)
            if encoder == "sasrec":
                length = x.shape[1]
                x = x + self.position.weight[:length]
                causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
                for block in self.blocks:
                    x = block(x, causal)
            else:
                x, _ = self.gru(x)
            return self.norm(x)

    return Net()


def principal_directions(features: np.ndarray, k: int, seed: int = 0, sample: int = 5000) -> np.ndarray:
    """``(k, d)`` top principal directions of the non-zero feature rows (a seeded sample), zeros where fewer.

    They start the image projection, so at first ``e_i`` is the item's picture in its
    ``k`` main directions and ``h · e_i`` is a visual similarity, which training refines.
    """
    rows = features[np.abs(features).sum(axis=1) > 0]
    out = np.zeros((k, features.shape[1]), dtype=np.float32)
    if len(rows) < 2:
        return out
    rng = np.random.default_rng(seed)
    if len(rows) > sample:
        rows = rows[rng.choice(len(rows), sample, replace=False)]
    centred = (rows - rows.mean(axis=0)).astype(np.float32)
    # randomised range finder (Halko et al. 2011) with two power iterations: a full SVD costs minutes here
    basis = centred @ rng.normal(size=(centred.shape[1], min(k + 10, min(centred.shape)))).astype(np.float32)
    for _ in range(2):
        basis = centred @ (centred.T @ np.linalg.qr(basis)[0])
    _, _, vt = np.linalg.svd(np.linalg.qr(basis)[0].T @ centred, full_matrices=False)
    out[: min(k, len(vt))] = vt[:k]
    return out


def _age_buckets(when, launch, edges):
    """:func:`~.pairwise.age_buckets` in torch: 0 = no interaction before ``when``, else 1 + age bin."""
    import torch

    age = when - launch
    return torch.where(age > 0, 1 + torch.bucketize(torch.nan_to_num(age), edges, right=True), 0)


def launches(
    times: list[np.ndarray], histories: list[np.ndarray], n_items: int, context: FitContext | None
) -> tuple[np.ndarray, float]:
    """Per item the time of its first interaction (``inf`` for none) and the fit's reference time."""
    launch = np.full(n_items, np.inf)
    if histories:
        np.minimum.at(launch, np.concatenate(histories), np.concatenate(times))
    stamped = np.concatenate(times) if times else np.zeros(0)
    now = context.now if context is not None and context.now is not None else float(stamped.max(initial=0.0))
    if not (stamped > 0).any():
        launch[:] = np.inf  # no timestamps: no freshness
    return launch, float(now)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -- numpy forward (serving) -------------------------------------------------------------------
def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * weight + bias


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SequenceRecommender(PriorBlended):
    """Next-item model over ordered histories; the encoder is set by the subclass.

    Parameters
    ----------
    dim : int
        Size of the item and state vectors.
    layers : int
        Transformer blocks (SASRec) or stacked GRU layers (GRU4Rec).
    heads : int
        Attention heads (SASRec; ``dim`` must be a multiple).
    max_len : int
        Events read per shopper (the newest ones).
    epochs : int
        Passes over the training windows.
    batch_size : int
        Windows per Adam step.
    lr : float
        Adam learning rate.
    dropout : float
        Dropout on the inputs, attention and feed-forward layers.
    id_dropout : float
        Share of item occurrences whose ID part is hidden in training (the model must
        then recognise the item by its picture, as it must for a never-bought one).
    negatives : int
        Items drawn uniformly from the catalogue per batch for the sampled softmax.
    weight_decay : float
        Adam's L2 weight on every parameter.
    freshness : bool
        Learn a bias by the item's age since its first interaction, at each event's time
        (:mod:`.pairwise` buckets; bucket 0 = not bought by anyone yet); needs timestamps.
    seed : int
        Seed of the initialisation, the batches, the negatives and the tie order.
    device : str
        ``"auto"`` (the GPU when torch sees one), ``"cpu"`` or a torch device name.
    prior_weight : float, optional
        Weight of the popularity prior (:mod:`.blend`); ``None`` = validated at fit.
    """

    encoder: ClassVar[str] = "sasrec"
    new_item_prior = True
    #: Marks models that rank from the order of a shopper's events (serving feeds them the session).
    sequential: ClassVar[bool] = True

    def __init__(
        self,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 3e-3,
        dropout: float = 0.2,
        id_dropout: float = 0.5,
        negatives: int = 512,
        weight_decay: float = 0.0,
        freshness: bool = True,
        seed: int = 0,
        device: str = "auto",
        prior_weight: float | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.layers, self.heads, self.max_len = int(dim), int(layers), int(heads), int(max_len)
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.dropout, self.id_dropout, self.negatives = float(dropout), float(id_dropout), int(negatives)
        self.weight_decay, self.seed, self.device = float(weight_decay), int(seed), str(device)
        self.freshness, self.fresh_ = bool(freshness), False
        self.prior_weight = prior_weight
        if self.encoder == "sasrec" and self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        self.loss_history_: list[float] = []

    # -- training ----------------------------------------------------------------------
    def fit_personal(
        self, user_items: sp.csr_matrix, item_features: np.ndarray | None, context: FitContext | None
    ) -> None:
        """Learn the item encoder and the sequence encoder by next-item sampled softmax."""
        import torch

        user_items = sp.csr_matrix(user_items)
        n_users, n_items = user_items.shape
        features = as_features(item_features, n_items)
        histories, times = timed_histories(user_items, context, self.seed)
        warm = np.zeros(n_items, dtype=bool)
        warm[user_items.indices[user_items.data > 0]] = True
        windows, window_times = training_windows(histories, self.max_len, times)
        lengths = (windows >= 0).sum(axis=1)
        launch, now = launches(times, histories, n_items, context)
        self.fresh_ = bool(self.freshness and np.isfinite(launch).any())
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        device = _device(self.device)
        net = _torch_net(self.encoder, n_items, features.shape[1], self._net_params())
        with torch.no_grad():  # the picture part starts as the pictures' main directions (visual similarity)
            net.image.weight.copy_(torch.from_numpy(principal_directions(features, self.dim, self.seed)))
        net = net.to(device)
        fixed = {
            "features": torch.from_numpy(features).to(device),
            "warm": torch.from_numpy(warm.astype(np.float32)).to(device),
            "launch": torch.from_numpy(launch).to(device),
            "edges": torch.from_numpy(AGE_EDGES_DAYS * DAY).to(device),
        }
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.loss_history_ = []
        net.train()
        for epoch in range(self.epochs if len(windows) else 0):
            total, count = 0.0, 0
            for batch in self._batches(lengths, rng):
                seqs, stamps = (torch.from_numpy(a[batch]).to(device) for a in (windows, window_times))
                negatives = torch.from_numpy(rng.integers(0, n_items, self.negatives)).to(device)
                loss, n = self._batch_loss(net, fixed, seqs, stamps, negatives)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * n, count + n
            self.loss_history_.append(total / max(count, 1))
            log.debug("%s epoch %d/%d loss %.4f", self.name, epoch + 1, self.epochs, self.loss_history_[-1])
        net.eval()
        self._set_learned(net, features, warm, histories, age_buckets(np.full(n_items, now), launch))

    def _batches(self, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Windows of about the same length together (little padding), batches in random order."""
        order = np.argsort(lengths + rng.uniform(0, 4, len(lengths)), kind="stable")
        batches = np.array_split(order, max(1, -(-len(order) // self.batch_size)))
        return [batches[n] for n in rng.permutation(len(batches))]

    def _net_params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "dropout": self.dropout,
            "heads": self.heads,
            "layers": self.layers,
            "max_len": self.max_len,
        }

    def _batch_loss(self, net, fixed: dict, seqs, stamps, negatives):
        import torch
        import torch.nn.functional as F

        length = int((seqs >= 0).sum(1).max())  # right-padded: drop the columns that are padding only
        seqs, stamps = seqs[:, :length], stamps[:, :length]
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        real, valid = inputs >= 0, targets >= 0
        n_in, pos = int(real.sum()), targets[valid]
        ids = torch.cat([inputs[real], pos, negatives])
        keep = fixed["warm"][ids] * (torch.rand(ids.shape, device=ids.device) >= self.id_dropout).float()
        vec, bias = net.items(fixed["features"], ids, keep)
        x = torch.zeros(*inputs.shape, self.dim, device=vec.device)
        x[real] = vec[:n_in]
        h = net.encode(x)[valid]
        e_pos, b_pos = vec[n_in : n_in + len(pos)], bias[n_in : n_in + len(pos)]
        e_neg, b_neg = vec[n_in + len(pos) :], bias[n_in + len(pos) :]
        if self.fresh_:  # each candidate's freshness at the time of the event it would have been
            when = stamps[:, 1:][valid]
            b_pos = b_pos + net.age_bias[_age_buckets(when, fixed["launch"][pos], fixed["edges"])]
            b_neg = (
                b_neg + net.age_bias[_age_buckets(when[:, None], fixed["launch"][negatives][None, :], fixed["edges"])]
            )
        logits_neg = (h @ e_neg.T + b_neg).masked_fill(pos[:, None] == negatives[None, :], float("-inf"))
        logits = torch.cat([((h * e_pos).sum(-1) + b_pos)[:, None], logits_neg], dim=1)
        target = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
        return F.cross_entropy(logits, target), len(pos)

    def _set_learned(
        self, net, features: np.ndarray, warm: np.ndarray, histories: list[np.ndarray], buckets: np.ndarray
    ) -> None:
        import torch

        with torch.no_grad():
            self.net_ = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        self.weights_ = None
        mask = warm.astype(np.float32)
        self.item_vectors_ = (
            features @ self.net_["image.weight"].T + self.net_["item_id.weight"] * mask[:, None]
        ).astype(np.float32)
        self.item_bias_ = (
            features @ self.net_["image_bias.weight"][0] + self.net_["item_bias.weight"][:, 0] * mask
        ).astype(np.float32)
        if self.fresh_:  # each item's freshness now (frozen at fit, as in VBPR: refit regularly)
            self.item_bias_ = (self.item_bias_ + self.net_["age_bias"][buckets]).astype(np.float32)
        self.warm_items_ = warm
        self.histories_, self.history_lengths_ = pad_right(histories, self.max_len)

    # -- numpy forward -------------------------------------------------------------------
    def _weights(self) -> dict[str, np.ndarray]:
        """The forward pass's matrices, transposed once per loaded model (float32, C-contiguous).

        Built on first use and dropped when the learned arrays change (fit, ``set_state``), so
        a request multiplies by ready matrices instead of ``W.T`` views and ``np.split`` copies.
        """
        if getattr(self, "weights_", None) is None:
            ready = {}
            for name, value in self.net_.items():
                if name.startswith(("item_", "image")):
                    continue  # the item encoder is already folded into item_vectors_ / item_bias_
                value = np.asarray(value, dtype=np.float32)
                transpose = name.startswith(("blocks.", "gru.weight")) and value.ndim == 2  # x @ W.T as x @ W'
                ready[name] = np.ascontiguousarray(value.T if transpose else value)
            self.weights_ = ready
        return self.weights_

    def encode_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """``(len(sequences), dim)`` state after each sequence's last item (zeros for an empty one)."""
        seqs, lengths = pad_right([np.asarray(s, dtype=np.int64) for s in sequences], self.max_len)
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        has = np.flatnonzero(lengths > 0)
        if len(has):
            states = self._encode_np(self.item_vectors_[np.maximum(seqs[has], 0)])
            p = self._weights()
            out[has] = _layer_norm(states[np.arange(len(has)), lengths[has] - 1], p["norm.weight"], p["norm.bias"])
        return out

    def _encode_np(self, x: np.ndarray) -> np.ndarray:
        """States after each position (before the final layer norm), as ``Net.encode`` computes them."""
        p = self._weights()
        if self.encoder == "sasrec":
            length = x.shape[1]
            x = x + p["position.weight"][:length]
            future = np.triu(np.ones((length, length), dtype=bool), k=1)
            for n in range(self.layers):
                x = self._block_np(x, f"blocks.{n}.", future)
        else:
            for n in range(self.layers):
                x = self._gru_np(x, n)
        return x.astype(np.float32, copy=False)

    def _block_np(self, x: np.ndarray, prefix: str, future: np.ndarray) -> np.ndarray:
        p, (b, length, dim), heads = self._weights(), x.shape, self.heads
        qkv = _layer_norm(x, p[prefix + "ln1.weight"], p[prefix + "ln1.bias"]) @ p[prefix + "qkv.weight"]
        qkv = (qkv + p[prefix + "qkv.bias"]).reshape(b, length, 3, heads, dim // heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv
        att = np.where(future, -np.inf, q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim // heads))
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        mixed = (att @ v).transpose(0, 2, 1, 3).reshape(b, length, dim)
        x = x + mixed @ p[prefix + "proj.weight"] + p[prefix + "proj.bias"]
        hidden = _layer_norm(x, p[prefix + "ln2.weight"], p[prefix + "ln2.bias"]) @ p[prefix + "ff1.weight"]
        hidden = np.maximum(hidden + p[prefix + "ff1.bias"], 0.0)
        return x + hidden @ p[prefix + "ff2.weight"] + p[prefix + "ff2.bias"]

    def _gru_np(self, x: np.ndarray, layer: int) -> np.ndarray:
        """One GRU layer, as torch computes it (gates r, z, n); the input side for every step at once."""
        p, d = self._weights(), self.dim
        w_hh, b_hh = p[f"gru.weight_hh_l{layer}"], p[f"gru.bias_hh_l{layer}"]
        gates_x = x @ p[f"gru.weight_ih_l{layer}"] + p[f"gru.bias_ih_l{layer}"]
        h = np.zeros((x.shape[0], d), dtype=np.float32)
        out = np.empty((x.shape[0], x.shape[1], d), dtype=np.float32)
        for t in range(x.shape[1]):
            gx, gh = gates_x[:, t], h @ w_hh + b_hh
            rz = _sigmoid(gx[:, : 2 * d] + gh[:, : 2 * d])
            r, z = rz[:, :d], rz[:, d:]
            n = np.tanh(gx[:, 2 * d :] + r * gh[:, 2 * d :])
            h = (1.0 - z) * n + z * h
            out[:, t] = h
        return out

    # -- serving -------------------------------------------------------------------------
    def sequence_scores(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Personal next-item scores ``h · e_i + b_i`` for every item, one row per sequence."""
        return (self.encode_sequences(sequences) @ self.item_vectors_.T + self.item_bias_).astype(np.float32)

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Final scores (popularity prior blended in) for live sequences of item columns, newest last."""
        return self.combine(self.sequence_scores(sequences), self.prior, self.weight)

    def recommend_sequences(
        self, sequences: list[np.ndarray], N: int = 10, filter_seen: bool = True, items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` next items per sequence; the sequence's own items excluded with ``filter_seen``."""
        scores = self.score_sequences(sequences)
        if filter_seen:
            for row, seq in enumerate(sequences):
                scores[row, np.asarray(seq, dtype=np.int64)] = -np.inf
        if items is None:
            return top_n(scores, N)
        items = np.asarray(items, dtype=np.int64)
        ids, out = top_n(scores[:, items], N)
        return np.where(ids >= 0, items[np.maximum(ids, 0)], -1), out

    def user_sequences(self, userids: np.ndarray, user_items: sp.csr_matrix) -> list[np.ndarray]:
        """Known users' training histories, then the row's other items (weakest first, strongest last)."""
        rows = sp.csr_matrix(user_items)
        out = []
        for n, user in enumerate(np.asarray(userids, dtype=np.int64)):
            known = self.histories_[user, : self.history_lengths_[user]] if 0 <= user < len(self.histories_) else []
            cols, vals = (
                rows.indices[rows.indptr[n] : rows.indptr[n + 1]],
                rows.data[rows.indptr[n] : rows.indptr[n + 1]],
            )
            extra = [c for c in cols[np.argsort(vals, kind="stable")] if c not in set(known)]
            out.append(np.asarray([*known, *extra], dtype=np.int64))
        return out

    def personal_scores(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Next-item scores after each user's ordered history (see :meth:`user_sequences`)."""
        return self.sequence_scores(self.user_sequences(np.atleast_1d(userids), user_items))

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of the item vectors ``e_i`` (never-bought items compare by picture)."""
        return _cosine_top_n(self.item_vectors_, np.atleast_1d(np.asarray(itemids, dtype=np.int64)), N)

    def neighbour_vectors(self) -> np.ndarray:
        return self.item_vectors_

    # -- persistence ---------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Every learned array: the network, the precomputed item vectors and the users' histories."""
        return {
            **super().get_state(),
            **{f"net.{k}": v for k, v in self.net_.items()},
            "item_vectors": self.item_vectors_,
            "item_bias": self.item_bias_,
            "warm_items": self.warm_items_,
            "histories": self.histories_.astype(np.int32),
            "history_lengths": self.history_lengths_.astype(np.int32),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`'s arrays."""
        super().set_state(state)
        self.net_ = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        self.weights_ = None
        self.item_vectors_ = np.ascontiguousarray(state["item_vectors"], dtype=np.float32)
        self.item_bias_ = np.ascontiguousarray(state["item_bias"], dtype=np.float32)
        self.warm_items_ = state["warm_items"].astype(bool)
        self.histories_ = state["histories"].astype(np.int64)
        self.history_lengths_ = state["history_lengths"].astype(np.int64)


@register
class SASRec(SequenceRecommender):
    """Causal self-attention over the shopper's events (SASRec), image-aware item inputs."""

    name = "sasrec"
    encoder = "sasrec"


@register
class GRU4Rec(SequenceRecommender):
    """A GRU over the shopper's events (GRU4Rec) with the same item encoder and training."""

    name = "gru4rec"
    encoder = "gru"
