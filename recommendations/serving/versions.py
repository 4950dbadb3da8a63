"""The active embedding and model versions, and the loaded model of each version."""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ml.base import top_n
from ..models import EmbeddingModel, ModelVersion
from .keys import _prefix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Active:
    """The embedding version and model version serving reads now."""

    embedding: EmbeddingModel | None
    version: ModelVersion | None

    @property
    def embedding_version(self) -> str | None:
        return str(self.embedding.pk) if self.embedding else None

    @property
    def version_id(self) -> int | None:
        return self.version.pk if self.version else None

    @property
    def key(self) -> str:
        return f"e{self.embedding_version}-m{self.version_id}"


_ACTIVE_SECONDS = 1.0


_local_active: dict[str, tuple[float, Active]] = {}  # cache prefix -> (when read, versions), this process


def active() -> Active:
    """The active versions, read from the database at most every ``_ACTIVE_SECONDS`` by each process.

    The database, not the cache, is the source: an activation anywhere (a worker's
    training, the admin, another web process) reaches every process within a second, with
    a cache per process too; one in this process at once (``forget_active``).
    """
    key = _prefix() + "active"
    now = time.monotonic()
    local = _local_active.get(key)
    if local is not None and now - local[0] < _ACTIVE_SECONDS:
        return local[1]
    found = Active(EmbeddingModel.objects.active(), ModelVersion.objects.active())
    _local_active.clear()  # one prefix in use per process (tests change it)
    _local_active[key] = (now, found)
    return found


def forget_active() -> None:
    """Make the next call re-read the active versions (after an activation)."""
    _local_active.clear()


@dataclass
class LoadedModel:
    """The active recommender with its id maps (product pk <-> item column, shopper key -> row)."""

    version_id: int
    model: Any
    items: np.ndarray
    column: dict[int, int]
    row: dict[str, int]
    neighbours: Any = None  # the model for ``similar_items`` (see ``_neighbour_model``)
    # its item columns in ``model``'s numbering (None: the same); for a factor model the items with
    # a non-zero factor row, which are also the only ones ``for_you`` scores (a zero row carries no
    # taste: such items reach a shopper through the session taste, trending and popular lists)
    neighbour_cols: np.ndarray | None = None

    def pks(self, cols: np.ndarray) -> list[int]:
        return [int(self.items[c]) for c in cols]

    def similar_items(self, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's ``similar_items`` for item column ``col`` (columns in ``model``'s numbering)."""
        if self.neighbour_cols is None:
            ids, scores = (self.neighbours or self.model).similar_items(np.array([col]), N=n)
            return ids[0], scores[0]
        at = int(np.searchsorted(self.neighbour_cols, col))
        if at >= len(self.neighbour_cols) or self.neighbour_cols[at] != col:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)  # a zero factor row: no neighbours
        # the rows are unit length already: the cosines are one matrix-vector product (what the model's
        # ``similar_items`` computes after normalising every row again, on every call)
        unit = self.neighbours.item_factors
        scores = unit @ unit[at]
        scores[at] = -np.inf
        ids, scores = top_n(scores[None, :], n)
        ids, scores = ids[0], scores[0]
        return np.where(ids >= 0, self.neighbour_cols[np.maximum(ids, 0)], -1), scores


def _neighbour_model(model) -> tuple[Any, np.ndarray | None]:
    """A copy of a factor model that answers ``similar_items`` cheaply, with its item columns.

    Factor models score item neighbours by the cosine of item factors over the whole
    catalogue on every call. Items without interactions have all-zero factors and are
    never neighbours; the copy keeps only the other rows, each scaled to unit length once
    (cosine ignores a row's scale), so a call scores the items the model knows and the
    answers are the model's own. Other models are served as they are.
    """
    from ..ml.mf import _FactorModel

    factors = getattr(model, "item_factors", None)
    if not isinstance(model, _FactorModel) or not isinstance(factors, np.ndarray) or factors.ndim != 2:
        return model, None
    norms = np.linalg.norm(factors, axis=1)
    cols = np.flatnonzero(norms >= 1e-12)
    compact = copy.copy(model)
    compact.item_factors = np.ascontiguousarray(factors[cols] / norms[cols, None], dtype=factors.dtype)
    return compact, cols


_models: dict[int, LoadedModel | None] = {}


_MODELS_KEPT = 3


_models_lock = threading.Lock()


def loaded_model(version: ModelVersion | None) -> LoadedModel | None:
    """The artifact of ``version``, loaded once per process (None if it cannot be loaded)."""
    if version is None:
        return None
    if version.pk in _models:
        return _models[version.pk]
    with _models_lock:
        if version.pk not in _models:
            while len(_models) >= _MODELS_KEPT:  # the active version and an experiment's arms
                _models.pop(next(iter(_models)))
            _models[version.pk] = _load_model(version)
    return _models[version.pk]


def _load_model(version: ModelVersion) -> LoadedModel | None:
    from ..training import load_version, registry

    try:
        registry()
        loaded = load_version(version)
    except Exception:
        logger.exception("cannot load the active model version", extra={"model_version": version.pk})
        return None
    items = np.asarray(loaded.items, dtype=np.int64)
    neighbours, neighbour_cols = _neighbour_model(loaded.model)
    return LoadedModel(
        version_id=version.pk,
        model=loaded.model,
        items=items,
        column={int(pk): i for i, pk in enumerate(items)},
        row={str(key): i for i, key in enumerate(loaded.users)},
        neighbours=neighbours,
        neighbour_cols=neighbour_cols,
    )
