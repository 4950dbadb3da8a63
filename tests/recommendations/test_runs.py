"""Background runs that lose their worker, a task queue that is down, two trainings at once, poison batches.

All on the real embedded PostgreSQL; dying workers are real processes that SIGKILL
themselves mid-task; the broker that is down is a Redis URL on a port nobody listens on.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from recommendations import tasks, training, workers
from recommendations.models import ImageState, TaskDelivery, TaskRun
from tests.recommendations.test_worker import _database_url, _reset_connections
from visrec_shop.celery import app as celery_app

pytestmark = pytest.mark.django_db


def _running(kind: str = TaskRun.TRAIN, *, silent_for: float = 0, **fields) -> TaskRun:
    beat = timezone.now() - datetime.timedelta(seconds=silent_for)
    return TaskRun.objects.create(kind=kind, status=TaskRun.RUNNING, started_at=beat, heartbeat_at=beat, **fields)


def _dead_worker() -> str:
    """The identity (host:pid:start) of a process that ran on this host and has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = f"{os.uname().nodename}:{proc.pid}:{workers._process_start(proc.pid)}:{workers._pid_namespace()}"
    proc.kill()
    proc.wait(10)
    return identity


# -- (a) stale runs: the sweeper and the redelivered task ---------------------------------------


def test_sweeper_fails_runs_whose_worker_fell_silent_and_keeps_live_ones(settings):
    settings.VISREC = {"TASK_STALE_SECONDS": 600}
    silent = _running(silent_for=20 * 60, worker="elsewhere:12:34")
    live = _running(silent_for=60, worker=workers.this_worker())

    assert tasks.sweep_stale_runs.apply().get() == {"failed": [silent.pk]}

    silent.refresh_from_db()
    assert silent.status == "failed" and silent.finished_at is not None
    assert silent.message.startswith("worker lost: no sign of life from its worker for 20 minutes")
    assert TaskRun.objects.get(pk=live.pk).status == "running"


def test_sweeper_fails_a_run_whose_worker_process_is_gone_at_once():
    run = _running(silent_for=5, worker=_dead_worker())  # a fresh heartbeat, but the process died
    assert workers.sweep_stale_runs() == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and "its worker process" in run.message and "is gone" in run.message


def test_a_reused_pid_is_not_mistaken_for_the_worker():
    host, pid, start, namespace = workers.this_worker().split(":")
    assert not workers.worker_gone(f"{host}:{pid}:{start}:{namespace}")
    assert workers.worker_gone(f"{host}:{pid}:{int(start) + 1}:{namespace}")  # same pid, another process
    assert not workers.worker_gone(f"another-host:{pid}:1:{namespace}")  # other hosts: the heartbeat tells
    assert not workers.worker_gone(f"{host}:{pid}:1:another-container")


def test_a_starting_worker_sweeps_stale_runs(settings, monkeypatch):
    settings.VISREC = {"TASK_STALE_SECONDS": 600}
    run = _running(silent_for=3600)
    sent = []
    monkeypatch.setattr(tasks.embed_missing, "delay", lambda: sent.append("embed_missing"))  # its own tests
    tasks._sweep_on_worker_start()  # the worker_ready handler (the sweep runs eagerly here)
    assert TaskRun.objects.get(pk=run.pk).status == "failed" and sent == ["embed_missing"]
    assert settings.CELERY_BEAT_SCHEDULE["visrec-sweep-stale-runs"]["task"] == "recommendations.tasks.sweep_stale_runs"


def test_redelivered_task_takes_over_its_stale_run_instead_of_skipping(settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path), "TASK_STALE_SECONDS": 600}
    run = _running(silent_for=3600, celery_task_id="t-1", worker="elsewhere:7:1")
    tasks.train_models.apply(kwargs={"run_id": run.pk}, task_id="t-1")
    run.refresh_from_db()
    # it ran (and ended: no interactions in this database) instead of leaving the run "running"
    assert (run.status, run.message) == ("failed", "there are no interactions to learn from")
    assert run.worker == workers.this_worker()


def test_redelivered_task_resumes_a_run_the_sweeper_failed(settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path)}
    run = _running(silent_for=3600, celery_task_id="t-2")
    workers.sweep_stale_runs()
    tasks.train_models.apply(kwargs={"run_id": run.pk}, task_id="t-2")
    run.refresh_from_db()
    assert run.message == "there are no interactions to learn from" and workers.LOST not in run.result


def test_a_live_run_is_not_taken_over_by_a_duplicate_delivery(settings):
    run = _running(silent_for=1, celery_task_id="t-3", worker=workers.this_worker(), message="evaluating als")
    assert tasks.train_models.apply(kwargs={"run_id": run.pk}, task_id="t-3").get() == {}
    run.refresh_from_db()
    assert (run.status, run.message) == ("running", "evaluating als")


def test_redelivered_nightly_training_finds_its_own_run(settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path)}
    lost = _running(silent_for=3600, celery_task_id="nightly-1", params={"trigger": "schedule"})
    tasks.train_models.apply(task_id="nightly-1")
    assert TaskRun.objects.count() == 1
    assert TaskRun.objects.get(pk=lost.pk).message == "there are no interactions to learn from"


@pytest.mark.django_db(transaction=True)
def test_heartbeat_is_touched_while_a_run_works(settings):
    settings.VISREC = {"TASK_HEARTBEAT_SECONDS": 0.05}
    run = _running(silent_for=3600)
    with workers.heartbeat(run.pk):
        time.sleep(0.4)
    run.refresh_from_db()
    assert timezone.now() - run.heartbeat_at < datetime.timedelta(seconds=2)


# -- (b) a task queue that cannot be reached ----------------------------------------------------


