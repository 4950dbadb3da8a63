"""Why two products match, for the owner: heat overlays of their photos, drawn on demand and cached.

The similar-items preview in the admin links each neighbour to :func:`match_overlay`:
both products' primary photos under the heat of where they agree most
(:mod:`recommendations.ml.heatmaps`), computed with the active embedding version's
backbone and its own preprocessing. The PNG is cached under the two files' checksums, the
embedding version's key and the drawing's revision, so a changed photo or a new version
draws afresh. Nothing here runs on a shopper's page: torch is loaded by the first overlay
an owner asks for.
"""

from __future__ import annotations

import hashlib
import logging

from ..conf import get_adapter, visrec_settings
from ..embedding import _embedder_for, read_image_record
from ..models import EmbeddingModel
from ..serving import active
from ..serving.keys import _cache_get_many, _cache_set, _key

logger = logging.getLogger(__name__)

HEIGHT = 320  # pixels of each photo in the overlay
CACHE_SECONDS = 30 * 24 * 3600
REVISION = 1  # bump when the drawing changes: cached overlays are drawn again


class OverlayUnavailable(Exception):
    """The overlay cannot be drawn; the message says why, for the owner."""


def match_overlay(product, neighbour) -> bytes:
    """PNG of ``product``'s and ``neighbour``'s primary photos side by side, under the heat of where they agree.

    Raises :class:`OverlayUnavailable` when a photo is missing or unreadable, no
    embedding version is active, or its backbone has no spatial feature maps.
    """
    model = active().embedding
    if model is None:
        raise OverlayUnavailable("No embedding version is active yet: embed the catalogue's images first.")
    files = [_photo_file(p) for p in (product, neighbour)]
    key = _key("overlay", REVISION, HEIGHT, model.key, *(hashlib.sha256(f).hexdigest() for f in files))
    png = _cache_get_many([key]).get(key)
    if png is None:
        png = _draw(model, *files)
        _cache_set(key, png, CACHE_SECONDS)
    return png


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
