"""Background runs and the workers that run them: identity, heartbeats, stale runs, redeliveries.

A task that owns a :class:`~recommendations.models.TaskRun` claims it (:func:`claim`),
records which process runs it (host, pid, the process's start time and pid namespace) and touches
``heartbeat_at`` from a thread while it works (:func:`heartbeat`). A "running" run whose
heartbeat is older than ``VISREC["TASK_STALE_SECONDS"]``, or whose process on this host is
gone, is stale: the sweeper (:func:`sweep_stale_runs`, from the beat schedule and at worker
start) fails it with the reason, and its redelivered task takes it over instead of
skipping it.

Every delivery of a task is counted (:func:`delivered`) in its own committed statement
before any work, so a task that kills its worker (out of memory) is still counted; past
``VISREC["TASK_MAX_DELIVERIES"]`` the task gives up, with the reason, and is acknowledged.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from .conf import visrec_settings
from .models import TaskDelivery, TaskRun

logger = logging.getLogger(__name__)

#: ``TaskRun.result`` key set by the sweeper: the run's worker was lost (a redelivery may resume it).
LOST = "lost_worker"
#: Delivery counts of tasks that never ended are forgotten after this long.
DELIVERY_RECORD_TTL = datetime.timedelta(days=1)


# -- which process runs a task ----------------------------------------------------------------


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks after boot (Linux ``/proc``); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (command name)"
    return None if fields[0] == "Z" else int(fields[19])


def _pid_namespace() -> str:
    """The pid namespace of this process (containers sharing a host name differ here), or ""."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""


def this_worker() -> str:
    """``host:pid:start:pid namespace`` of this process (start 0 and namespace "" where ``/proc`` is missing)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or 0}:{_pid_namespace()}"


def worker_gone(worker: str) -> bool:
    """True when ``worker`` (:func:`this_worker`) ran on this host and that process no longer exists.

    A pid reused by another process counts as gone (its start time differs). Processes
    of other hosts, or of other containers of this host, are never judged here; their
    heartbeat tells.
    """
    host, pid_text, start_text, namespace = (worker.split(":") + ["", "", ""])[:4]
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid_text.isdigit():
        return False
    pid, start = int(pid_text), int(start_text or 0)
    if Path("/proc/self/stat").exists():
        now = _process_start(pid)
        return now is None or (start != 0 and now != start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- heartbeats and stale runs ----------------------------------------------------------------


def stale_reason(run: TaskRun, now: datetime.datetime | None = None) -> str:
    """Why the "running" ``run`` has no live worker, or "" when it may still be running."""
    if run.status != TaskRun.RUNNING:
        return ""
    if run.worker and worker_gone(run.worker):
        return f"its worker process ({run.worker}) is gone"
    seen = run.heartbeat_at or run.started_at or run.created_at
    silent = (now or timezone.now()) - seen
    if silent > datetime.timedelta(seconds=float(visrec_settings.TASK_STALE_SECONDS)):
        return f"no sign of life from its worker for {int(silent.total_seconds() // 60)} minutes"
    return ""


@contextmanager
def heartbeat(run_id: int | None) -> Iterator[None]:
    """Touch the run's ``heartbeat_at`` every ``TASK_HEARTBEAT_SECONDS`` from a thread while the body runs."""
    if run_id is None:
        yield
        return
    stop = threading.Event()
    every = max(float(visrec_settings.TASK_HEARTBEAT_SECONDS), 0.01)

    def beat() -> None:
        try:
            while not stop.wait(every):
                TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING).update(heartbeat_at=timezone.now())
        except DatabaseError as e:  # the database is away: the run looks stale, which is the truth
            logger.warning("heartbeat of run %s stopped: %s", run_id, e)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"visrec-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@transaction.atomic
def claim(run_id: int, task_id: str | None, message: str = "") -> TaskRun | None:
    """Start ``run_id`` in this process with ``message``; None when it is not this task's to run.

    A queued run is started; a "running" run whose worker is gone (:func:`stale_reason`)
    and a run the sweeper failed for a lost worker (redelivered with the same task id)
    are taken over. A live, finished or missing run is left alone.
    """
    run = TaskRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        return None
    now = timezone.now()
    if run.status == TaskRun.QUEUED:
        run.started_at = now
    elif reason := stale_reason(run, now):
        logger.warning("run %s: taking over (%s)", run.pk, reason)
    elif run.status == TaskRun.FAILED and run.result.get(LOST) and run.celery_task_id in ("", task_id or ""):
        logger.warning("run %s: resuming after its worker was lost", run.pk)
        run.result = {k: v for k, v in run.result.items() if k != LOST}
        run.finished_at = None
    else:
        return None
    run.status, run.heartbeat_at, run.worker, run.message = TaskRun.RUNNING, now, this_worker(), message
    run.celery_task_id = task_id or run.celery_task_id
    run.save()
    return run


def sweep_stale_runs() -> list[int]:
    """Fail every "running" run whose worker is gone, with the reason; returns their ids.

    Also forgets delivery counts of tasks that never ended (older than a day).
    """
    swept = []
    now = timezone.now()
    for run in TaskRun.objects.filter(status=TaskRun.RUNNING):
        with transaction.atomic():
            locked = TaskRun.objects.select_for_update(skip_locked=True).filter(pk=run.pk).first()
            reason = stale_reason(locked, now) if locked is not None else ""
            if not reason:
                continue
            locked.status, locked.finished_at = TaskRun.FAILED, now
            locked.message = f"worker lost: {reason}; a redelivered task resumes it, or start it again"[:2000]
            locked.result = {**locked.result, LOST: locked.worker or "unknown"}
            locked.save(update_fields=["status", "finished_at", "message", "result"])
        logger.warning("run %s failed: %s", run.pk, reason)
        swept.append(run.pk)
    TaskDelivery.objects.filter(last_at__lt=now - DELIVERY_RECORD_TTL).delete()
    return swept


# -- redeliveries -----------------------------------------------------------------------------


def count_delivery(key: str, name: str) -> int:
    """Add one delivery of task ``key`` and return how many there have been (one committed statement)."""
    table = TaskDelivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (task_id, name, count, first_at, last_at) VALUES (%s, %s, 1, now(), now()) "
            f"ON CONFLICT (task_id) DO UPDATE SET count = {table}.count + 1, last_at = now() RETURNING count",
            [key, name[:200]],
        )
        return int(cursor.fetchone()[0])


@contextmanager
def delivered(task) -> Iterator[int]:
    """Count this delivery of the bound Celery ``task``; yields the count (1: the first).

    Each retry is counted afresh (Celery keeps the task id across retries). The record
    is deleted when the body ends, normally or with an exception; only a worker that
    dies leaves it behind for the next delivery to see.
    """
    request = task.request
    if not request.id:  # called as a plain function
        yield 1
        return
    key = f"{request.id}:{request.retries or 0}"
    count = count_delivery(key, task.name)
    try:
        yield count
    finally:
        TaskDelivery.objects.filter(task_id=key).delete()


def over_cap(count: int) -> str:
    """The reason to give a task up on its ``count``-th delivery, or "" to run it."""
    cap = int(visrec_settings.TASK_MAX_DELIVERIES)
    if count <= cap:
        return ""
    return (
        f"given up after {count - 1} deliveries: each time the worker running it stopped "
        "(out of memory or killed?)"
    )
