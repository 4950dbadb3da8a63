"""Worker pools: every task lands on a deliberate queue, and GPU embedding processes pick their own device.

What a GPU host adds (CUDA in the pool processes, one per device) cannot run here; the
routing table, the ``make`` targets, the device choice (with a made-up device count) and
that a worker's main process never imports torch can.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from recommendations import devices
from visrec_shop.celery import app as celery_app

ROOT = Path(settings.BASE_DIR)
QUEUES = {"embeddings", "training", "default"}
# The documented routing (README, "Worker pools"), written out so that a new task must be placed on purpose.
EXPECTED = {
    "recommendations.tasks.embed_images": "embeddings",
    "recommendations.tasks.embed_missing": "embeddings",
    "recommendations.tasks.reembed_missing_and_failed": "embeddings",
    "recommendations.tasks.match_overlay": "embeddings",
    "recommendations.tasks.train_models": "training",
    "recommendations.tasks.fit_similarity_head": "training",
    "recommendations.tasks.sweep_stale_runs": "default",
    "recommendations.tasks.whatif_replay": "default",
    "catalog.tasks.import_products": "default",
}


def _our_tasks() -> dict:
    celery_app.loader.import_default_modules()
    apps = {"recommendations", "catalog"}
    return {name: task for name, task in celery_app.tasks.items() if name.split(".")[0] in apps}


def _queue_of(name: str, options: dict | None = None) -> str:
    return celery_app.amqp.router.route(dict(options or {}), name)["queue"].name


def test_every_task_has_a_deliberate_queue():
    tasks = _our_tasks()
    assert set(tasks) == set(EXPECTED), "a task was added or removed: place it in CELERY_TASK_ROUTES and EXPECTED"
    for name, task in tasks.items():
        # sent by name (beat, send_task: no task options) and from its function alike
        assert _queue_of(name) == EXPECTED[name], name
        assert _queue_of(name, task._get_exec_options()) == EXPECTED[name], name
        assert task.queue == EXPECTED[name], f"{name}: its decorator says {task.queue!r}"  # a shop without the routes
    assert set(EXPECTED.values()) == QUEUES


def test_the_beat_schedule_sends_to_the_routed_queues():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert _queue_of(entry["task"]) == EXPECTED[entry["task"]]


def _make_n(target: str, **env: str) -> str:
    # run as a top-level make, also when the suite itself runs under `make test` (CI): a nested
    # make inherits MAKEFLAGS/MAKELEVEL and prints "Entering/Leaving directory" lines
    drop = {"CUDA_VISIBLE_DEVICES", "GPUS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    full = {k: v for k, v in os.environ.items() if k not in drop}
    command = ["make", "--no-print-directory", "-n", target]
    done = subprocess.run(command, cwd=ROOT, env={**full, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("visible", "processes"),
    [("0,1", "2"), ("GPU-5f0c,GPU-77aa,GPU-9e12", "3"), ("", "1")],
)
def test_make_worker_embeddings_runs_one_process_per_visible_gpu(visible, processes):
    line = _make_n("worker-embeddings", CUDA_VISIBLE_DEVICES=visible)
    assert f"-Q embeddings -c {processes} --prefetch-multiplier 1" in line


@pytest.mark.parametrize(("target", "queue"), [("worker-training", "training"), ("worker-default", "default")])
def test_make_targets_of_the_other_pools(target, queue):
    line = _make_n(target)
    assert f"-Q {queue} " in line
    assert ("--beat" in line) == (queue == "default")  # one beat, on the default pool


@pytest.mark.parametrize(
    ("preference", "index", "count", "device"),
    [
        ("auto", 0, 0, "cpu"),  # a CPU host ignores pool indexes
        ("auto", 3, 0, "cpu"),
        ("cpu", 1, 4, "cpu"),
        ("auto", None, 2, "cuda:0"),  # not a pool process (solo pool, a command)
        ("auto", 0, 2, "cuda:0"),
        ("auto", 1, 2, "cuda:1"),
        ("cuda", 5, 4, "cuda:1"),  # more processes than GPUs: they share, round robin
        ("cuda:3", 0, 4, "cuda:3"),  # an explicit device wins
        ("cuda", 0, 0, "cuda"),  # asked for a GPU on a host without one: torch says so
    ],
)
def test_device_of_a_pool_process(preference, index, count, device):
    assert devices.device_for(preference, index, count) == device


def test_a_pool_process_takes_the_device_of_its_index(monkeypatch):
    # given a host that shows two GPUs (faked) and the second pool process
    monkeypatch.setattr(devices, "_visible_gpus", lambda: 2)
    monkeypatch.setattr(devices, "_pool_index", None)

    class Child:
        index = 1

    monkeypatch.setattr("billiard.process.current_process", lambda: Child())
    # when the worker_process_init signal fires in it (tasks.py connects the handler)
    from celery.signals import worker_process_init

    import recommendations.tasks  # noqa: F401

    worker_process_init.send(sender=None)
    # then it embeds on the second GPU, and on the CPU when told so
    assert devices.process_device("auto") == "cuda:1"
    assert devices.process_device("cpu") == "cpu"


def test_a_workers_main_process_never_imports_torch():
    """The worker's main process loads every task module before it forks its pool: torch must not be among them."""
    code = (
        "import sys\n"
        "from visrec_shop.celery import app\n"
        "app.loader.import_default_modules()\n"
        "app.finalize(auto=True)\n"
        "assert 'recommendations.tasks' in sys.modules and 'catalog.tasks' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'onnxruntime', 'implicit'}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "visrec_shop.settings", "CELERY_BROKER_URL": "memory://"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
