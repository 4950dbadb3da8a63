"""Complete the look: a compatibility model learned from co-purchased pairs' image vectors.

Visual similarity finds a jacket like this jacket; shoppers who bought a jacket bought
trousers with it. This model learns, from the pairs of products bought together (same
basket, or same shopper within a day), which *kinds of picture* go with which, so a
brand-new product with no purchase yet gets the partners that past buyers chose for
products that look like it.

It is a two-tower low-rank bilinear model over the image vectors (no product ids, no
metadata: it generalises to products it never saw bought)::

    z(x)          = (x - mean) @ basis          # principal axes of the catalogue's pictures
    score(a, b)   = scale * (z(a) @ P) . (z(b) @ Q) + z(b) . w  [+ prior_weight * log(1 + recent(b))]

``P`` and ``Q`` (``k x rank``) differ, so "jacket" can map to "trousers" rather than to
"jacket"; both start as the leading principal axes (the model starts as visual
similarity and learns away from it). ``z(b) . w`` is a learned prior of the pictures
shoppers buy as partners at all; the optional last term is what sells now (recent counts,
given when the candidates' codes are made). It is fitted with a full softmax over the catalogue
(every other item is a negative), both directions of every pair.

Serving needs no torch: :meth:`CompatibilityModel.anchor_codes` and
:meth:`~CompatibilityModel.item_codes` are two matrix products, and a product's partners
are the highest ``item_codes @ anchor_code`` (:func:`top_partners` scores them all;
serving searches an index of the codes, ``serving.versions.Complements``, which reads a
few percent of them past 100,000 products). torch is imported by
:meth:`~CompatibilityModel.fit` only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .blend import VALIDATION_FRACTION
from .evaluation import fraction_cut_time
from .mapped import unpack
from .neighbours import row_norms

logger = logging.getLogger(__name__)

FORMAT = 1
#: Rows of the catalogue's vectors handled at once (no temporary as large as the catalogue).
CHUNK = 65_536
#: At most this many scores are ranked at once when validating (bounds memory at a million items).
MAX_SCORES = 50_000_000


def image_rows(vectors: np.ndarray) -> np.ndarray:
    """Whether each row of ``vectors`` is an image vector (rows of zeros: no image), without a full-size temporary."""
    out = np.empty(len(vectors), dtype=bool)
    for lo in range(0, len(vectors), CHUNK):
        out[lo : lo + CHUNK] = row_norms(np.asarray(vectors[lo : lo + CHUNK], dtype=np.float32)) > 0
    return out


def project(vectors: np.ndarray, rows: np.ndarray | None, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``(vectors[rows] - mean) @ basis`` as float32 (``rows`` None: every row), a chunk of rows at a time."""
    out = np.empty((len(vectors) if rows is None else len(rows), basis.shape[1]), dtype=np.float32)
    for lo in range(0, len(out), CHUNK):
        picked = vectors[lo : lo + CHUNK] if rows is None else vectors[rows[lo : lo + CHUNK]]
        out[lo : lo + CHUNK] = (np.asarray(picked, dtype=np.float32) - mean) @ basis
    return out


