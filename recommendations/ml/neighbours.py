"""Item neighbours by cosine of item vectors with bounded work per query: exact, or an inverted file.

A model whose ``similar_items`` is a cosine of item vectors (factor models, the visual
models: :meth:`Recommender.neighbour_vectors`) scores every item per query, a
million-row matrix-vector product and a top-n over a million scores at a million
items. :class:`NeighbourIndex` keeps the unit vectors of the items with a non-zero
vector. Up to ``exact_max`` items it scans them all (the model's own answers). Past
that it groups them into about ``sqrt(n)`` cells by spherical k-means, stored cell by
cell (an inverted file, the IVF-Flat of vector databases), and a query scores the
``probes`` cells whose centres are nearest its vector: ``probes * sqrt(n)`` items on
average instead of ``n``. The answers are exact within those cells; neighbours in other
cells are missed (recall is measured in ``docs/benchmarks/model-neighbours.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .base import Ids, Scores, top_n

#: ``derive(name, compute)``: an array computed once and kept (e.g. memory-mapped with a model version).
Derive = Callable[[str, Callable[[], np.ndarray]], np.ndarray]

_CHUNK = 65_536
_SAMPLE = 65_536  # vectors the cell centres are learned from
_ITERATIONS = 8


def in_memory(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """A :data:`Derive` that keeps nothing: computes the array each time it is asked."""
    return compute()


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Euclidean length of each row, without a temporary the size of ``vectors``."""
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors)).astype(np.float32)


