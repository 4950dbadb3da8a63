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
from ..ml.mapped import cached_array
from ..ml.neighbours import Derive, NeighbourIndex, inner_product_vectors, neighbour_index, row_norms
from ..ml.neighbours import in_memory as _in_memory
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


@dataclass
class Complements:
    """A version's compatibility model with a search index of the codes of the products it scores.

    A product's partners are the codes of highest inner product with its anchor code,
    searched in a :class:`~recommendations.ml.neighbours.NeighbourIndex` of the codes
    made cosine (:func:`~recommendations.ml.neighbours.inner_product_vectors`): every
    code up to ``MODEL_NEIGHBOUR_EXACT`` products (exact), the ``COMPLEMENT_PROBES``
    cells nearest the anchor's code past it (256 of about 1,000 at a million products).
    """

    model: Any  # recommendations.ml.complements.CompatibilityModel
    items: np.ndarray  # product pk of each code's row
    rows: KeyIndex  # product pk -> row of ``codes``
    index: NeighbourIndex
    longest: float  # the largest code's length (turns a cosine back into the inner product)

    def partners(self, vector: np.ndarray, n: int, exclude=None) -> list[tuple[int, float]]:
        """``[(product pk, score)]``: the ``n`` products that go best with a picture's ``vector``, best first."""
        if vector.shape[-1] != self.model.mean.shape[0]:
            return []  # a vector of another embedding version
        anchor = self.model.anchor_codes(vector[None, :])[0]
        skip = self.rows.find(exclude) if exclude is not None else -1
        rows, cosines = self.index.search(np.append(anchor, np.float32(0.0)), n, skip=skip if skip >= 0 else None)
        scale = float(np.sqrt(anchor @ anchor)) * self.longest
        return [(int(self.items[r]), float(c) * scale) for r, c in zip(rows, cosines, strict=True) if r >= 0]


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
    # the index ``similar_items`` searches (None: the model answers itself, e.g. item kNN's stored rows)
    index: NeighbourIndex | None = None
    # complete the look's compatibility model, trained with the version (None: none was)
    complements: Complements | None = None

    def pks(self, cols: np.ndarray) -> list[int]:
        return [int(self.items[c]) for c in cols]

    def similar_items(self, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's item neighbours of column ``col`` (columns in ``model``'s numbering).

        A model whose neighbours are a cosine of item vectors is searched in its
        :class:`~recommendations.ml.neighbours.NeighbourIndex`: exact up to
        ``MODEL_NEIGHBOUR_EXACT`` items, bounded work per request past it.
        """
        if self.index is not None:
            return self.index.nearest(col, n)
        ids, scores = self.model.similar_items(np.array([col]), N=n)
        return ids[0], scores[0]


def model_neighbour_index(model, derive: Derive = _in_memory) -> NeighbourIndex | None:
    """The neighbour index of a model whose item neighbours are a cosine of item vectors (else None).

    Sized by ``MODEL_NEIGHBOUR_EXACT`` and ``MODEL_NEIGHBOUR_PROBES``; ``derive``: its
    arrays are kept with the version's mapped arrays, computed once.
    """
    vectors = model.neighbour_vectors() if hasattr(model, "neighbour_vectors") else None
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        return None
    exact_max, probes = int(visrec_settings.MODEL_NEIGHBOUR_EXACT), int(visrec_settings.MODEL_NEIGHBOUR_PROBES)
    return neighbour_index(vectors, exact_max, probes, derive)


def complements_index(model, codes: np.ndarray, items: np.ndarray, derive: Derive = _in_memory) -> Complements:
    """A version's :class:`Complements` over ``codes`` (pks ``items`` by row); ``derive`` keeps its index's arrays."""
    exact_max, probes = int(visrec_settings.MODEL_NEIGHBOUR_EXACT), int(visrec_settings.COMPLEMENT_PROBES)
    searched = derive("complements_searched", lambda: inner_product_vectors(codes))
    index = neighbour_index(searched, exact_max, probes, derive, name="complements")
    items = np.asarray(items, dtype=np.int64)
    longest = float(row_norms(searched[index.cols[:1]])[0]) if len(index.cols) else 0.0
    return Complements(model, items, key_index(items, "complement_items", derive), index, longest)


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
    cols = derive("neighbour_cols", lambda: np.flatnonzero(row_norms(factors) >= 1e-12).astype(np.int64))
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
    index = model_neighbour_index(loaded.model, derive)
    return LoadedModel(
        version_id=loaded.version.pk,
        model=loaded.model,
        items=items,
        column=key_index(items, "items", derive),
        row=key_index(np.asarray(loaded.users).astype(str, copy=False), "users", derive),
        neighbours=neighbours,
        neighbour_cols=neighbour_cols,
        index=index,
        complements=None if loaded.complements is None else complements_index(*loaded.complements, derive=derive),
    )


def _derived(folder: Path, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    return cached_array(folder, f"derived__{name}", compute)


def prepare(version: ModelVersion) -> None:
    """Write ``version``'s memory-mapped arrays (and those serving derives) so no request has to."""
    from ..training import load_version, registry

    registry()
    serving_model(load_version(version, mapped=True))
