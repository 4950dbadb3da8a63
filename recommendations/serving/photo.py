"""Search by photo: an uploaded image embedded and matched against the catalogue.

A shopper's photo is hostile until proven otherwise: it decodes under
``SEARCH_MAX_IMAGE_PIXELS`` (never more than the catalogue's ``MAX_IMAGE_PIXELS``; a JPEG
at reduced scale, see :func:`~recommendations.ml.images.load_image`), and at most
``SEARCH_MAX_CONCURRENT_DECODES`` photos decode at once in a process; beyond that a search
waits ``SEARCH_DECODE_WAIT_SECONDS`` for a slot, then raises :class:`SearchBusy`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
from django.db import DatabaseError

from ..conf import visrec_settings
from ..ml.images import load_image, probe
from ..models import EmbeddingModel
from ..replicas import serving_read
from ..rules import Rules, overfetch, rules_for
from .lists import _finish
from .results import InvalidImage, RecommendationList, SearchBusy
from .vectors import nearest_products
from .versions import active

#: A JPEG is decoded at the smallest scale still covering this many times the model's resize.
DRAFT_FACTOR = 2
_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _read_image(image) -> bytes:
    limit = int(visrec_settings.MAX_IMAGE_BYTES)
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    else:
        if hasattr(image, "seek"):
            image.seek(0)
        data = image.read(limit + 1)
    if len(data) > limit:
        raise InvalidImage(f"file too large: more than {limit:,} bytes")
    return data


def _decode_slots() -> threading.BoundedSemaphore:
    """The process's decode slots (rebuilt when ``SEARCH_MAX_CONCURRENT_DECODES`` changes)."""
    global _slots
    size = max(int(visrec_settings.SEARCH_MAX_CONCURRENT_DECODES), 1)
    with _slots_lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's decode slots; :class:`SearchBusy` when none frees up in time."""
    slots = _decode_slots()
    if not slots.acquire(timeout=max(float(visrec_settings.SEARCH_DECODE_WAIT_SECONDS), 0.0)):
        raise SearchBusy("Too many photos are being searched right now; try again in a moment.")
    try:
        yield
    finally:
        slots.release()


def _prepared(image, prepare: Callable, resize: int | None = None):
    """``prepare(the shopper's photo as RGB)``, decoded under the shopper pixel limit (JPEGs near ``resize``).

    The header is checked first, outside the decode slots, so a file refused from its
    header never waits for one; decoding and ``prepare`` hold a slot, so no more full-size
    photos than slots are in memory at once.
    """
    data, draft = _read_image(image), (DRAFT_FACTOR * resize,) * 2 if resize else None
    limit = min(int(visrec_settings.SEARCH_MAX_IMAGE_PIXELS), int(visrec_settings.MAX_IMAGE_PIXELS))
    probe(data, limit, draft_size=draft)
    with decode_slot():
        return prepare(load_image(data, limit, draft_size=draft))


def embed_query_image(image, model: EmbeddingModel) -> np.ndarray:
    """Validate and embed an uploaded photo with ``model``'s embedder (loaded once per process).

    The embedder is torch-free when the version's ONNX export is on this machine
    (:func:`recommendations.embedding.query_embedder`). Raises :data:`InvalidImage` for a
    bad file and :class:`SearchBusy` when the process's decode slots stay taken.
    """
    from ..embedding import query_embedder

    embedder = query_embedder(model)
    if embedder is None:
        raise DatabaseError("the active embedding version's backbone cannot be loaded")
    resize = (model.preprocessing.get("resize") or [None])[0]
    prepared = _prepared(image, embedder.prepare, int(resize) if resize else None)
    return embedder.embed_arrays([prepared])[0]


@serving_read
def search_by_image(image, *, limit: int = 12, category=None, rules: Rules | None = None) -> RecommendationList:
    """Products that look like an uploaded photo (bytes or a file object).

    Raises :data:`InvalidImage` with a clear message for empty, corrupt, hostile or
    oversized files (``MAX_IMAGE_BYTES``, ``SEARCH_MAX_IMAGE_PIXELS``), and
    :class:`SearchBusy` when too many photos are being decoded at once. A serving read: a
    search a read replica failed runs again on the primary (embedding the photo again).
    """
    rules = rules_for("search-by-photo", rules, category=category)
    act = active()
    if act.embedding is None:
        _prepared(image, lambda photo: None)  # still report a bad file
        return RecommendationList("search-by-photo", [], None, None, "empty")
    vector = embed_query_image(image, act.embedding)
    depth = overfetch(limit, rules)
    cards: dict = {}  # the neighbour query's products pass ``rules`` (and the category) already
    rows = nearest_products(vector, act.embedding, depth, category=category, rules=rules, cards=cards)
    ranked = [(pk, s, "visual") for pk, s in rows]
    return _finish("search-by-photo", ranked, limit, rules, act, "visual" if ranked else "empty", cards=cards)
