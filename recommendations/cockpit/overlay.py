"""Why two products match, for the owner: heat overlays of their photos, drawn by a worker and cached.

The similar-items preview in the admin links each neighbour to the overlay view, which asks
:func:`requested_overlay`: both products' primary photos under the heat of where they agree
most (:mod:`recommendations.ml.heatmaps`), computed with the active embedding version's
backbone and its own preprocessing. The web process only reads the two photos (their
checksums key the cache) and the cache; the drawing, which loads the backbone and torch, is
the ``match_overlay`` task's, on the ``embeddings`` worker pool (:func:`draw_overlay`),
queued once per pair while one is pending. The PNG, or the reason it cannot be drawn, is
cached under the two files' checksums, the embedding version's key and the drawing's
revision, so a changed photo or a new version draws afresh. With no broker (the
single-process demo) the task runs in-process and the first request gets the PNG.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from ..conf import get_adapter, get_product_model, visrec_settings
from ..embedding import _embedder_for, read_image_record
from ..models import EmbeddingModel
from ..serving import active
from ..serving.keys import _cache_add, _cache_delete, _cache_get_many, _cache_set, _key

logger = logging.getLogger(__name__)

HEIGHT = 320  # pixels of each photo in the overlay
CACHE_SECONDS = 30 * 24 * 3600
REASON_SECONDS = 3600  # why a pair cannot be drawn (its photos, its version) is kept this long
FAULT_SECONDS = 60  # an unexpected failure of the drawing is answered this long, then it is tried again
PENDING_SECONDS = 5 * 60  # a queued drawing holds its pair at most this long (a lost task is queued again after)
REVISION = 1  # bump when the drawing changes: cached overlays are drawn again


class OverlayUnavailable(Exception):
    """The overlay cannot be drawn for these photos or this version; the message says why, for the owner."""

    status = 422


class OverlayFailed(OverlayUnavailable):
    """The overlay cannot be drawn or delivered now (a fault of the system, not of the photos): try again later."""

    status = 503


@dataclass(frozen=True)
class _Pair:
    model: EmbeddingModel
    files: tuple[bytes, bytes]
    key: str  # of the PNG (or the reason) in the cache


def requested_overlay(product, neighbour) -> bytes | None:
    """The owner's request (web process, no torch): the cached PNG, or None while a worker draws it.

    A pair not yet drawn is queued (``tasks.match_overlay``) once while it is pending; with
    no broker the task runs here and its PNG is returned at once. Raises
    :class:`OverlayUnavailable` with the reason (a photo missing or unusable, no active
    embedding version, a reason the worker cached) and :class:`OverlayFailed` when the
    drawing cannot be queued or delivered now.
    """
    pair = _pair(product, neighbour)
    if (png := _cached(pair.key)) is not None:
        return png
    pending = _pending_key(product.pk, neighbour.pk)
    added = _cache_add(pending, pair.key, PENDING_SECONDS)
    if added is None:
        raise OverlayFailed("The cache is not answering, and overlays reach this page through it: try again soon.")
    if added:
        _enqueue(product.pk, neighbour.pk, pending)
    return _cached(pair.key)  # drawn already when the task ran in this process


def match_overlay(product, neighbour, transient: tuple[type[Exception], ...] = ()) -> bytes:
    """PNG of ``product``'s and ``neighbour``'s primary photos side by side, under the heat of where they agree.

    From the cache, or drawn here (the backbone and torch load: a worker's path). Raises
    :class:`OverlayUnavailable` when a photo is missing or unreadable, no embedding version
    is active, or its backbone has no spatial feature maps, and :class:`OverlayFailed` when
    the drawing failed unexpectedly (logged); either reason is cached with the pair for the
    web process to answer. ``transient``: exceptions left to the caller to retry, not cached.
    """
    pair = _pair(product, neighbour)
    png = _cached(pair.key)
    if png is None:
        try:
            png = _draw(pair.model, *pair.files)
        except OverlayUnavailable as e:
            _cache_set(pair.key, _reason(e), REASON_SECONDS)
            raise
        except transient:
            raise
        except Exception as e:
            logger.exception("match overlay failed", extra={"product": product.pk, "neighbour": neighbour.pk})
            fault = OverlayFailed(f"The overlay cannot be drawn now ({type(e).__name__}); the log has the details.")
            _cache_set(pair.key, _reason(fault), FAULT_SECONDS)
            raise fault from e
        _cache_set(pair.key, png, CACHE_SECONDS)
    return png


def draw_overlay(product_pk: Any, neighbour_pk: Any, transient: tuple[type[Exception], ...] = ()) -> str:
    """The ``match_overlay`` task's body: draw the pair's overlay into the cache; returns what became of it.

    Releases the pair's pending mark when done, unless a ``transient`` exception is raised
    for the task to retry (the pair stays pending meanwhile).
    """
    Product = get_product_model()
    pks = [Product._meta.pk.to_python(pk) for pk in (product_pk, neighbour_pk)]
    retrying = False
    try:
        products = Product._default_manager.in_bulk(pks)
        if any(pk not in products for pk in pks):
            logger.info("match overlay: a product is gone", extra={"product": pks[0], "neighbour": pks[1]})
            return "gone"
        match_overlay(products[pks[0]], products[pks[1]], transient)
        return "ready"
    except OverlayUnavailable as e:
        logger.info("match overlay not drawn: %s", e, extra={"product": pks[0], "neighbour": pks[1]})
        return f"not drawn: {e}"
    except transient:
        retrying = True
        raise
    finally:
        if not retrying:
            _cache_delete(_pending_key(*pks))


def _pair(product, neighbour) -> _Pair:
    model = active().embedding
    if model is None:
        raise OverlayUnavailable("No embedding version is active yet: embed the catalogue's images first.")
    files = (_photo_file(product), _photo_file(neighbour))
    key = _key("overlay", REVISION, HEIGHT, model.key, *(hashlib.sha256(f).hexdigest() for f in files))
    return _Pair(model, files, key)


def _pending_key(product_pk: Any, neighbour_pk: Any) -> str:
    return _key("overlay-pending", product_pk, neighbour_pk)


def _reason(error: OverlayUnavailable) -> dict:
    return {"reason": str(error), "status": error.status}


def _cached(key: str) -> bytes | None:
    """The PNG cached under ``key``, or None; raises the reason cached there instead of a PNG."""
    found = _cache_get_many([key]).get(key)
    if isinstance(found, dict):
        raise (OverlayFailed if found.get("status") == OverlayFailed.status else OverlayUnavailable)(found["reason"])
    return found


def _enqueue(product_pk: Any, neighbour_pk: Any, pending: str) -> None:
    from ..tasks import match_overlay as task

    try:
        task.delay(product_pk, neighbour_pk)
    except Exception as e:  # kombu's OperationalError, a refused socket, a DNS failure ...
        _cache_delete(pending)
        logger.warning("could not queue a match overlay: %s", e, extra={"product": product_pk})
        raise OverlayFailed("The overlay cannot be queued now (the task broker did not take it): try again.") from e


def _photo_file(product) -> bytes:
    """The bytes of ``product``'s primary photo (the one lists show)."""
    image = get_adapter().describe(product).primary_image
    if image is None:
        raise OverlayUnavailable(f"“{product}” has no photo.")
    if image.problem:
        raise OverlayUnavailable(f"The photo of “{product}” is unusable: {image.problem}")
    data, error = read_image_record(image)
    if data is None:
        raise OverlayUnavailable(f"The photo of “{product}” cannot be read: {error}")
    return data


def _draw(model: EmbeddingModel, anchor: bytes, match: bytes) -> bytes:
    from ..ml.heatmaps import NoSpatialMaps, SpatialFeatures, overlay_pair_png
    from ..ml.images import ImageRejected, load_image

    embedder = _embedder_for(model)
    if embedder is None:
        raise OverlayUnavailable(
            f"The backbone of {model} cannot be loaded here (its weights are missing or changed), "
            "so its feature maps cannot be drawn."
        )
    try:
        photos = [load_image(data, int(visrec_settings.MAX_IMAGE_PIXELS)) for data in (anchor, match)]
        png, score = overlay_pair_png(SpatialFeatures(embedder.backbone), *photos, height=HEIGHT)
    except ImageRejected as e:
        raise OverlayUnavailable(f"A photo cannot be used: {e}") from None
    except NoSpatialMaps as e:
        raise OverlayUnavailable(f"No overlay for this embedding version: {e}.") from None
    logger.info("match overlay drawn", extra={"embedding_model": model.pk, "score": round(score, 4)})
    return png