@pytest.fixture
def dead_broker():
    """Celery configured against a Redis port nobody listens on (not eager)."""
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "result_backend")}
    celery_app.conf.update(broker_url="redis://127.0.0.1:1/0", task_always_eager=False, result_backend=None)
    _reset_connections()
    yield
    celery_app.conf.update(saved)
    _reset_connections()


@pytest.fixture
def owner(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", password="pw"))
    return client


# Transactional: the task is sent when start_run's transaction commits, as in production.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("view", ["admin:visrec_retrain", "admin:visrec_reembed"])
def test_a_run_that_cannot_be_queued_fails_visibly_instead_of_a_500(owner, dead_broker, view):
    response = owner.post(reverse(view))
    assert response.status_code == 302
    run = TaskRun.objects.get()
    assert run.status == "failed" and run.message.startswith("could not reach the task queue: ")
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert f"could not start (run #{run.pk}): could not reach the task queue" in message


@pytest.mark.django_db(transaction=True)
def test_an_import_that_cannot_be_queued_fails_visibly_and_drops_its_uploads(owner, dead_broker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    csv = SimpleUploadedFile("products.csv", b"sku,title\nA-1,Shirt\n", content_type="text/csv")
    response = owner.post(reverse("admin:visrec_import"), {"products": csv})
    assert response.status_code == 302
    run = TaskRun.objects.get(kind=TaskRun.IMPORT)
    assert run.status == "failed" and "could not reach the task queue" in run.message
    assert "could not start" in [str(m) for m in get_messages(response.wsgi_request)][0]
    assert not (settings.MEDIA_ROOT / run.params["products"]).exists()


def test_saving_an_image_while_the_queue_is_down_keeps_the_save(
    dead_broker, product_with_image, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        product = product_with_image()  # the embedding task cannot be sent after the commit
    assert product.visrec_images.get().status == "pending"  # the embed_missing sweep queues it later


# -- (c) one training at a time -----------------------------------------------------------------


@pytest.fixture
def other_session():
    """A second, real PostgreSQL session (another worker's connection)."""
    other = connection.get_new_connection(connection.get_connection_params())
    other.autocommit = True
    yield other
    other.close()


def test_a_second_training_is_skipped_while_one_holds_the_lock(other_session, settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path)}
    busy = _running(message="evaluating als")
    with other_session.cursor() as cursor:  # the nightly training, on another worker
        cursor.execute("SELECT pg_advisory_lock(%s)", [training.TRAINING_LOCK])
    tasks.train_models.apply()
    run = TaskRun.objects.exclude(pk=busy.pk).get()
    assert (run.status, run.message) == ("skipped", f"skipped: another training is running (run #{busy.pk})")
    assert run.finished_at is not None


def test_the_lock_is_released_after_a_training(other_session, settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path)}
    with pytest.raises(training.TrainingError, match="no interactions"):
        training.train()
    with other_session.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [training.TRAINING_LOCK])
        assert cursor.fetchone()[0] is True


# -- (d) a batch that kills its worker is given up after TASK_MAX_DELIVERIES -------------------

_DIE_IN_THE_TASK = """
import os, signal, sys, django
django.setup()
from recommendations import embedding, tasks
embedding.embed_images = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # the poison image
tasks.embed_images.apply(args=([int(i) for i in sys.argv[1].split(",")],), task_id="poison-batch")
"""


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_kills_its_worker_three_times_is_failed_and_acknowledged(
    product_with_image, settings, django_capture_on_commit_callbacks
):
    settings.VISREC = {"AUTO_EMBED": False, "TASK_MAX_DELIVERIES": 3}
    ids = [product_with_image().visrec_images.get().pk for _ in range(2)]
    env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "visrec_shop.settings"}
    # given three deliveries of the batch, each killing its worker process mid-task
    for _ in range(3):
        died = subprocess.run(
            [sys.executable, "-c", _DIE_IN_THE_TASK, ",".join(map(str, ids))],
            cwd=settings.BASE_DIR, env=env, timeout=60, capture_output=True, text=True,
        )  # fmt: skip
        assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert TaskDelivery.objects.get(task_id="poison-batch:0").count == 3
    # when the broker delivers it a fourth time
    result = tasks.embed_images.apply(args=(ids,), task_id="poison-batch").get()
    # then the batch is given up (the task returns: acknowledged), its images failed with the reason
    assert result == {"failed": 2, "given_up": True}
    for image in ImageState.objects.filter(pk__in=ids):
        assert image.status == "failed"
        assert image.error.startswith("not embedded: its batch was given up after 3 deliveries")
    assert not TaskDelivery.objects.exists()


def test_deliveries_are_counted_per_retry_and_forgotten_when_the_task_ends(product_with_image, settings):
    settings.VISREC = {"AUTO_EMBED": False}
    image = product_with_image().visrec_images.get()
    TaskDelivery.objects.create(task_id="retried:0", name="x", count=5)  # the first attempt's record
    assert tasks.embed_images.apply(args=([image.pk],), task_id="retried", retries=1).get()["embedded"] == 1
    assert list(TaskDelivery.objects.values_list("task_id", flat=True)) == ["retried:0"]


def test_a_training_whose_worker_died_three_times_fails_with_the_reason(settings):
    run = TaskRun.objects.create(kind=TaskRun.TRAIN)
    TaskDelivery.objects.create(task_id="train-1:0", name="train", count=3)
    assert "given up" in tasks.train_models.apply(kwargs={"run_id": run.pk}, task_id="train-1").get()["error"]
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message == (
        "given up after 3 deliveries: each time the worker running it stopped (out of memory or killed?)"
    )
