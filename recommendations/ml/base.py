"""The one interface every recommender implements (modelled on implicit's RecommenderBase).

Matrix indices (user rows, item columns) live only inside ``recommendations.ml``;
``recommendations.data`` maps them to and from primary keys.

Conventions
-----------
- ``user_items`` is a ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)`` whose
  values are interaction strengths (already weighted by kind / rating).
- ``item_features`` is an optional ``(n_items, d)`` float32 array of L2-normalised
  image vectors (rows of zeros for items without an image).
- ``context`` is an optional :class:`FitContext` with per-interaction timestamps and
  item metadata for models that use them.
- Batch-first: ``recommend`` takes an array of user rows and returns ``(ids, scores)``
  arrays of shape ``(len(userids), N)``; ``similar_items`` likewise for item ids. When
  fewer than ``N`` items qualify, ids are padded with ``-1`` and scores with ``-inf``.
- Artifacts are pickle-free: ``save`` writes one ``.npz`` (``allow_pickle=False``)
  holding arrays plus a JSON metadata record; ``load`` restores an equivalent model,
  optionally with its arrays memory-mapped (:mod:`.mapped`), read-only.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .mapped import unpack

Ids = np.ndarray
Scores = np.ndarray


@dataclass
class FitContext:
    """Side information some models use; every field is optional.

    Attributes
    ----------
    timestamps : scipy.sparse.csr_matrix, optional
        Same sparsity as ``user_items``; unix seconds of the latest interaction.
    item_categories : numpy.ndarray, optional
        ``(n_items,)`` int category index per item (-1 = none).
    now : float, optional
        Reference time (unix seconds) for recency weighting; default: max timestamp.
    judged_pairs, judged_labels : numpy.ndarray, optional
        ``(m, 2)`` item pairs the shop owner judged and ``(m,)`` labels (1 good match,
        -1 not similar); visual models learn a re-weighting of image vectors from them.
    """

    timestamps: sp.csr_matrix | None = None
    item_categories: np.ndarray | None = None
    now: float | None = None
    judged_pairs: np.ndarray | None = None
    judged_labels: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Recommender(ABC):
    """Base class of all visrec recommenders."""

    #: registry name, e.g. "als", "item_knn"; also the artifact's "kind".
    name: ClassVar[str] = "base"
    #: whether :meth:`fit` reads ``item_features``; training reads the image vectors (5 GB
    #: of float32 at a million products) only for models that do.
    needs_item_features: ClassVar[bool] = True

    @abstractmethod
    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> Recommender:
        """Learn from the interaction matrix (and image vectors when the model uses them)."""

    @abstractmethod
    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense ``(len(userids), n_items)`` scores; higher is better.

        ``user_items`` holds the rows of ``userids`` (see :meth:`recommend`); user ids
        beyond the training matrix are new shoppers known only by those rows.
        """

    def recommend(
        self,
        userids: np.ndarray,
        user_items: sp.csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[Ids, Scores]:
        """Top-``N`` items per user.

        As in implicit >= 0.6, ``user_items`` holds exactly the rows of ``userids``
        (``full_matrix[userids]``), so it may also carry a session's live history.
        """
        userids = np.atleast_1d(np.asarray(userids))
        if user_items.shape[0] != len(userids):
            raise ValueError("user_items must have one row per requested user (pass full_matrix[userids])")
        if items is None:
            scores = self.score(userids, user_items).astype(np.float32, copy=True)
            if filter_already_liked_items:
                rows, cols = user_items.nonzero()
                scores[rows, cols] = -np.inf
            return top_n(scores, N)
        items = np.asarray(items, dtype=np.int64)
        if len(items) > 1 and not bool(np.all(items[1:] > items[:-1])):  # callers usually pass sorted columns
            items = np.unique(items)
        scores = self.score_items(userids, user_items, items).astype(np.float32, copy=True)
        if filter_already_liked_items:
            liked = sp.csr_matrix(user_items)
            for row in range(len(userids)):
                cols = liked.indices[liked.indptr[row] : liked.indptr[row + 1]]
                at = np.searchsorted(items, cols)  # ``items`` is sorted: a lookup per liked item, not a pass over all
                hit = at < len(items)
                at = at[hit][items[at[hit]] == cols[hit]]
                scores[row, at] = -np.inf
        ids, out = top_n(scores, N)
        return np.where(ids >= 0, items[np.maximum(ids, 0)], -1), out

    def score_items(self, userids: np.ndarray, user_items: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """``score(userids, user_items)[:, items]``; models that can score a subset cheaper override it."""
        return self.score(userids, user_items)[:, np.asarray(items)]

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[Ids, Scores]:
        """Items most similar to each of ``itemids`` (the item itself excluded)."""
        raise NotImplementedError(f"{type(self).__name__} has no item-to-item similarity")

    def neighbour_vectors(self) -> np.ndarray | None:
        """The item vectors whose cosine :meth:`similar_items` ranks, one row per item (a view, no copy).

        All-zero rows are never neighbours. ``None``: the similarity is not a cosine of
        vectors (serving then asks :meth:`similar_items` itself).
        """
        return None

    # -- persistence -------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable), read back from same-named attributes.

        Every recommender stores each ``__init__`` argument under its own name, so
        ``type(model)(**model.get_params())`` rebuilds an unfitted twin.
        """
        signature = inspect.signature(type(self).__init__)
        names = [n for n, p in signature.parameters.items() if n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
        return {name: getattr(self, name) for name in names}

    def get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027 (optional hook)
        """Restore learned arrays from :meth:`get_state`'s output."""

    def save(self, path: str | Path) -> Path:
        """Write one pickle-free ``.npz`` artifact."""
        path = Path(path)
        meta = {"kind": self.name, "params": self.get_params(), "format": 1}
        arrays = {f"state__{k}": np.asarray(v) for k, v in self.get_state().items()}
        with open(path, "wb") as f:
            np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path, mapped: bool = False) -> Recommender:
        """Load an artifact written by :meth:`save` (of this class, or any registered one).

        ``mapped``: the learned arrays are memory-mapped, read-only, from uncompressed
        copies next to the artifact (:func:`.mapped.unpack`, written by the first load),
        so every process that loads the artifact shares one copy in the page cache.
        """
        if mapped:
            arrays = unpack(path)
        else:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["__meta__"]))
        state = {k.removeprefix("state__"): v for k, v in arrays.items() if k.startswith("state__")}
        model_cls = REGISTRY[meta["kind"]] if cls is Recommender else cls
        model = model_cls(**meta["params"])
        model.set_state(state)
        return model


REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender loadable by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def top_n(scores: np.ndarray, n: int) -> tuple[Ids, Scores]:
    """Row-wise top-``n`` of a dense score matrix, best first; ``-inf`` entries never win."""
    n_rows, n_items = scores.shape
    k = min(n, n_items)
    ids = np.full((n_rows, n), -1, dtype=np.int64)
    out = np.full((n_rows, n), -np.inf, dtype=np.float32)
    if k == 0:
        return ids, out
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    valid = np.isfinite(best_scores)
    ids[:, :k] = np.where(valid, best, -1)
    out[:, :k] = np.where(valid, best_scores, -np.inf)
    return ids, out
