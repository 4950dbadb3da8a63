"""Synthetic catalogue vectors that follow the real vectors' distribution without copying them.

Each synthetic vector is a random convex mixture of ``k`` (3-5) real vectors, no component
weighing more than ``max_weight``, plus Gaussian noise that restores the real per-dimension
spread the mixing removed, renormalised to unit length. Mixing ``k`` independent draws with
weights ``w`` scales each dimension's variance by ``sum(w**2)``; noise with variance
``(1 - sum(w**2)) * var_d`` puts it back, so the synthetic cloud has the real mean and spread
per dimension. Full-strength noise makes the cloud far more diffuse than the clustered real
one, so only a share (``NOISE_SCALE``) is added, and every synthetic vector closer than
``NEAR_DUPLICATE`` (cosine) to any real vector is drawn again: never a near-duplicate of one
real vector (which would make any index look perfect). Pure numpy: no Django.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def mixture_weights(
    rng: np.random.Generator, n: int, k_min: int = 3, k_max: int = 5, max_weight: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, k_max)`` Dirichlet weights (unused slots 0) and each row's component count.

    Rows whose largest weight exceeds ``max_weight`` are drawn again, so no synthetic
    vector is dominated by one real vector.
    """
    counts = rng.integers(k_min, k_max + 1, size=n)
    weights = np.zeros((n, k_max))
    todo = np.arange(n)
    while todo.size:
        for k in np.unique(counts[todo]):
            rows = todo[counts[todo] == k]
            weights[rows, :k] = rng.dirichlet(np.full(k, 2.0), size=rows.size)
            weights[rows, k:] = 0
        todo = todo[weights[todo].max(axis=1) > max_weight]
    return weights, counts


NOISE_SCALE = 0.3  # share of the mixing's lost per-dimension spread put back as noise
NEAR_DUPLICATE = 0.95  # a synthetic vector this close (cosine) to a real one is drawn again


def synthetic_vectors(
    real: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    k_min: int = 3,
    k_max: int = 5,
    max_weight: float = 0.6,
    noise_scale: float = NOISE_SCALE,
    max_cosine: float = NEAR_DUPLICATE,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic unit vectors and, per row, the index of its heaviest real component.

    ``real`` holds unit-length real vectors (one per row). The noise of dimension ``d`` has
    standard deviation ``noise_scale * std_d * sqrt(1 - sum(w**2))`` (``noise_scale=1``
    restores the real spread exactly, but then the synthetic cloud is far more diffuse
    than the clustered real one and never shows up among a real query's neighbours).
    Every row is checked against every real vector and drawn again while its nearest
    real neighbour is closer than ``max_cosine``. The heaviest component lets the caller
    give the synthetic product a plausible category.
    """
    real = np.asarray(real, dtype=np.float32)
    spread = real.std(axis=0)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    dominant = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        weights, _ = mixture_weights(rng, todo.size, k_min, k_max, max_weight)
        picks = np.stack([rng.choice(len(real), size=k_max, replace=False) for _ in range(todo.size)])
        mixed = np.einsum("nk,nkd->nd", weights.astype(np.float32), real[picks])
        residual = np.sqrt(np.clip(1.0 - (weights**2).sum(axis=1), 0, None)).astype(np.float32)[:, None]
        noise = rng.standard_normal(mixed.shape, dtype=np.float32) * spread * residual * noise_scale
        out[todo] = normalise(mixed + noise)
        dominant[todo] = picks[np.arange(todo.size), weights.argmax(axis=1)]
        todo = todo[nearest_cosine(out[todo], real) > max_cosine]
    return out, dominant


def synthetic_chunks(
    real: np.ndarray, n: int, seed: int, chunk: int = 10_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`synthetic_vectors` in chunks (bounded memory), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        yield synthetic_vectors(real, min(chunk, n - start), rng)


def nearest_cosine(queries: np.ndarray, corpus: np.ndarray, exclude_self: bool = False, block: int = 1024):
    """Highest cosine between each (unit) query row and any (unit) corpus row.

    With ``exclude_self`` the queries are the corpus' first rows and a row's match with
    itself is ignored (real-vs-real neighbour distribution).
    """
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ corpus.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, start + rows] = -np.inf
        out[start : start + block] = sims.max(axis=1)
    return out


def percentiles(values: np.ndarray, points=(1, 50, 99)) -> dict[str, float]:
    """``{"p1": ..., "p50": ..., "p99": ..., "max": ...}`` rounded to 3 decimals."""
    found = {f"p{p}": round(float(np.percentile(values, p)), 3) for p in points}
    found["max"] = round(float(np.max(values)), 3)
    return found


def recall_at_10(found: list[float], truth: list[float], k: int = 10) -> float:
    """Share of the true top-``k`` that the answer's top ``k`` reaches, ties counted as hits.

    An answer row counts when its distance is within the true ``k``-th distance (+1e-6):
    two products at the same distance are equally right answers.
    """
    if not truth:
        return 1.0
    kth = truth[:k][-1] + 1e-6
    return min(sum(1 for d in found[:k] if d <= kth), len(truth[:k])) / len(truth[:k])
