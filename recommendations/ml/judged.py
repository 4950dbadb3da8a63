"""Visual similarity re-weighted by the shop owner's judgements ("good match" / "not similar").

A diagonal metric on unit image vectors: ``s_w(a, b) = sum_i w_i a_i b_i`` (``w = 1`` is
the plain cosine). ``w`` is fitted by L2-regularised logistic regression on the judged
pairs, pulled towards 1, so a handful of judgements nudges the dimensions that separate
the owner's good matches from the lookalikes they rejected without forgetting the
cosine. Visual models apply it by scaling each dimension by ``sqrt(w)`` before their
usual cosine, so the judgements shape the neighbours of products nobody judged too.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def learn_pair_weights(
    features: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    l2: float = 1.0,
    temperature: float = 10.0,
    steps: int = 300,
    lr: float = 0.5,
) -> np.ndarray:
    """Per-dimension weights (``(d,)``, ``>= 0``) of the similarity that best separates the judged pairs.

    Parameters
    ----------
    features : numpy.ndarray
        ``(n_items, d)`` item vectors (rows are normalised here).
    pairs : numpy.ndarray
        ``(m, 2)`` item indices ``(anchor, neighbour)``.
    labels : numpy.ndarray
        ``(m,)``: ``> 0`` good match, ``<= 0`` not similar.
    l2 : float
        Strength of the pull towards ``w = 1`` (plain cosine), per pair.
    temperature, steps, lr : float, int, float
        Logit scale of the similarity, gradient steps and step size.

    Returns
    -------
    numpy.ndarray
        ``w``; all ones when there is nothing to learn from (no pairs, or one kind only
        and the cosine already agrees).
    """
    d = features.shape[1]
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs) or d == 0:
        return np.ones(d, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    unit = features / norms
    phi = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).astype(np.float64)  # (m, d); phi @ 1 = cosine
    y = (np.asarray(labels) > 0).astype(np.float64)
    w, bias = np.ones(d), -temperature * float(np.median(phi.sum(axis=1)))
    m = len(pairs)
    for _ in range(steps):
        p = _sigmoid(temperature * (phi @ w) + bias)
        err = p - y
        grad_w = temperature * (phi.T @ err) / m + l2 * (w - 1.0) / m
        w = np.maximum(w - lr * d * grad_w, 0.0)  # ``d``: the cosine's dimensions are each ~1/d
        bias -= lr * float(err.mean())
    return w.astype(np.float32)


def reweight(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``features`` with each dimension scaled by ``sqrt(weights)`` (their dot product is ``s_w``)."""
    return (features * np.sqrt(np.maximum(weights, 0.0))[None, :]).astype(np.float32)