@dataclass
class CompatibilityModel:
    """Two-tower bilinear compatibility of image vectors, learned from co-purchased pairs.

    Parameters
    ----------
    rank : int
        Width of the two towers' codes.
    dims : int
        Principal axes of the catalogue's image vectors the towers read (at most ``d``).
    epochs : int
        Passes over the pairs.
    lr : float
        Adam's learning rate.
    weight_decay : float
        L2 pull of ``P`` and ``Q`` towards their start (visual similarity) and of ``w`` to 0.
    batch : int
        Pairs per step.
    negatives : int
        Items drawn uniformly from the catalogue per step as the softmax's negatives
        (0: every item, the full softmax). Uniform draws estimate the full softmax up to
        a constant, so the learned prior ``w`` stays a prior over the whole catalogue.
    prior_weight : float
        Weight of a candidate's recent popularity, ``prior_weight * log(1 + count)``, added
        to its score when codes are made with counts (:meth:`item_codes`): a picture that
        goes with the anchor *and* sells now first. Not learned from the pairs (which span
        the whole history); chosen per shop on a validation cut (:func:`fit_choosing_prior`).
    seed : int
        Random seed (shuffling; the start is deterministic).
    validation : dict
        How the prior was chosen (:func:`fit_choosing_prior`'s record); saved with the model.
    """

    rank: int = 32
    dims: int = 128
    epochs: int = 10
    lr: float = 0.01
    weight_decay: float = 1e-3
    batch: int = 512
    negatives: int = 2048
    prior_weight: float = 0.0
    seed: int = 0
    validation: dict = field(default_factory=dict, repr=False)
    # learned arrays (empty until fitted or loaded)
    mean: np.ndarray = field(default=None, repr=False)  # (d,)
    anchor_map: np.ndarray = field(default=None, repr=False)  # (d, rank): basis @ P * scale
    item_map: np.ndarray = field(default=None, repr=False)  # (d, rank + 1): basis @ [Q, w]

    def params(self) -> dict:
        """The hyper-parameters (what :meth:`save` records besides the arrays)."""
        skip = ("mean", "anchor_map", "item_map", "validation")
        return {k: v for k, v in asdict(self).items() if k not in skip}

    @property
    def fitted(self) -> bool:
        return self.anchor_map is not None

    # -- fitting -----------------------------------------------------------------------
    def fit(
        self,
        vectors: np.ndarray,
        pairs: np.ndarray,
        weights: np.ndarray | None = None,
        axes: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> CompatibilityModel:
        """Learn from ``pairs`` (``(m, 2)`` rows of ``vectors`` bought together), in both directions.

        ``vectors``: ``(n, d)`` image vectors of the catalogue (rows of zeros: no image;
        such items are neither anchors nor candidates). ``weights``: optional ``(m,)``
        weight of each pair (e.g. how many shoppers bought it). Every item with an image
        is a candidate of the softmax, bought or not. ``axes``: the catalogue's
        :func:`principal_axes` when already computed (fits on one catalogue share them).
        """
        import torch

        has = image_rows(vectors)
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        keep = has[pairs[:, 0]] & has[pairs[:, 1]] & (pairs[:, 0] != pairs[:, 1])
        weights = np.ones(len(pairs), np.float32) if weights is None else np.asarray(weights, np.float32)
        pairs, weights = pairs[keep], weights[keep]
        if not len(pairs) or has.sum() < 2:
            raise ValueError("no co-purchased pair of items with images to learn from")
        mean, basis = axes if axes is not None else principal_axes(vectors, self.dims, self.seed)
        basis = basis[:, : self.dims]
        rank = min(self.rank, basis.shape[1])
        gen = torch.Generator().manual_seed(self.seed)
        projected = project(vectors, np.flatnonzero(has), mean, basis)
        z = torch.from_numpy(projected)
        z = z / z.norm(dim=1, keepdim=True).mean()  # a scale that does not depend on d
        row = np.full(len(vectors), -1, np.int64)
        row[has] = np.arange(int(has.sum()))
        both = np.concatenate([pairs, pairs[:, ::-1]])
        src, dst = torch.from_numpy(row[both[:, 0]]), torch.from_numpy(row[both[:, 1]])
        wts = torch.from_numpy(np.concatenate([weights, weights]))
        start = torch.eye(basis.shape[1], rank)
        p, q = start.clone().requires_grad_(), start.clone().requires_grad_()
        w = torch.zeros(basis.shape[1], requires_grad=True)
        log_scale = torch.tensor(np.log(10.0), dtype=torch.float32, requires_grad=True)
        opt = torch.optim.Adam([p, q, w, log_scale], lr=self.lr)
        sampled = 0 < self.negatives < len(z)
        for epoch in range(self.epochs):
            order = torch.randperm(len(src), generator=gen)
            total = 0.0
            for lo in range(0, len(order), self.batch):
                idx = order[lo : lo + self.batch]
                anchors = log_scale.exp() * (z[src[idx]] @ p)
                if sampled:  # column 0: the true partner; then the draws (a draw of the partner itself is masked)
                    neg = torch.randint(len(z), (self.negatives,), generator=gen)
                    cand = z[torch.cat([dst[idx], neg])]
                    every = anchors @ (cand @ q).T + (cand @ w)[None, :]
                    logits = torch.cat([every.diagonal()[:, None], every[:, len(idx) :]], dim=1)
                    logits = _mask_draws(logits, neg, dst[idx])
                    target = torch.zeros(len(idx), dtype=torch.long)
                else:
                    logits, target = anchors @ (z @ q).T + (z @ w)[None, :], dst[idx]
                loss = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * wts[idx]).sum()
                loss = loss / wts[idx].sum()
                decay = (p - start).pow(2).sum() + (q - start).pow(2).sum() + w.pow(2).sum()
                opt.zero_grad()
                (loss + self.weight_decay * decay).backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            logger.debug("compatibility epoch %d: loss %.4f", epoch, total / len(order))
        norm = float(np.linalg.norm(projected, axis=1).mean())
        scale = float(log_scale.detach().exp())
        self.mean = mean.astype(np.float32)
        self.anchor_map = (basis @ p.detach().numpy() * (scale / norm**2)).astype(np.float32)
        self.item_map = np.hstack([basis @ q.detach().numpy(), basis @ w.detach().numpy()[:, None] / norm])
        self.item_map = self.item_map.astype(np.float32)
        return self

    # -- scoring -----------------------------------------------------------------------
    def anchor_codes(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, rank + 1)`` codes of anchors: ``item_codes(b) @ anchor_codes(a)`` is ``score(a, b)``."""
        self._check()
        codes = (np.asarray(vectors, np.float32) - self.mean) @ self.anchor_map
        return np.hstack([codes, np.ones((len(codes), 1), np.float32)])

    def item_codes(self, vectors: np.ndarray, recent: np.ndarray | None = None) -> np.ndarray:
        """``(n, rank + 1)`` codes of candidates (rows of zeros for items without an image).

        ``recent``: optional ``(n,)`` recent interaction counts of the candidates; their
        prior (``prior_weight * log(1 + count)``) goes into the codes' last column.
        """
        self._check()
        codes = project(vectors, None, self.mean, self.item_map)
        codes[~image_rows(vectors)] = 0.0
        return self.with_prior(codes, recent)

    def with_prior(self, codes: np.ndarray, recent: np.ndarray | None) -> np.ndarray:
        """Codes made without counts (:meth:`item_codes`) with this model's prior of ``recent`` counts added.

        Rows of zeros (no image) stay zero. Returns ``codes`` itself when there is no prior to add.
        """
        if recent is None or not self.prior_weight:
            return codes
        out = codes.copy()
        prior = self.prior_weight * np.log1p(np.maximum(np.asarray(recent, np.float32), 0.0))
        out[:, -1] += np.where(np.any(codes, axis=1), prior, 0.0).astype(np.float32)
        return out

    def score(self, anchors: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n_anchors, n_items)`` compatibility of image vectors (higher: goes better together)."""
        return self.anchor_codes(anchors) @ self.item_codes(items).T

    def _check(self) -> None:
        if not self.fitted:
            raise RuntimeError("the compatibility model is not fitted")

    # -- artifacts ---------------------------------------------------------------------
    def save(self, path: str | Path, **arrays: np.ndarray) -> Path:
        """One pickle-free ``.npz``: the maps, the hyper-parameters, and any extra ``arrays`` (e.g. item codes)."""
        self._check()
        path = Path(path)
        meta = {"kind": "compatibility", "params": self.params(), "format": FORMAT, "validation": self.validation}
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                __meta__=np.array(json.dumps(meta)),
                mean=self.mean,
                anchor_map=self.anchor_map,
                item_map=self.item_map,
                **arrays,
            )
        return path

    @classmethod
    def load(cls, path: str | Path, mapped: bool = False) -> tuple[CompatibilityModel, dict[str, np.ndarray]]:
        """The model saved at ``path`` and the extra arrays saved with it (memory-mapped with ``mapped``)."""
        if mapped:
            arrays = unpack(path)
        else:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("__meta__")))
        if meta.get("kind") != "compatibility":
            raise ValueError(f"{path} is not a compatibility model")
        model = cls(**meta["params"], validation=meta.get("validation") or {})
        model.mean, model.anchor_map, model.item_map = (arrays.pop(k) for k in ("mean", "anchor_map", "item_map"))
        return model, arrays


