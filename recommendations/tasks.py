"""Celery tasks: ids in, bridge functions called. No business logic here."""

from __future__ import annotations

import datetime
import logging

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.db import DatabaseError, InterfaceError, transaction

from . import devices, workers
from .cockpit import taskruns
from .conf import visrec_settings
from .models import TaskRun

logger = logging.getLogger(__name__)

_RETRIED = (DatabaseError, InterfaceError, OSError)


@shared_task(
    bind=True,
    queue="embeddings",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=_RETRIED,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def embed_images(self, image_ids: list[int], force: bool = False, run_id: int | None = None, chunks: int = 1) -> dict:
    """Embed a batch of images; idempotent, so a redelivered batch does no harm.

    ``run_id``: the :class:`~recommendations.models.TaskRun` this batch is one of
    ``chunks`` batches of; its progress and counts are added there. A batch whose
    worker died on each of ``TASK_MAX_DELIVERIES`` deliveries is given up: its images
    still without a vector fail with the reason.
    """
    with workers.delivered(self) as delivery, workers.heartbeat(run_id):
        if reason := workers.over_cap(delivery):
            return _give_up_batch(image_ids, reason, run_id, chunks)
        return _embed_batch(self, image_ids, force, run_id, chunks)


def _give_up_batch(image_ids: list[int], reason: str, run_id: int | None, chunks: int) -> dict:
    from .embedding import give_up

    failed = give_up(image_ids, f"not embedded: its batch was {reason}")
    logger.error("embed_images: batch of %d images %s", len(image_ids), reason)
    taskruns.chunk_finished(run_id, {"failed": failed}, chunks)
    return {"failed": failed, "given_up": True}


def _embed_batch(self, image_ids: list[int], force: bool, run_id: int | None, chunks: int) -> dict:
    from .embedding import embed_images as run

    if not image_ids:
        logger.info("embed_images: nothing to do")
        taskruns.chunk_finished(run_id, {}, chunks)
        return {"embedded": 0}
    reported = 0

    def progress(done: int, total: int) -> None:
        nonlocal reported
        taskruns.advance(run_id, done - reported)
        reported = done
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    try:
        report = run(image_ids, force=force, progress=progress)
    except Exception as e:
        if not isinstance(e, _RETRIED) or self.request.retries >= self.max_retries:
            taskruns.failed(run_id, f"a batch of {len(image_ids)} images failed: {type(e).__name__}: {e}")
        raise
    counts = {"embedded": report.embedded, "reused": report.reused, "failed": report.failed, "skipped": report.skipped}
    taskruns.chunk_finished(run_id, counts, chunks)
    return counts


def queue_embedding_run(image_ids: list[int], run_id: int) -> int:
    """Queue ``image_ids`` in chunks, all reporting to TaskRun ``run_id``; returns the number of chunks."""
    chunk = max(int(visrec_settings.EMBED_TASK_CHUNK), 1)
    batches = [image_ids[start : start + chunk] for start in range(0, len(image_ids), chunk)] or [[]]
    for batch in batches:
        embed_images.delay(batch, run_id=run_id, chunks=len(batches))
    return len(batches)


@shared_task(bind=True, queue="embeddings", acks_late=True)
def reembed_missing_and_failed(self, run_id: int) -> dict:
    """The admin's "Re-embed missing/failed": every image without a current vector, failed ones included."""
    from .embedding import current_embedding_model
    from .models import ImageState as Image

    with workers.delivered(self) as delivery:
        if workers.claim(run_id, self.request.id, "listing images") is None:
            logger.info("reembed: run already started or gone", extra={"run": run_id})
            return {"queued": 0}
        if reason := workers.over_cap(delivery):
            taskruns.failed(run_id, reason)
            return {"queued": 0}
        model = current_embedding_model()
        ids = list(Image.objects.exclude(embeddings__model=model).order_by("pk").values_list("pk", flat=True))
        taskruns.progress(run_id, 0, len(ids), f"{len(ids)} images to embed")
        queued = taskruns.send(run_id, lambda pk: queue_embedding_run(ids, pk))
        return {"queued": len(ids) if queued else 0}


@shared_task(
    bind=True,
    queue="embeddings",
    ignore_result=True,
    acks_late=False,  # a lost drawing is not redelivered: its pending mark expires and the owner's next ask queues it
    autoretry_for=_RETRIED,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
)
def match_overlay(self, product_id: int | str, neighbour_id: int | str) -> str:
    """The admin's "Where they agree": draw a pair's heat overlay into the cache (the backbone and torch load here).

    Runs on the embeddings pool, whose processes have the backbone loaded, never in a web
    process; the admin's view polls the cache for the PNG or the reason it cannot be drawn.
    """
    from .cockpit.overlay import draw_overlay

    retrying = not self.request.is_eager and self.request.retries < self.max_retries
    return draw_overlay(product_id, neighbour_id, transient=_RETRIED if retrying else ())


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
    if ids:  # a sweep that finds nothing leaves no run behind
        run = taskruns.create(TaskRun.EMBED, params={"images": "missing"}, total=len(ids))
        taskruns.started(run.pk, message=f"{len(ids)} images without a vector")
        if not taskruns.send(run.pk, lambda pk: queue_embedding_run(ids, pk)):
            return {"queued": 0}
    logger.info("embed_missing queued images", extra={"count": len(ids)})
    return {"queued": len(ids)}


@shared_task(queue="default")
def sweep_stale_runs() -> dict:
    """Sweep (beat, every 5 minutes, and at worker start): fail runs whose worker is gone."""
    return {"failed": workers.sweep_stale_runs()}


@shared_task(bind=True, queue="training", acks_late=True, time_limit=6 * 3600)
def train_models(self, models: list[str] | None = None, run_id: int | None = None) -> dict:
    """Nightly (beat) and on-demand retraining; progress is reported per model.

    ``run_id``: the admin's TaskRun; a scheduled run records one of its own (found
    again by task id when the task is redelivered). One training at a time: a second
    one ends "skipped".
    """
    with workers.delivered(self) as delivery:
        run = _claim_training(self.request.id, models, run_id)
        if run is None:
            logger.info("train_models: run already started or gone", extra={"run": run_id})
            return {}
        if reason := workers.over_cap(delivery):
            taskruns.failed(run.pk, reason)
            return {"error": reason}
        with workers.heartbeat(run.pk):
            return _train(self, models, run.pk)


def _claim_training(task_id: str | None, models: list[str] | None, run_id: int | None) -> TaskRun | None:
    if run_id is None:
        mine = TaskRun.objects.filter(kind=TaskRun.TRAIN, celery_task_id=task_id).first() if task_id else None
        run_id = mine.pk if mine else taskruns.create(TaskRun.TRAIN, params={"models": models}).pk
    return workers.claim(run_id, task_id, "reading interactions")


def _train(self, models: list[str] | None, run_id: int) -> dict:
    from .training import TrainingBusy, TrainingError, train

    head = _refit_similarity_head()

    def progress(kind: str, done: int, total: int) -> None:
        taskruns.progress(run_id, done, total + 1, f"evaluating {kind} ({done + 1} of {total})")
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta={"model": kind, "done": done, "total": total})

    try:
        version = train(models, progress=progress)
    except TrainingBusy as e:
        other = TaskRun.objects.filter(kind=TaskRun.TRAIN, status=TaskRun.RUNNING).exclude(pk=run_id).first()
        taskruns.skipped(run_id, f"{e} (run #{other.pk})" if other else str(e))
        logger.warning("training skipped: %s", e)
        return {"skipped": str(e)}
    except TrainingError as e:
        taskruns.failed(run_id, "; ".join(filter(None, [str(e), head])))
        logger.warning("training did not run: %s", e)
        return {"error": str(e)}
    except Exception as e:
        taskruns.failed(run_id, f"{type(e).__name__}: {e}")
        raise
    result = {"version": version.pk, "kind": version.kind, "active": version.is_active}
    state = "activated" if version.is_active else "kept the active version (not better)"
    extra = {"similarity_head": head} if head else {}
    taskruns.finished(run_id, result | extra, f"trained {version.kind} v{version.pk}; {state}")
    return result


