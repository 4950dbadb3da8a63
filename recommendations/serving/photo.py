"""Search by photo: an uploaded image embedded and matched against the catalogue."""

from __future__ import annotations

import numpy as np
from django.db import DatabaseError

from ..conf import visrec_settings
from ..ml.images import load_image
from ..models import EmbeddingModel
from ..rules import Rules, overfetch, rules_for
from .lists import _finish
from .results import InvalidImage, RecommendationList
from .vectors import nearest_products
from .versions import active


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


def embed_query_image(image, model: EmbeddingModel) -> np.ndarray:
    """Validate and embed an uploaded photo with ``model``'s backbone (loaded once per process)."""
    from ..embedding import _embedder_for

    pil = load_image(_read_image(image), int(visrec_settings.MAX_IMAGE_PIXELS))
    embedder = _embedder_for(model)
    if embedder is None:
        raise DatabaseError("the active embedding version's backbone cannot be loaded")
    return embedder.embed_arrays([embedder.prepare(pil)])[0]


def search_by_image(image, *, limit: int = 12, category=None, rules: Rules | None = None) -> RecommendationList:
    """Products that look like an uploaded photo (bytes or a file object).

    Raises :data:`InvalidImage` with a clear message for empty, corrupt, hostile or
    oversized files (``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``).
    """
    rules = rules_for("search-by-photo", rules, category=category)
    act = active()
    if act.embedding is None:
        load_image(_read_image(image), int(visrec_settings.MAX_IMAGE_PIXELS))  # still report a bad file
        return RecommendationList("search-by-photo", [], None, None, "empty")
    vector = embed_query_image(image, act.embedding)
    depth = overfetch(limit, rules)
    cards: dict = {}  # the neighbour query's products pass ``rules`` (and the category) already
    rows = nearest_products(vector, act.embedding, depth, category=category, rules=rules, cards=cards)
    ranked = [(pk, s, "visual") for pk, s in rows]
    return _finish("search-by-photo", ranked, limit, rules, act, "visual" if ranked else "empty", cards=cards)
