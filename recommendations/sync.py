"""Keeping visrec's copy of the shop in step: product snapshots and per-image state, through the adapter.

:func:`sync_products` is the one write path. The signal handlers call it after the
transaction that changed a watched model commits; ``visrec_sync`` calls it for the whole
catalogue (first install, repair). New and changed images are queued for embedding.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .adapters import ImageRecord, ProductKey, ProductRecord, describe_all
from .conf import get_adapter, visrec_settings
from .models import ImageEmbedding, ImageState, ProductSnapshot

logger = logging.getLogger(__name__)

SNAPSHOT_FIELDS = [
    "recommendable",
    "active",
    "in_stock",
    "title",
    "sku",
    "url",
    "price",
    "currency",
    "category_id",
    "category_name",
    "category_path",
    "image_url",
]
IMAGE_FIELDS = ["version", "url", "is_primary", "position", "sha256", "status", "error", "width", "height"]


@dataclass
class SyncReport:
    """What one sync changed."""

    products: int = 0
    removed: int = 0
    images_new: int = 0
    images_changed: int = 0
    images_removed: int = 0
    queued: list[int] | None = None


def snapshot_of(record: ProductRecord) -> ProductSnapshot:
    """The snapshot row of ``record`` (unsaved)."""
    category = record.category
    primary = record.primary_image
    return ProductSnapshot(
        product_id=record.pk,
        recommendable=record.recommendable,
        active=record.active,
        in_stock=record.in_stock,
        title=record.title[:500],
        sku=record.sku[:200],
        url=record.url[:1000],
        price=record.price,
        currency=(record.currency or "")[:3],
        category_id=category.id if category else None,
        category_name=category.name[:300] if category else "",
        category_path=list(category.ancestor_ids) if category else [],
        image_url=(primary.url if primary else "")[:1000],
    )


def sync_products(pks: Iterable[ProductKey], *, embed: bool = True) -> SyncReport:
    """Bring the snapshots and image states of the products ``pks`` in line with the adapter.

    Products that no longer exist lose their rows; images the adapter no longer reports
    lose theirs (and their vectors); a new image, or one whose version changed, becomes
    pending and (``embed`` and ``VISREC['AUTO_EMBED']``) is queued after commit.
    """
    pks = list(dict.fromkeys(pks))
    report = SyncReport(queued=[])
    if not pks:
        return report
    adapter = get_adapter()
    with transaction.atomic():
        records = list(describe_all(adapter, pks))
        found = {r.pk for r in records}
        gone = [pk for pk in pks if pk not in found]
        if gone:
            report.removed = ProductSnapshot.objects.filter(product_id__in=gone).delete()[0]
            ImageState.objects.filter(product_id__in=gone).delete()
        ProductSnapshot.objects.bulk_create(
            [snapshot_of(r) for r in records],
            update_conflicts=True,
            unique_fields=["product"],
            update_fields=[*SNAPSHOT_FIELDS, "updated_at"],
        )
        report.products = len(records)
        queued = _sync_images(adapter, records, report)
    report.queued = queued
    if queued and embed and visrec_settings.AUTO_EMBED:
        from .tasks import enqueue_embedding

        enqueue_embedding(queued)
    return report


def _sync_images(adapter, records: list[ProductRecord], report: SyncReport) -> list[int]:
    """Upsert the image states of ``records``; the ids that need an embedding."""
    existing: dict[tuple, ImageState] = {
        (s.product_id, s.key): s for s in ImageState.objects.filter(product_id__in=[r.pk for r in records])
    }
    wanted: set[tuple] = set()
    new, changed, refreshed = [], [], []
    for record in records:
        primary = record.primary_image
        for image in record.images:
            ident = (record.pk, image.key)
            wanted.add(ident)
            state = existing.get(ident)
            is_primary = image.key == primary.key
            if state is None:
                state = ImageState(product_id=record.pk, key=image.key)
                _apply(adapter, state, image, is_primary)
                new.append(state)
                continue
            before = [getattr(state, f) for f in IMAGE_FIELDS]
            if _apply(adapter, state, image, is_primary):
                refreshed.append(state)
            if before != [getattr(state, f) for f in IMAGE_FIELDS]:
                state.updated_at = timezone.now()
                changed.append(state)
    stale = [s.pk for ident, s in existing.items() if ident not in wanted]
    if stale:
        report.images_removed = ImageState.objects.filter(pk__in=stale).delete()[0]
    ImageState.objects.bulk_create(new)
    if changed:
        ImageState.objects.bulk_update(changed, [*IMAGE_FIELDS, "updated_at"])
    if refreshed:  # a new file: the vectors of the old one go (the embedder skips images that have one)
        ImageEmbedding.objects.filter(image__in=[state.pk for state in refreshed]).delete()
    report.images_new, report.images_changed = len(new), len(refreshed)
    return [s.pk for s in (*new, *refreshed)]


def _apply(adapter, state: ImageState, image: ImageRecord, is_primary: bool) -> bool:
    """Copy ``image`` onto ``state``; a new image or version becomes pending (True: it needs an embedding).

    ``is_primary``: ``image`` is the product's :attr:`~.adapters.ProductRecord.primary_image`
    (the one flagged, else the first by position), whose vector serves similar items and tastes.
    """
    fresh = state.pk is None or state.version != image.version
    if fresh:
        state.version = image.version[:500]
        state.sha256 = "" if image.problem else file_sha256(adapter, image)
        state.status, state.error, state.width, state.height = ImageState.Status.PENDING, "", None, None
    if image.problem:
        state.status, state.error = ImageState.Status.FAILED, image.problem[:2000]
        fresh = False
    state.url, state.is_primary, state.position = image.url[:1000], is_primary, image.position
    return fresh


def file_sha256(adapter, image: ImageRecord) -> str:
    """SHA-256 of the image file (identical files embed once), or "" when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with adapter.open_image(image) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, ValueError) as e:
        logger.info("image file cannot be read for its checksum", extra={"image": image.key, "reason": str(e)})
        return ""
    return digest.hexdigest()


def sync_all(batch_size: int = 500, *, embed: bool = True) -> SyncReport:
    """Sync every product of the shop, and drop rows of products that are gone (``visrec_sync``)."""
    adapter = get_adapter()
    total = SyncReport(queued=[])
    pks = list(adapter.model._default_manager.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), batch_size):
        part = sync_products(pks[start : start + batch_size], embed=embed)
        total.products += part.products
        total.images_new += part.images_new
        total.images_changed += part.images_changed
        total.images_removed += part.images_removed
        total.queued += part.queued
    orphans = ProductSnapshot.objects.exclude(product_id__in=adapter.model._default_manager.values("pk"))
    total.removed = orphans.delete()[0]
    return total