def _refit_similarity_head() -> str:
    """Before the recommenders (they read the vectors that serve): refit the similarity head when due."""
    from .similarity import refit_if_due

    try:
        return refit_if_due()
    except Exception as e:  # the recommenders still train on the vectors that serve now
        logger.exception("similarity head refit failed")
        return f"similarity head refit failed: {type(e).__name__}: {e}"


@shared_task(queue="training", acks_late=True, time_limit=3 * 3600)
def fit_similarity_head() -> dict:
    """Fit the similarity head on the shop's categories and switch to its vectors (admin or on demand)."""
    from .ml.head import NotEnoughLabels
    from .similarity import HeadUnavailable
    from .similarity import fit_similarity_head as fit

    try:
        report = fit()
    except (NotEnoughLabels, HeadUnavailable) as e:
        logger.warning("similarity head not fitted: %s", e)
        return {"error": str(e)}
    return {"head": report.head.sha256, "version": report.version.pk, "active": report.switched}


@shared_task(bind=True, queue="default", acks_late=True, time_limit=3 * 3600)
def whatif_replay(self, run_id: int) -> dict:
    """The owner's what-if on the whole window (``WHATIF_SAMPLE`` lists); progress per replayed list."""
    with workers.delivered(self) as delivery:
        run = workers.claim(run_id, self.request.id, "sampling logged lists")
        if run is None:
            logger.info("whatif_replay: run already started or gone", extra={"run": run_id})
            return {}
        if reason := workers.over_cap(delivery):
            taskruns.failed(run_id, reason)
            return {"error": reason}
        with workers.heartbeat(run_id):
            return _whatif(self, run)


