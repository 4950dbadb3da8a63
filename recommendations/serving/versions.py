"""The active embedding and model versions, and the loaded model of each version."""

from __future__ import annotations

import copy
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..conf import visrec_settings
from ..ml.base import top_n
from ..ml.mapped import cached_array
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


#: ``derive(name, compute)``: an array computed from a loaded version, kept in its folder of mapped arrays.
Derive = Callable[[str, Callable[[], np.ndarray]], np.ndarray]


def _in_memory(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    return compute()


class KeyIndex(Mapping):
    """``{key: position}`` over an array of unique keys, without a Python object per key.

    A dict of a million product pks or shopper keys costs each web process 100-150 MB;
    this finds a key by binary search in the keys themselves (when sorted, as a
    snapshot's product pks are) or in a sorted copy with each key's position, arrays
    that may be memory-mapped and shared. Keys of another type are simply not there.
    """

    def __init__(self, sorted_keys: np.ndarray, positions: np.ndarray | None = None) -> None:
        self.sorted_keys = sorted_keys
        self.positions = positions  # position of each sorted key (None: the keys are in position order)
        self._text = sorted_keys.dtype.kind == "U"

    def find(self, key) -> int:
        """Position of ``key``, or -1."""
        if self._text:
            if not isinstance(key, str):
                return -1
        else:
            try:
                key = operator.index(key)
            except TypeError:
                return -1
        at = int(np.searchsorted(self.sorted_keys, key, side="right")) - 1  # the last of equal keys, as a dict keeps
        if at < 0 or self.sorted_keys[at] != key:
            return -1
        return at if self.positions is None else int(self.positions[at])

    def __getitem__(self, key) -> int:
        at = self.find(key)
        if at < 0:
            raise KeyError(key)
        return at

    def __contains__(self, key) -> bool:
        return self.find(key) >= 0

    def __len__(self) -> int:
        return len(self.sorted_keys)

    def __iter__(self) -> Iterator:
        return (key.item() for key in self.sorted_keys)


def key_index(keys: np.ndarray, name: str, derive: Derive = _in_memory) -> KeyIndex:
    """A :class:`KeyIndex` of ``keys``; the sorted copy of unsorted keys is derived once as ``name_*``."""
    if len(keys) < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return KeyIndex(keys)
    positions = derive(f"{name}_positions", lambda: np.argsort(keys, kind="stable"))
    return KeyIndex(derive(f"{name}_sorted", lambda: keys[positions]), positions)


@dataclass(frozen=True)
class NeighbourPool:
    """The items a model's neighbours are searched among, as unit vectors (see :func:`neighbour_pool`).

    A request scores ``len(cols)`` items whatever the catalogue's size: one
    matrix-vector product over ``unit`` and a partial sort.
    """

    cols: np.ndarray  # the pool's item columns (model numbering), ascending
    unit: np.ndarray  # their unit vectors, float32, C-contiguous, one row per column of ``cols``
    vectors: np.ndarray  # the model's vectors of every item (an anchor may be outside the pool)

    def nearest(self, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` pool items of highest cosine to item ``col`` (itself excluded), best first."""
        anchor = np.asarray(self.vectors[col], dtype=np.float32)
        length = float(np.sqrt(anchor @ anchor))
        if not length >= 1e-12:  # a zero row (no factors, no image): no neighbours, as the model says
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = self.unit @ (anchor / np.float32(length))
        at = int(np.searchsorted(self.cols, col))
        if at < len(self.cols) and self.cols[at] == col:
            scores[at] = -np.inf
        ids, scores = top_n(scores[None, :], n)
        ids, scores = ids[0], scores[0]
        return np.where(ids >= 0, self.cols[np.maximum(ids, 0)], -1), scores


def neighbour_pool(model, size: int, derive: Derive = _in_memory) -> NeighbourPool | None:
    """The pool of a model whose neighbours are a cosine of item vectors (None for other models).

    The pool is every item with a non-zero vector when there are at most ``size`` of
    them (the answers are then the model's own ``similar_items``), else the ``size`` of
    them the model saw most often in training (its popularity prior, a monotone
    function of the interaction counts; without one, the lowest columns). Items outside
    the pool still get neighbours, only not as neighbours of others: a shopper reaches
    them through the visual neighbours similar items blends in. ``derive``: the columns
    and unit vectors are kept with the version's mapped arrays, computed once.
    """
    vectors = model.neighbour_vectors() if hasattr(model, "neighbour_vectors") else None
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        return None
    prior = getattr(model, "prior", None)
    popularity = prior if isinstance(prior, np.ndarray) and prior.shape == (len(vectors),) else None
    cols = derive(f"neighbour_pool{size}_cols", lambda: _pool_cols(vectors, popularity, size))
    unit = derive(f"neighbour_pool{size}_unit", lambda: _unit_rows(vectors, cols))
    return NeighbourPool(cols, unit, vectors)


def _pool_cols(vectors: np.ndarray, popularity: np.ndarray | None, size: int) -> np.ndarray:
    """Columns of the non-zero rows of ``vectors``; the ``size`` most popular of them when there are more."""
    cols = np.flatnonzero(_row_norms(vectors) >= 1e-12).astype(np.int64)
    if len(cols) <= size:
        return cols
    if popularity is None:
        return cols[:size]
    order = np.lexsort((cols, -popularity[cols]))  # most popular first, ties by column
    return np.sort(cols[order[:size]])


def _unit_rows(vectors: np.ndarray, cols: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """``vectors[cols]`` scaled to unit length, float32 and C-contiguous, copied a chunk at a time."""
    out = np.empty((len(cols), vectors.shape[1]), dtype=np.float32)
    for start in range(0, len(cols), chunk):
        rows = np.asarray(vectors[cols[start : start + chunk]], dtype=np.float32)
        out[start : start + chunk] = rows / np.maximum(_row_norms(rows), 1e-12)[:, None]
    return out


@dataclass
class LoadedModel:
    """The active recommender with its id maps (product pk <-> item column, shopper key -> row)."""

    version_id: int
    model: Any
    items: np.ndarray
    column: Mapping[int, int]
    row: Mapping[str, int]
    neighbours: Any = None  # a factor model's copy that keeps only rows with factors (see ``_neighbour_model``)
    # its item columns in ``model``'s numbering (None: the same); for a factor model the items with
    # a non-zero factor row, which are also the only ones ``for_you`` scores (a zero row carries no
    # taste: such items reach a shopper through the session taste, trending and popular lists)
    neighbour_cols: np.ndarray | None = None
    # the items ``similar_items`` searches (None: the model answers itself, e.g. item kNN's stored rows)
    pool: NeighbourPool | None = None

    def pks(self, cols: np.ndarray) -> list[int]:
        return [int(self.items[c]) for c in cols]

    def similar_items(self, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's item neighbours of column ``col`` (columns in ``model``'s numbering).

        A model whose neighbours are a cosine of item vectors is searched among its
        :class:`NeighbourPool` (bounded work per request at any catalogue size).
        """
        if self.pool is not None:
            return self.pool.nearest(col, n)
        ids, scores = (self.neighbours or self.model).similar_items(np.array([col]), N=n)
        return ids[0], scores[0]


def _row_norms(factors: np.ndarray) -> np.ndarray:
    """Euclidean length of each row, without a temporary the size of ``factors``."""
    return np.sqrt(np.einsum("ij,ij->i", factors, factors)).astype(np.float32)


def _neighbour_model(model, derive: Derive = _in_memory) -> tuple[Any, np.ndarray | None]:
    """A copy of a factor model that keeps only the items with factors, with their columns.

    Items without interactions have all-zero factors: they carry no taste and are
    never neighbours. For you scores the other rows only, from this copy's factors
    (``derive``: kept with the version's mapped arrays). Other models are served as they are.
    """
    from ..ml.mf import _FactorModel

    factors = getattr(model, "item_factors", None)
    if not isinstance(model, _FactorModel) or not isinstance(factors, np.ndarray) or factors.ndim != 2:
        return model, None
    cols = derive("neighbour_cols", lambda: np.flatnonzero(_row_norms(factors) >= 1e-12).astype(np.int64))
    compact = copy.copy(model)
    if len(cols) < len(factors):
        compact.item_factors = derive("neighbour_factors", lambda: np.ascontiguousarray(factors[cols]))
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
        mapped = bool(visrec_settings.MODEL_MMAP)
        try:
            loaded = load_version(version, mapped=mapped)
            return serving_model(loaded)
        except OSError:  # e.g. a read-only CACHE_DIR: the copies cannot be written
            if not mapped:
                raise
            logger.warning("cannot memory-map model version %s: loading it into memory", version.pk, exc_info=True)
            return serving_model(load_version(version))
    except Exception:
        logger.exception("cannot load the active model version", extra={"model_version": version.pk})
        return None


def serving_model(loaded) -> LoadedModel:
    """What serving needs of a loaded version (``training.LoadedVersion``): the model, id maps, neighbours.

    Arrays derived here (a factor model's rows with factors, the sorted shopper keys)
    are kept with the version's mapped arrays when it was loaded mapped, so that every
    process maps one copy; otherwise each process computes its own.
    """
    folder = loaded.mapped_dir
    derive: Derive = _in_memory if folder is None else partial(_derived, folder)
    items = np.asarray(loaded.items, dtype=np.int64)
    neighbours, neighbour_cols = _neighbour_model(loaded.model, derive)
    if neighbour_cols is not None:  # for you scores these items: their factors are the ones just derived
        loaded.model.keep_subset(neighbour_cols, neighbours.item_factors)
    pool = neighbour_pool(loaded.model, int(visrec_settings.MODEL_NEIGHBOUR_POOL), derive)
    return LoadedModel(
        version_id=loaded.version.pk,
        model=loaded.model,
        items=items,
        column=key_index(items, "items", derive),
        row=key_index(np.asarray(loaded.users).astype(str, copy=False), "users", derive),
        neighbours=neighbours,
        neighbour_cols=neighbour_cols,
        pool=pool,
    )


def _derived(folder: Path, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    return cached_array(folder, f"derived__{name}", compute)


def prepare(version: ModelVersion) -> None:
    """Write ``version``'s memory-mapped arrays (and those serving derives) so no request has to."""
    from ..training import load_version, registry

    registry()
    serving_model(load_version(version, mapped=True))