def unit_rows(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``vectors[rows]`` scaled to unit length, float32 and C-contiguous, copied a chunk at a time."""
    rows = np.arange(len(vectors)) if rows is None else rows
    out = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), _CHUNK):
        block = np.asarray(vectors[rows[start : start + _CHUNK]], dtype=np.float32)
        out[start : start + _CHUNK] = block / np.maximum(row_norms(block), 1e-12)[:, None]
    return out


def spherical_kmeans(unit: np.ndarray, cells: int, seed: int = 0) -> np.ndarray:
    """``cells`` unit centres of the unit rows ``unit``, learned on a sample of at most ``_SAMPLE`` of them."""
    rng = np.random.default_rng(seed)
    sample = unit[np.sort(rng.choice(len(unit), min(_SAMPLE, len(unit)), replace=False))]
    centres = sample[rng.choice(len(sample), cells, replace=False)].copy()
    for _ in range(_ITERATIONS):
        nearest = np.argmax(sample @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, sample)
        lengths = row_norms(sums)
        moved = lengths > 1e-12  # an empty cell keeps its centre
        centres[moved] = sums[moved] / lengths[moved, None]
    return centres


def assign_cells(unit: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The cell (nearest centre) of each unit row, a chunk at a time."""
    out = np.empty(len(unit), dtype=np.int32)
    for start in range(0, len(unit), _CHUNK):
        out[start : start + _CHUNK] = np.argmax(unit[start : start + _CHUNK] @ centres.T, axis=1)
    return out


@dataclass(frozen=True)
class NeighbourIndex:
    """Unit vectors of a model's items, cell by cell; a query scores the cells nearest it (all: one cell)."""

    cols: np.ndarray  # item columns (the model's numbering), cell by cell
    unit: np.ndarray  # their unit vectors in the same order: float32, C-contiguous
    offsets: np.ndarray  # cell k holds rows offsets[k]:offsets[k + 1]
    centres: np.ndarray  # the cells' unit centres (one cell: unused)
    vectors: np.ndarray  # the model's vectors of every item (the query's own row)
    probes: int  # cells scored per query (at least one, at most every cell)

    def __post_init__(self) -> None:
        object.__setattr__(self, "probes", max(1, min(int(self.probes), len(self.offsets) - 1)))

    @property
    def exact(self) -> bool:
        """Whether every query scans every item (one cell)."""
        return len(self.offsets) <= 2

    def nearest(self, col: int, n: int) -> tuple[Ids, Scores]:
        """The ``n`` items of highest cosine to item ``col`` (itself excluded) in the cells searched, best first."""
        return self.search(self.vectors[col], n, skip=col)

    def search(self, query: np.ndarray, n: int, skip: int | None = None) -> tuple[Ids, Scores]:
        """The ``n`` items of highest cosine to the vector ``query`` (not ``skip``) in the cells searched, best first.

        A zero ``query`` has no neighbours (an item with no factors or no image, as the model says).
        """
        query = np.asarray(query, dtype=np.float32)
        length = float(np.sqrt(query @ query))
        if not length >= 1e-12:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        query = query / np.float32(length)
        if self.exact:
            ids, scores = self.cols, self.unit @ query
        else:
            cells = np.argpartition(-(self.centres @ query), self.probes - 1)[: self.probes]
            spans = [slice(self.offsets[k], self.offsets[k + 1]) for k in cells]
            ids = np.concatenate([self.cols[s] for s in spans])
            scores = np.concatenate([self.unit[s] @ query for s in spans])
        if skip is not None:
            scores[ids == skip] = -np.inf
        best, best_scores = top_n(scores[None, :], n)
        best, best_scores = best[0], best_scores[0]
        return np.where(best >= 0, ids[np.maximum(best, 0)], -1), best_scores


def neighbour_index(
    vectors: np.ndarray, exact_max: int, probes: int, derive: Derive = in_memory, name: str = "neighbours"
) -> NeighbourIndex:
    """The :class:`NeighbourIndex` of ``vectors`` (one row per item; zero rows are never neighbours).

    Up to ``exact_max`` items with a vector: one cell, every query exact. Past it,
    ``round(sqrt(n))`` cells. ``derive`` keeps the arrays (``{name}{exact_max}_*``).
    """
    name = f"{name}{exact_max}"
    present = derive(f"{name}_present", lambda: np.flatnonzero(row_norms(vectors) >= 1e-12).astype(np.int64))
    if len(present) <= max(exact_max, 2):
        offsets = np.array([0, len(present)], dtype=np.int64)
        unit = derive(f"{name}_unit", lambda: unit_rows(vectors, present))
        return NeighbourIndex(present, unit, offsets, np.zeros((1, vectors.shape[1]), np.float32), vectors, 1)
    cells = max(2, round(np.sqrt(len(present))))
    memo: dict[str, np.ndarray] = {}

    def present_unit() -> np.ndarray:  # computed at most once, and only if an array below is
        if "unit" not in memo:
            memo["unit"] = unit_rows(vectors, present)
        return memo["unit"]

    centres = derive(f"{name}_centres", lambda: spherical_kmeans(present_unit(), cells))
    cell = derive(f"{name}_cell", lambda: assign_cells(present_unit(), centres))
    order = np.argsort(cell, kind="stable")
    cols = derive(f"{name}_cols", lambda: present[order])
    offsets = derive(f"{name}_offsets", lambda: np.searchsorted(cell[order], np.arange(cells + 1)).astype(np.int64))
    unit = derive(f"{name}_unit", lambda: np.ascontiguousarray(present_unit()[order]))
    return NeighbourIndex(cols, unit, offsets, centres, vectors, probes)


def inner_product_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows whose cosine with ``[query, 0]`` ranks like ``vectors @ query`` (maximum inner product as cosine).

    Each non-zero row ``x`` becomes ``[x, sqrt(M**2 - |x|**2)]``, ``M`` the largest row
    length: every such row is ``M`` long, so its cosine with ``[q, 0]`` is
    ``x . q / (M |q|)`` (Bachrach et al., 2014). Zero rows stay zero (never found).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = row_norms(vectors)
    longest = float(norms.max()) if len(norms) else 0.0
    extra = np.sqrt(np.maximum(longest**2 - norms.astype(np.float64) ** 2, 0.0)).astype(np.float32)
    extra[norms < 1e-12] = 0.0
    return np.hstack([vectors, extra[:, None]])