def _whatif(self, run: TaskRun) -> dict:
    from .replay import Candidate, ReplayError, what_if

    def progress(done: int, total: int) -> None:
        taskruns.progress(run.pk, done, total, f"replayed {done} of {total} lists")
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    try:
        candidate = Candidate.from_params(run.params["candidate"])
        result = what_if(
            candidate, limit=int(run.params.get("sample") or visrec_settings.WHATIF_SAMPLE), progress=progress
        )
    except (ReplayError, KeyError) as e:
        taskruns.failed(run.pk, f"cannot replay: {e}")
        return {"error": str(e)}
    except Exception as e:
        taskruns.failed(run.pk, f"{type(e).__name__}: {e}")
        raise
    taskruns.finished(run.pk, result, f"{result['changed']} of {result['lists']} lists change")
    return result


@worker_ready.connect(dispatch_uid="visrec_sweep_on_worker_start")
def _sweep_on_worker_start(sender=None, **kwargs) -> None:
    """A starting worker fails runs a lost worker left "running" and queues images it left without a vector."""
    sweep_stale_runs.delay()
    embed_missing.delay()


# Each pool process (after the fork) learns its index, which picks its GPU (``devices``).
worker_process_init.connect(devices.remember_pool_index, dispatch_uid="visrec_remember_pool_index", weak=False)


def enqueue_embedding(image_ids: list[int]) -> None:
    """Queue embedding of ``image_ids`` once the current transaction commits.

    A broker that cannot be reached is logged, not raised (the save has committed):
    the images stay pending and the ``embed_missing`` sweep queues them later.
    """
    ids = list(image_ids)
    chunk = max(int(visrec_settings.EMBED_TASK_CHUNK), 1)

    def send() -> None:
        try:
            for start in range(0, len(ids), chunk):
                embed_images.delay(ids[start : start + chunk])
        except Exception as e:  # kombu's OperationalError, a refused socket, a DNS failure ...
            logger.warning("could not queue the embedding of %d images (the sweep will): %s", len(ids), e)

    transaction.on_commit(send)