def _mask_draws(logits, draws, partners):
    """``logits`` (column 0 the partner, then one per draw) with the draws that are the partner itself masked."""
    import torch

    hit = torch.cat([torch.zeros(len(partners), 1, dtype=torch.bool), draws[None, :] == partners[:, None]], dim=1)
    return logits.masked_fill(hit, float("-inf"))


def principal_axes(
    vectors: np.ndarray, dims: int, seed: int = 0, sample: int = 10_000
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``(d, k)`` leading principal axes of the non-zero rows of ``vectors``.

    From the covariance of a sample of at most ``sample`` rows (an eigendecomposition of
    ``d x d``: cheaper than an SVD of the rows).
    """
    present = np.flatnonzero(image_rows(vectors))
    total = np.zeros(vectors.shape[1], dtype=np.float64)
    for lo in range(0, len(present), CHUNK):
        total += np.asarray(vectors[present[lo : lo + CHUNK]], dtype=np.float32).sum(axis=0, dtype=np.float64)
    mean = (total / max(len(present), 1)).astype(np.float32)
    rng = np.random.default_rng(seed)
    if len(present) > sample:
        present = present[rng.choice(len(present), sample, replace=False)]
    rows = np.asarray(vectors[present], dtype=np.float32)
    centred = (rows - mean).astype(np.float64)
    values, vecs = np.linalg.eigh(centred.T @ centred)
    k = max(1, min(int(dims), len(values), len(rows)))
    return mean.astype(np.float32), np.ascontiguousarray(vecs[:, ::-1][:, :k]).astype(np.float32)


def top_partners(
    anchor_code: np.ndarray, item_codes: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``item_codes`` that go best with an anchor (its :meth:`~CompatibilityModel.anchor_codes` row).

    Returns ``(rows, scores)`` best first; rows of zeros (no image) and ``exclude`` never win.
    """
    scores = np.asarray(item_codes, np.float32) @ np.asarray(anchor_code, np.float32)
    scores[~np.any(item_codes, axis=1)] = -np.inf
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, np.int64)] = -np.inf
    n = min(int(n), int(np.isfinite(scores).sum()))
    if n <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top.astype(np.int64), scores[top]


