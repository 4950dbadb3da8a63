"""Serving: candidates from pgvector, filtered in SQL, with a popularity fallback.

Views, template tags and the API call these functions; nothing here renders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import F
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, HalfVectorField

from .conf import get_product_model
from .models import EmbeddingModel, ImageEmbedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recommendation:
    """A product with the score that ranked it (cosine similarity, or popularity)."""

    product: object
    score: float
    reason: str = "visual"


class ProductNotEmbedded(LookupError):
    """The product has no image vector yet (pending, failed or no image)."""


def _products_in_order(ids_scores: list[tuple[int, float]], reason: str) -> list[Recommendation]:
    Product = get_product_model()
    by_id = Product.objects.prefetch_related("images").in_bulk([pk for pk, _ in ids_scores])
    return [Recommendation(by_id[pk], score, reason) for pk, score in ids_scores if pk in by_id]


def product_vector(product, model: EmbeddingModel):
    """The primary image vector of ``product`` under ``model``."""
    row = (
        ImageEmbedding.objects.filter(model=model, image__product=product)
        .order_by("-image__is_primary", "image__position", "image_id")
        .values_list("vector", flat=True)
        .first()
    )
    if row is None:
        raise ProductNotEmbedded(f"product {product.pk} has no image vector yet")
    return row


def nearest_products_queryset(vector, model: EmbeddingModel, exclude: list[int] | None = None, category=None):
    """Primary images of recommendable products ordered by cosine distance to ``vector``.

    The ordering expression matches the version's partial HNSW index; the product
    filters are SQL in the same query (pgvector iterative scans keep the list full).
    """
    Product = get_product_model()
    products = Product.objects.recommendable()
    if category is not None:
        products = products.filter(category=category)
    query = ImageEmbedding.objects.filter(model=model, image__is_primary=True, image__product__in=products)
    if exclude:
        query = query.exclude(image__product_id__in=exclude)
    distance = CosineDistance(Cast("vector", HalfVectorField(dimensions=model.dimensions)), vector)
    return query.annotate(distance=distance).order_by("distance")


def nearest_products(vector, model: EmbeddingModel, limit: int, exclude: list[int] | None = None, category=None):
    """``[(product_id, cosine similarity)]`` of the ``limit`` nearest products, nearest first."""
    rows = nearest_products_queryset(vector, model, exclude, category).values_list(F("image__product_id"), "distance")
    return [(pk, 1.0 - float(d)) for pk, d in rows[:limit]]


def similar_items(product, limit: int = 8) -> list[Recommendation]:
    """Products that look like ``product`` (excluding itself, inactive and out-of-stock)."""
    model = EmbeddingModel.objects.active()
    if model is None:
        raise ProductNotEmbedded("no embedding model is active yet")
    vector = product_vector(product, model)
    return _products_in_order(nearest_products(vector, model, limit, exclude=[product.pk]), "visual")


def popular(limit: int = 8, category=None, exclude: list[int] | None = None) -> list[Recommendation]:
    """Best sellers (weighted interactions), optionally within a category."""
    Product = get_product_model()
    qs = Product.objects.recommendable()
    if category is not None:
        qs = qs.filter(category=category)
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    rows = list(qs.popular().values_list("pk", "popularity")[:limit])
    return _products_in_order([(pk, float(score)) for pk, score in rows], "popular")


def similar_items_or_fallback(product, limit: int = 8) -> list[Recommendation]:
    """Similar items; popular items of the same category when the product has no vector."""
    try:
        items = similar_items(product, limit)
    except ProductNotEmbedded:
        items = []
    if len(items) < limit:
        seen = [product.pk, *(r.product.pk for r in items)]
        items += popular(limit - len(items), category=getattr(product, "category", None), exclude=seen)
    return items
