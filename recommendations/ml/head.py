"""A similarity head learned from the shop's own catalogue: "similar" as its categories mean it.

ImageNet features know what a photo shows, not how a shop files its products: a CNN puts a
cardigan as near a jumper as another cardigan. The head is a small network over the CNN
vector, trained to tell the shop's leaf categories apart (a cosine classifier: softmax over
``scale * cos(z, class prototype)``), whose unit output ``z`` is a second view of the
image in which products of one category gather. It generalises to products it never saw
(a new arrival, a product without a category): only the image goes in.

The served vector joins three unit parts, so one cosine search ranks by their weighted sum:
``[sqrt((1 - w)(1 - a)) cnn, sqrt((1 - w) a) z, sqrt(w) colour]`` (``a``: head weight,
``w``: colour weight). The CNN part keeps the look, the head the category, the colour
histogram (:mod:`.colour`) the colour.

Fitting needs torch (CPU is enough: a few hundred thousand samples); projecting is numpy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

# A class needs this many labelled products to be learned; rarer ones are left out of fitting.
MIN_CLASS_SIZE = 2
# Training samples seen at most (epochs shrink for a large catalogue), so fitting stays bounded.
MAX_SAMPLES = 600_000


class NotEnoughLabels(ValueError):
    """The catalogue has too few categorised products to learn from."""


@dataclass(frozen=True)
class HeadSpec:
    """Hyper-parameters of the head (recorded with each embedding version that uses it)."""

    hidden: int = 512
    dimensions: int = 128
    dropout: float = 0.3
    epochs: int = 60
    weight_decay: float = 1e-4
    scale: float = 10.0
    learning_rate: float = 3e-3

    def describe(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SimilarityHead:
    """``z = normalise(W2 relu(W1 (x - mean) + b1) + b2)`` for unit CNN vectors ``x``."""

    mean: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    classes: int = 0

    @property
    def dimensions(self) -> int:
        return int(self.w2.shape[0])

    @property
    def inputs(self) -> int:
        return int(self.w1.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        """``(n, inputs)`` CNN vectors -> ``(n, dimensions)`` unit vectors (float32)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"the head takes {self.inputs}-d vectors, got shape {x.shape}")
        h = np.maximum((x - self.mean) @ self.w1.T + self.b1, 0.0)
        z = h @ self.w2.T + self.b2
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2, classes=self.classes)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SimilarityHead:
        with np.load(io.BytesIO(data)) as f:
            return cls(
                **{k: f[k].astype(np.float32) for k in ("mean", "w1", "b1", "w2", "b2")}, classes=int(f["classes"])
            )


def fit_head(features: np.ndarray, labels, spec: HeadSpec = HeadSpec(), seed: int = 0) -> SimilarityHead:
    """Fit the head on ``features`` (``(n, d)`` unit CNN vectors) and their category ``labels``.

    Items whose label is ``None`` or empty are left out, as are categories with fewer than
    :data:`MIN_CLASS_SIZE` items. Raises :class:`NotEnoughLabels` below two learnable
    categories.
    """
    import torch

    labels = np.asarray([("" if v is None else str(v)) for v in labels], dtype=object)
    names, counts = np.unique(labels[labels != ""], return_counts=True)
    learnable = set(names[counts >= MIN_CLASS_SIZE].tolist())
    rows = np.array([i for i, v in enumerate(labels) if v in learnable], dtype=np.int64)
    if len(learnable) < 2:
        raise NotEnoughLabels(
            f"{len(learnable)} categor{'y has' if len(learnable) == 1 else 'ies have'} at least "
            f"{MIN_CLASS_SIZE} products with an image vector; the similarity head needs two or more"
        )
    classes, y = np.unique(labels[rows], return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(features, dtype=np.float32)[rows])
    target = torch.as_tensor(y, dtype=torch.long)
    mean = x.mean(dim=0, keepdim=True)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], spec.hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(spec.dropout),
        torch.nn.Linear(spec.hidden, spec.dimensions),
    )
    prototypes = torch.nn.Linear(spec.dimensions, len(classes), bias=False)
    optimiser = torch.optim.Adam(
        [*net.parameters(), *prototypes.parameters()], lr=spec.learning_rate, weight_decay=spec.weight_decay
    )
    epochs = max(1, min(spec.epochs, MAX_SAMPLES // len(rows)))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(rows), 512):
            batch = order[start : start + 512]
            z = torch.nn.functional.normalize(net(x[batch] - mean), dim=1)
            logits = spec.scale * z @ torch.nn.functional.normalize(prototypes.weight, dim=1).T
            loss = torch.nn.functional.cross_entropy(logits, target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    first, last = net[0], net[3]
    return SimilarityHead(
        mean=mean.numpy()[0],
        w1=first.weight.detach().numpy().copy(),
        b1=first.bias.detach().numpy().copy(),
        w2=last.weight.detach().numpy().copy(),
        b2=last.bias.detach().numpy().copy(),
        classes=len(classes),
    )


def join(cnn: np.ndarray, head: np.ndarray, colour: np.ndarray | None, head_weight: float, colour_weight: float):
    """The served unit vector: ``[sqrt((1-w)(1-a)) cnn, sqrt((1-w) a) head, sqrt(w) colour]``.

    Its dot product with another such vector is ``(1 - w) ((1 - a) cnn_cos + a head_cos) + w colour_cos``.
    """
    a, w = float(head_weight), float(colour_weight) if colour is not None else 0.0
    parts = [np.sqrt((1 - w) * (1 - a)) * cnn, np.sqrt((1 - w) * a) * head]
    if colour is not None:
        parts.append(np.sqrt(w) * colour)
    out = np.concatenate(parts, axis=1)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
