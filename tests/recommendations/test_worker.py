"""A real Celery worker against Redis embeds an uploaded image.

Redis must run on 127.0.0.1:6379. Locally a missing Redis skips this test; in CI
(``VISREC_REQUIRE_REDIS=1``, set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from catalog import services
from recommendations.models import ImageEmbedding, ImageState
from tests.fixtures.catalog import state_of
from visrec_shop.celery import app as celery_app

REDIS_URL = os.environ.get("VISREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def broker():
    if not _redis_available():
        if os.environ.get("VISREC_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required (VISREC_REQUIRE_REDIS=1) but not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "result_backend")}
    celery_app.conf.update(broker_url=REDIS_URL, task_always_eager=False, result_backend=REDIS_URL)
    _reset_connections()
    yield REDIS_URL
    celery_app.conf.update(saved)
    _reset_connections()


def _reset_connections() -> None:
    """Forget the pools bound to the previous broker URL (Celery caches them; kombu keys its
    global pools by connection, so the next send opens one for the new URL)."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _database_url() -> str:
    db = connection.settings_dict
    host = db["HOST"] or db.get("OPTIONS", {}).get("host", "")
    if host.startswith("/"):
        return f"postgres://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={host}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(broker: str, log_path: Path, queues: str = "embeddings,default", **env: str) -> subprocess.Popen:
    """Start ``celery worker`` in its own process group (so it can be killed whole)."""
    full_env = {
        **os.environ,
        "CELERY_BROKER_URL": broker,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SETTINGS_MODULE": "visrec_shop.settings",
        **env,
    }
    log = open(log_path, "a")  # noqa: SIM115 (closed with the process)
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "visrec_shop",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "info",
    ]
    return subprocess.Popen(
        cmd, cwd=Path(settings.BASE_DIR), env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def worker(broker, tmp_path):
    proc = start_worker(broker, tmp_path / "worker.log")
    yield proc
    stop_worker(proc)
    print((tmp_path / "worker.log").read_text()[-5000:])


def _wait_for(predicate, timeout: float = 180.0, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_uploaded_image_is_embedded_by_a_real_worker(worker, product_factory, image_bytes):
    # given a running worker, when an image is saved (enqueued on commit)
    product = product_factory()
    image = state_of(services.add_product_image(product, image_bytes(color=(10, 120, 30)), "shirt.jpg"))
    # then the worker embeds it
    assert _wait_for(lambda: ImageState.objects.get(pk=image.pk).status != "pending"), "worker never finished"
    image.refresh_from_db()
    assert image.status == "ready", image.error
    assert ImageEmbedding.objects.filter(image=image).count() == 1
    assert worker.poll() is None  # the worker is still alive
    # torch (CUDA with it, on a GPU host) was loaded by the pool process that embedded, never by
    # the main process that forks the pool (README, "Worker pools")
    assert not _maps_torch(worker.pid)
    assert any(_maps_torch(pid) for pid in _children(worker.pid))


def _maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def test_hostile_upload_fails_with_reason_on_the_worker(worker, product_factory):
    product = product_factory()
    image = state_of(services.add_product_image(product, b"<html><script>alert(1)</script></html>", "evil.jpg"))
    assert _wait_for(lambda: ImageState.objects.get(pk=image.pk).status != "pending"), "worker never finished"
    image.refresh_from_db()
    assert image.status == "failed" and "not an image" in image.error


def test_worker_killed_mid_batch_loses_nothing(broker, tmp_path, product_factory, image_bytes):
    # given 150 images (25 hostile) queued as ONE task, processed 2 at a time
    images = []
    for i in range(150):
        colour = (i % 256, (7 * i) % 256, (13 * i) % 256)
        data = b"<html>no</html>" if i % 6 == 5 else image_bytes(color=colour, shape="stripes", size=(300, 300))
        images.append(state_of(services.add_product_image(product_factory(), data, f"p{i}.jpg")))
    pending = ImageState.objects.filter(status="pending")
    import redis

    redis.Redis.from_url(broker).flushdb()  # drop the per-image tasks queued on commit
    from recommendations.tasks import embed_images

    embed_images.delay([im.pk for im in images])
    env = {"VISREC_EMBED_BATCH_SIZE": "2", "CELERY_VISIBILITY_TIMEOUT": "5"}
    first = start_worker(broker, tmp_path / "worker1.log", **env)
    try:
        # when the worker is SIGKILLed after some, not all, images are done
        assert _wait_for(lambda: ImageState.objects.exclude(status="pending").exists(), 180, 0.05), "no progress"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert pending.exists(), "the batch finished before the kill; the test proves nothing"
        # and a new worker starts
        second = start_worker(broker, tmp_path / "worker2.log", **env)
        try:
            finished = _wait_for(lambda: not pending.exists(), 240)
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)
    log = "".join((tmp_path / f"worker{n}.log").read_text()[-3000:] for n in (1, 2))
    # then every image ended ready or failed, none stuck, no duplicate vectors
    assert finished, log
    statuses = dict(ImageState.objects.values_list("pk", "status"))
    assert sorted(set(statuses.values())) == ["failed", "ready"]
    assert sum(1 for s in statuses.values() if s == "failed") == 25
    assert ImageEmbedding.objects.count() == 125
    assert ImageEmbedding.objects.values("image").distinct().count() == 125


def test_import_whose_worker_is_killed_is_taken_over_by_the_redelivered_task(broker, tmp_path):
    # given a large import running on a real worker (unacknowledged messages come back after 5 s)
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from catalog.models import Product
    from catalog.tasks import import_products
    from recommendations.models import TaskRun

    rows = "".join(f"K-{n:06d},Shirt {n},{n % 90 + 9}.50,3\n" for n in range(3000))
    name = default_storage.save("visrec/private/imports/k/products.csv", ContentFile(f"sku,title,price,stock\n{rows}"))
    params = {"products": name, "images": "", "columns": [], "may_update": True}
    run = TaskRun.objects.create(kind=TaskRun.IMPORT, params=params)
    import_products.delay(run.pk)
    env = {"CELERY_VISIBILITY_TIMEOUT": "5", "queues": "default"}  # not the embedding sweep at start
    first = start_worker(broker, tmp_path / "worker1.log", **env)
    try:
        # when the worker is SIGKILLed half way
        started = _wait_for(lambda: Product.objects.filter(sku__startswith="K-").exists(), 60, 0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert started and Product.objects.filter(sku__startswith="K-").count() < 3000, "killed too late"
        assert TaskRun.objects.get(pk=run.pk).status == "running"  # what the dead worker left behind
        # and another worker starts once the message's visibility timeout has passed (a worker
        # restores unacknowledged messages when it starts, then only every ~100 s)
        time.sleep(6)
        second = start_worker(broker, tmp_path / "worker2.log", **env)
        try:
            finished = _wait_for(lambda: TaskRun.objects.get(pk=run.pk).status == "done", 60)
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)
    log = "".join((tmp_path / f"worker{n}.log").read_text()[-6000:] for n in (1, 2))
    # then the starting worker's sweep failed the run (its worker was gone), and the redelivered
    # task took it over and finished the import
    run.refresh_from_db()
    assert finished and run.status == "done", (run.status, run.message, log)
    assert Product.objects.filter(sku__startswith="K-").count() == 3000
    assert run.result["products_created"] + run.result["products_skipped"] == 3000