def copurchase_pairs(
    shoppers: np.ndarray, items: np.ndarray, times: np.ndarray, window: float = 86_400.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of different items one shopper bought within ``window`` seconds of each other, with counts.

    ``shoppers``, ``items``, ``times``: parallel arrays of purchase events (shopper and
    item indices, unix seconds). Returns ``(pairs (m, 2) with pairs[:, 0] < pairs[:, 1],
    counts (m,))``: a pair counts once per shopper.
    """
    shoppers, items, times = (np.asarray(a) for a in (shoppers, items, times))
    order = np.lexsort((times, shoppers))
    s, it, t = shoppers[order], items[order], times[order]
    found: set[tuple[int, int, int]] = set()
    lo = 0
    for hi in range(len(s)):
        while s[lo] != s[hi] or t[hi] - t[lo] > window:
            lo += 1
        for j in range(lo, hi):
            a, b = int(it[j]), int(it[hi])
            if a != b:
                found.add((min(a, b), max(a, b), int(s[hi])))
    if not found:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    triples = np.array(sorted(found), dtype=np.int64)
    pairs, counts = np.unique(triples[:, :2], axis=0, return_counts=True)
    return pairs, counts.astype(np.float32)


def decayed_weights(
    pairs: np.ndarray, counts: np.ndarray, items: np.ndarray, times: np.ndarray, half_life: float
) -> np.ndarray:
    """Pair weights that favour what sells now: ``counts`` halved every ``half_life`` seconds of age.

    A pair's age is that of the older of its two items' latest events (``items``,
    ``times``: the events' item indices and unix seconds) before the newest event.
    ``half_life`` 0: the counts as they are.
    """
    counts = np.asarray(counts, np.float64)
    if not half_life or not len(pairs):
        return counts
    last = np.full(int(max(np.max(pairs), np.max(items))) + 1, -np.inf)
    np.maximum.at(last, np.asarray(items, np.int64), np.asarray(times, np.float64))
    age = float(np.max(times)) - np.minimum(last[pairs[:, 0]], last[pairs[:, 1]])
    return counts * 0.5 ** (age / float(half_life))


# -- fitting on a shop's events, with the prior chosen on its own validation cut ------------
#: Prior weights tried at fit time, simplest first (a tie keeps the smaller weight).
PRIOR_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Fewer held-out baskets than this: the configured prior stays (too few to choose on).
MIN_VALIDATION_BASKETS = 20
#: At most this many held-out anchors are scored (bounds the cost on a large shop).
MAX_VALIDATION_ANCHORS = 2000
VALIDATION_K = 12


@dataclass
class Events:
    """A shop's basket events (additions, purchases) as parallel arrays: shopper, item row, unix seconds."""

    shoppers: np.ndarray
    items: np.ndarray
    times: np.ndarray

    def where(self, mask: np.ndarray) -> Events:
        return Events(self.shoppers[mask], self.items[mask], self.times[mask])

    def recent(self, n_items: int, seconds: float | None) -> np.ndarray:
        """Events per item in the last ``seconds`` before the newest (None: all of them)."""
        keep = np.ones(len(self.times), bool) if seconds is None else self.times >= self.times.max() - seconds
        return np.bincount(self.items[keep], minlength=n_items)


def fit_events(
    params: dict, vectors: np.ndarray, events: Events, window: float, axes=None
) -> tuple[CompatibilityModel, int]:
    """A model fitted on the co-purchased pairs of ``events`` (``params``' ``half_life_days`` decays them).

    Returns the model and the number of baskets (pairs counted once per shopper) it learnt from.
    """
    params = dict(params)
    half_life = float(params.pop("half_life_days", 0.0) or 0.0) * 86_400.0
    pairs, counts = copurchase_pairs(events.shoppers, events.items, events.times, window)
    if not len(pairs):
        raise ValueError("no co-purchased pair of items to learn from")
    weights = decayed_weights(pairs, counts, events.items, events.times, half_life)
    return CompatibilityModel(**params).fit(vectors, pairs, weights, axes), int(counts.sum())


def held_out_partners(events: Events, window: float, has_image: np.ndarray) -> tuple[np.ndarray, list, int]:
    """Anchors of the pairs bought together in ``events``, each one's partners, and the baskets counted."""
    pairs, counts = copurchase_pairs(events.shoppers, events.items, events.times, window)
    pairs, counts = pairs[has_image[pairs].all(axis=1)], counts[has_image[pairs].all(axis=1)]
    both = np.concatenate([pairs, pairs[:, ::-1]])
    anchors = np.unique(both[:, 0])
    partners = [both[both[:, 0] == a, 1] for a in anchors]
    return anchors, partners, int(counts.sum())


def hit_rate(
    model: CompatibilityModel,
    vectors: np.ndarray,
    recent: np.ndarray,
    anchors: np.ndarray,
    partners: list,
    k: int,
    bare: np.ndarray | None = None,
) -> float:
    """Share of ``anchors`` with one of their ``partners`` in their top ``k`` (``recent``: the prior's counts).

    A partner is in the top ``k`` when fewer than ``k`` candidates score strictly above it (a
    tie with the ``k``-th counts as in): one comparison per candidate instead of a partial
    sort of every anchor's million scores. ``bare``: the model's
    :meth:`~CompatibilityModel.item_codes` of ``vectors`` without counts, when already made
    (several priors are validated on one fit).
    """
    bare = model.item_codes(vectors) if bare is None else bare
    codes = model.with_prior(bare, recent)
    missing = ~np.any(codes, axis=1)
    found = 0
    step = int(max(1, min(512, MAX_SCORES // max(len(codes), 1))))
    for lo in range(0, len(anchors), step):
        rows = anchors[lo : lo + step]
        scores = model.anchor_codes(vectors[rows]) @ codes.T
        scores[:, missing] = -np.inf
        scores[np.arange(len(rows)), rows] = -np.inf
        best = np.array([scores[i, partners[lo + i]].max(initial=-np.inf) for i in range(len(rows))])
        above = (scores > best[:, None]).sum(axis=1)
        found += int(np.sum((above < k) & np.isfinite(best)))
    return found / max(len(anchors), 1)


def validate_prior(
    params: dict,
    vectors: np.ndarray,
    events: Events,
    window: float,
    prior_seconds: float,
    weights: tuple[float, ...] = PRIOR_WEIGHTS,
    fraction: float = VALIDATION_FRACTION,
    min_baskets: int = MIN_VALIDATION_BASKETS,
    k: int = VALIDATION_K,
    axes=None,
) -> dict:
    """Validation hit@``k`` of each prior (weight, window) on the newest ``fraction`` of ``events``.

    Fits once on the older events; each prior only changes the candidates' codes (no refit).
    The windows tried: ``prior_seconds`` and the whole fit period (None). Returns a record:
    ``{"baskets", "hit_rates": [[weight, window, hit@k], ...], "prior_weight", "prior_seconds",
    "hit_rate", "reason"}``, the choice the best hit@k (ties: the earlier, simpler prior);
    ``reason`` "too few baskets" (no choice made) when fewer than ``min_baskets`` held-out baskets.
    """
    has_image = image_rows(vectors)
    held = events.times >= fraction_cut_time(events.times, fraction)
    anchors, partners, baskets = held_out_partners(events.where(held), window, has_image)
    record: dict = {"baskets": baskets, "fraction": fraction, "k": k, "hit_rates": []}
    if baskets < min_baskets:
        return {**record, "reason": "too few baskets"}
    try:
        model, _ = fit_events(params, vectors, events.where(~held), window, axes)
    except ValueError as e:
        return {**record, "reason": str(e)}
    if len(anchors) > MAX_VALIDATION_ANCHORS:
        pick = np.sort(np.random.default_rng(model.seed).choice(len(anchors), MAX_VALIDATION_ANCHORS, replace=False))
        anchors, partners = anchors[pick], [partners[i] for i in pick]
    older = events.where(~held)
    priors = [(0.0, None)] + [(w, s) for w in weights if w for s in (prior_seconds, None)]
    bare = replace(model, prior_weight=0.0).item_codes(vectors)
    for weight, seconds in priors:
        m = replace(model, prior_weight=weight)
        value = hit_rate(m, vectors, older.recent(len(vectors), seconds), anchors, partners, k, bare)
        record["hit_rates"].append([weight, seconds, value])
    best = max(range(len(priors)), key=lambda i: (record["hit_rates"][i][2], -i))
    weight, seconds, value = record["hit_rates"][best]
    return {**record, "reason": "validated", "prior_weight": weight, "prior_seconds": seconds, "hit_rate": value}


def fit_choosing_prior(
    params: dict, vectors: np.ndarray, events: Events, window: float, prior_seconds: float, **validation
) -> tuple[CompatibilityModel, np.ndarray]:
    """A model fitted on every event with its popularity prior chosen on the shop's own validation cut.

    :func:`validate_prior` chooses the prior's weight and window; with too few held-out
    baskets the configured ``params["prior_weight"]`` and ``prior_seconds`` stay. Returns the
    model (its ``validation`` records the choice) and the recent counts its prior reads.
    """
    axes = principal_axes(vectors, int(params.get("dims", 128)), int(params.get("seed", 0)))
    record = validate_prior(params, vectors, events, window, prior_seconds, axes=axes, **validation)
    if record["reason"] != "validated":
        default = float(params.get("prior_weight", 0.0))
        record.update(prior_weight=default, prior_seconds=prior_seconds)
        logger.info("complete the look keeps the configured prior weight %s: %s", default, record["reason"])
    model, _ = fit_events({**params, "prior_weight": record["prior_weight"]}, vectors, events, window, axes)
    model.validation = record
    return model, events.recent(len(vectors), record["prior_seconds"])
