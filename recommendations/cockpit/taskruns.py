"""Progress of background jobs (:class:`~recommendations.models.TaskRun` rows) for the admin.

Each write is one ``UPDATE`` of the run's row (outside any outer transaction's
business), so the dashboard, polling, sees a running job move. A job split into
several Celery tasks (chunks) counts finished chunks in ``result["chunks_done"]`` and
ends when the last one does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..models import TaskRun
from ..workers import LOST

logger = logging.getLogger(__name__)


def create(kind: str, *, user=None, params: dict | None = None, total: int = 0) -> TaskRun:
    """A queued run of ``kind`` started by ``user`` (None: the schedule)."""
    params = {"trigger": "admin" if user is not None else "schedule", **(params or {})}
    return TaskRun.objects.create(kind=kind, created_by=user, params=params, total=total)


def _update(run_id: int | None, **values: Any) -> None:
    if run_id is not None:
        TaskRun.objects.filter(pk=run_id).update(**values)


def started(run_id: int | None, *, total: int | None = None, task_id: str = "", message: str = "") -> None:
    now = timezone.now()
    values: dict[str, Any] = {"status": TaskRun.RUNNING, "started_at": now, "heartbeat_at": now, "message": message}
    if total is not None:
        values["total"] = total
    if task_id:
        values["celery_task_id"] = task_id
    _update(run_id, **values)


def progress(run_id: int | None, done: int, total: int | None = None, message: str | None = None) -> None:
    values: dict[str, Any] = {"done": done, "heartbeat_at": timezone.now()}
    if total is not None:
        values["total"] = total
    if message is not None:
        values["message"] = message
    _update(run_id, **values)


def advance(run_id: int | None, by: int) -> None:
    """Add ``by`` to the run's ``done`` (chunks of one run report this way)."""
    if by:
        _update(run_id, done=F("done") + by, heartbeat_at=timezone.now())


def finished(run_id: int | None, result: dict, message: str = "") -> None:
    _update(run_id, status=TaskRun.DONE, result=result, message=message, finished_at=timezone.now(), done=F("total"))


def failed(run_id: int | None, message: str, result: dict | None = None) -> None:
    values: dict[str, Any] = {"status": TaskRun.FAILED, "message": message[:2000], "finished_at": timezone.now()}
    if result is not None:
        values["result"] = result
    _update(run_id, **values)


def skipped(run_id: int | None, message: str) -> None:
    """End the run without doing its work (e.g. another training is running), saying why."""
    _update(run_id, status=TaskRun.SKIPPED, message=message[:2000], finished_at=timezone.now())


def send(run_id: int, queue: Callable[[int], object]) -> bool:
    """Call ``queue(run_id)`` (a task's ``.delay``); if the broker cannot be reached the run fails, saying so.

    Meant for ``transaction.on_commit``: the run is committed by then, so a broker that is
    down leaves a visible failed run instead of an exception after the commit and a run
    "queued" forever.
    """
    try:
        queue(run_id)
    except Exception as e:  # kombu's OperationalError, a refused socket, a DNS failure ...
        logger.warning("run %s: could not reach the task queue: %s", run_id, e)
        failed(run_id, f"could not reach the task queue: {e}")
        return False
    return True


@transaction.atomic
def chunk_finished(run_id: int | None, counts: dict[str, int], chunks: int) -> None:
    """Add one chunk's ``counts`` to the run; the last of ``chunks`` chunks ends it."""
    run = TaskRun.objects.select_for_update().filter(pk=run_id).first() if run_id is not None else None
    if run is None:
        return
    result = dict(run.result)
    for name, value in counts.items():
        result[name] = int(result.get(name, 0)) + int(value)
    result["chunks_done"] = int(result.get("chunks_done", 0)) + 1
    run.result, run.heartbeat_at = result, timezone.now()
    fields = ["result", "heartbeat_at"]
    if result["chunks_done"] >= chunks:
        result.pop(LOST, None)  # the sweeper gave it up too early: its chunks were only waiting
        run.status, run.finished_at, run.done = TaskRun.DONE, timezone.now(), run.total
        run.message = summary(result)
        fields += ["status", "finished_at", "done", "message"]
    run.save(update_fields=fields)


def summary(counts: dict) -> str:
    """``"12 embedded, 3 reused, 1 failed"`` from an embedding run's counts."""
    names = ("embedded", "reused", "failed", "skipped")
    return ", ".join(f"{int(counts[n])} {n}" for n in names if counts.get(n))
