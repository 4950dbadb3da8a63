"""Catalogue visual health for the admin: duplicates, failed images, missing vectors, coverage.

Every check is one bounded query (or a time-boxed sweep for near-duplicates) and the
expensive ones are cached for a few minutes, so the page stays cheap on a large catalogue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, OuterRef
from django.db.models.functions import Cast
from django.utils import timezone
from pgvector.django import CosineDistance, HalfVectorField

from ..conf import get_product_model, visrec_settings
from ..models import EmbeddingModel, ImageEmbedding, ImageState, Impression

NEAR_DUPLICATE_DISTANCE = 0.02  # cosine distance below which two images count as the same picture
SWEEP_SECONDS = 3.0  # time box of one near-duplicate sweep
SWEEP_MAX = 400  # images looked at per sweep (newest first)
CACHE_SECONDS = 600


def _cached(name: str, compute, refresh: bool = False):
    key = f"{visrec_settings.CACHE_PREFIX}health:{name}"
    found = None if refresh else cache.get(key)
    if found is None:
        found = (timezone.now(), compute())
        cache.set(key, found, CACHE_SECONDS)
    return found


def duplicate_shas():
    """File digests (sha256) shared by more than one image, most copies first (a queryset to paginate)."""
    return (
        ImageState.objects.exclude(sha256="")
        .values("sha256")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .order_by("-n", "sha256")
        .values_list("sha256", flat=True)
    )


def images_with_sha(shas) -> dict[str, list]:
    """``{sha256: [ProductImage, ...]}`` for one page of :func:`duplicate_shas`."""
    groups: dict[str, list] = {sha: [] for sha in shas}
    for image in ImageState.objects.filter(sha256__in=list(shas)).select_related("product").order_by("pk"):
        groups.setdefault(image.sha256, []).append(image)
    return groups


def near_duplicates(
    model: EmbeddingModel | None, threshold: float = NEAR_DUPLICATE_DISTANCE, refresh: bool = False
) -> tuple[object, list[tuple[int, int, float]], int]:
    """``(computed_at, [(image_id, image_id, distance)], images_looked_at)`` from a bounded HNSW sweep (cached).

    The newest ``SWEEP_MAX`` primary images (at most ``SWEEP_SECONDS``) each ask the
    index for their nearest image of another product; pairs closer than ``threshold``
    are reported once.
    """
    if model is None:
        return timezone.now(), [], 0
    when, (pairs, looked) = _cached(f"near:{model.pk}:{threshold}", lambda: _sweep(model, threshold), refresh)
    return when, pairs, looked


def _sweep(model: EmbeddingModel, threshold: float) -> tuple[list[tuple[int, int, float]], int]:
    from ..serving import search_rows

    rows = ImageEmbedding.objects.filter(model=model, image__is_primary=True).order_by("-pk")
    started, pairs, seen, looked = time.monotonic(), [], set(), 0
    for image_id, product_id, vector in rows.values_list("image_id", "image__product_id", "vector")[:SWEEP_MAX]:
        if time.monotonic() - started > SWEEP_SECONDS:
            break
        looked += 1
        query = (
            ImageEmbedding.objects.filter(model=model, image__is_primary=True)
            .exclude(image__product_id=product_id)
            .annotate(distance=CosineDistance(Cast("vector", HalfVectorField(dimensions=model.dimensions)), vector))
            .order_by("distance")
            .values_list("image_id", "distance")[:1]
        )
        for other, distance in search_rows(query):
            pair = tuple(sorted((image_id, other)))
            if distance is not None and float(distance) < threshold and pair not in seen:
                seen.add(pair)
                pairs.append((*pair, float(distance)))
    return sorted(pairs, key=lambda p: p[2]), looked


def similarity_head(refresh: bool = False):
    """The similarity head the fitted descriptor joins (fitted when, on what), or why there is none.

    The per-category product counts it needs when there is none are cached.
    """
    from ..similarity import category_counts, head_status

    return head_status(lambda model: _cached(f"head-counts:{model.pk}", lambda: category_counts(model), refresh)[1])


def failed_images():
    """Images whose embedding failed, newest first, with their products."""
    return ImageState.objects.filter(status="failed").select_related("product").order_by("-updated_at")


def products_without_vector(model: EmbeddingModel | None):
    """Active products with no image vector under ``model`` (all active products when none is active)."""
    qs = (
        get_product_model()
        .objects.filter(visrec_snapshot__active=True)
        .select_related("visrec_snapshot")
        .order_by("pk")
    )
    if model is None:
        return qs
    vectors = ImageEmbedding.objects.filter(model=model, image__product=OuterRef("pk"))
    return qs.exclude(Exists(vectors))


def shown_product_ids(days: int = 30, refresh: bool = False) -> set[int]:
    """Products in any impression of the last ``days`` days (one SQL over ``Impression.items``; cached)."""

    def compute() -> set[int]:
        since = timezone.now() - timedelta(days=days)
        sql = (
            f"SELECT DISTINCT elem->>'product' FROM {Impression._meta.db_table} i, "
            "jsonb_array_elements(i.items) elem WHERE i.created_at >= %s AND jsonb_typeof(i.items) = 'array' "
            "AND elem ? 'product'"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [since])
            key = get_product_model()._meta.pk.to_python  # int or UUID product keys
            return {key(row[0]) for row in cursor.fetchall() if row[0] is not None}

    return _cached(f"shown:{days}", compute, refresh)[1]


def never_recommended_ids(days: int = 30, refresh: bool = False) -> list[int]:
    """Active products in no impression of the last ``days`` days, by id (cached, so pages are cheap)."""

    def compute() -> list[int]:
        shown = shown_product_ids(days, refresh)
        active = (
            get_product_model().objects.filter(visrec_snapshot__active=True).order_by("pk").values_list("pk", flat=True)
        )
        return [pk for pk in active.iterator(chunk_size=10_000) if pk not in shown]

    return _cached(f"never:{days}", compute, refresh)[1]


def coverage(days: int = 30, refresh: bool = False) -> list[Coverage]:
    """:func:`coverage_by_category` of the last ``days`` days (cached)."""
    return _cached(f"coverage:{days}", lambda: coverage_by_category(shown_product_ids(days, refresh)), refresh)[1]


@dataclass(frozen=True)
class Coverage:
    category: str
    products: int
    shown: int

    @property
    def share(self) -> float:
        return self.shown / self.products if self.products else 0.0


def coverage_by_category(shown: set[int]) -> list[Coverage]:
    """Per category: active products and how many of them were shown at least once (lowest share first)."""
    rows = (
        get_product_model()
        .objects.filter(visrec_snapshot__active=True)
        .values_list("pk", "visrec_snapshot__category_name")
    )
    total: dict[str, int] = {}
    hit: dict[str, int] = {}
    for pk, name in rows.iterator(chunk_size=5000):
        name = name or "(no category)"
        total[name] = total.get(name, 0) + 1
        hit[name] = hit.get(name, 0) + (pk in shown)
    out = [Coverage(name, n, hit[name]) for name, n in total.items()]
    return sorted(out, key=lambda c: (c.share, c.category))


def requeue_images(user, images) -> int:
    """Mark ``images`` (a queryset) pending and queue them for embedding; one admin-log line per product."""
    from ..audit import log_change
    from ..tasks import enqueue_embedding

    rows = list(images.values_list("pk", "product_id"))
    ids = [pk for pk, _ in rows]
    ImageState.objects.filter(pk__in=ids).update(status="pending", error="")
    enqueue_embedding(ids)
    products = get_product_model().objects.in_bulk({product for _, product in rows})
    for product in products.values():
        n = sum(1 for _, p in rows if p == product.pk)
        log_change(user, product, f"Queued {n} image(s) for embedding again.")
    return len(ids)
