"""Celery tasks: ids in, bridge functions called. No business logic here."""

from __future__ import annotations

import datetime
import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError, transaction

from .conf import visrec_settings

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    queue="embeddings",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError, InterfaceError, OSError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def embed_images(self, image_ids: list[int], force: bool = False) -> dict:
    """Embed a batch of images; idempotent, so a redelivered batch does no harm."""
    from .embedding import embed_images as run

    if not image_ids:
        logger.info("embed_images: nothing to do")
        return {"embedded": 0}

    def progress(done: int, total: int) -> None:
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    report = run(image_ids, force=force, progress=progress)
    return {"embedded": report.embedded, "reused": report.reused, "failed": report.failed, "skipped": report.skipped}


@shared_task(queue="embeddings", acks_late=True)
def embed_missing(stale_after_seconds: int = 600) -> dict:
    """Sweep (beat, every 10 minutes): queue usable images that still lack a vector.

    Catches tasks lost with their broker and drives a backbone switch to completion.
    Images changed in the last ``stale_after_seconds`` are left to their own task.
    """
    from django.utils import timezone

    from .embedding import current_embedding_model, images_missing

    cutoff = timezone.now() - datetime.timedelta(seconds=stale_after_seconds)
    ids = list(images_missing(current_embedding_model()).filter(updated_at__lt=cutoff).values_list("pk", flat=True))
    chunk = max(int(visrec_settings.EMBED_TASK_CHUNK), 1)
    for start in range(0, len(ids), chunk):
        embed_images.delay(ids[start : start + chunk])
    logger.info("embed_missing queued images", extra={"count": len(ids)})
    return {"queued": len(ids)}


@shared_task(bind=True, queue="training", acks_late=True, time_limit=6 * 3600)
def train_models(self, models: list[str] | None = None) -> dict:
    """Nightly (beat) and on-demand retraining; progress is reported per model."""
    from .training import train

    def progress(kind: str, done: int, total: int) -> None:
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta={"model": kind, "done": done, "total": total})

    version = train(models, progress=progress)
    return {"version": version.pk, "kind": version.kind, "active": version.is_active}


@worker_ready.connect(dispatch_uid="visrec_sweep_on_worker_start")
def _sweep_on_worker_start(sender=None, **kwargs) -> None:
    """A starting worker picks up what a lost worker or a new backbone left behind."""
    embed_missing.delay()


def enqueue_embedding(image_ids: list[int]) -> None:
    """Queue embedding of ``image_ids`` once the current transaction commits."""
    ids = list(image_ids)
    chunk = max(int(visrec_settings.EMBED_TASK_CHUNK), 1)

    def send() -> None:
        for start in range(0, len(ids), chunk):
            embed_images.delay(ids[start : start + chunk])

    transaction.on_commit(send)
