"""A rule saved or a version activated in one process reaches another within a second, each with its own cache.

The other process is a real one (a subprocess on the test database) with Django's
per-process cache, the worst case for sharing: rules and versions must come from the
database (``recommendations/stamps.py``, ``serving/versions.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from recommendations import training
from recommendations.models import ModelVersion, Rule

ROOT = Path(__file__).resolve().parent.parent.parent
WITHIN_SECONDS = 1.0 + 0.25  # the stamps' memo, plus a question's round trip
SERVE = """
import json, sys, django
django.setup()
from recommendations.rules import merch_for
from recommendations.serving import active
for _ in sys.stdin:
    print(json.dumps({"blocked": list(merch_for("similar-items").blocked), "version": active().version_id}), flush=True)
"""


@pytest.fixture
def other_process():
    """Ask another web process (its own local-memory cache) what it serves now."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
    env = {**os.environ, "DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def ask() -> dict:
        proc.stdin.write("?\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield ask
    proc.stdin.close()
    proc.wait(timeout=30)


def _seconds_until(seen: Callable[[], bool], limit: float = 5.0) -> float:
    start = time.monotonic()
    while not seen():
        assert time.monotonic() - start < limit, f"not seen after {limit} s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.django_db(transaction=True)  # the other process reads what this one committed
def test_a_block_rule_and_an_activation_reach_another_process_within_a_second(other_process, product_factory):
    product = product_factory()
    assert other_process()["blocked"] == []  # it has loaded the rules and keeps them
    # when: the admin blocks a product in this process
    Rule.objects.create(kind=Rule.BLOCK, product=product)
    # then
    assert _seconds_until(lambda: product.pk in other_process()["blocked"]) <= WITHIN_SECONDS
    # when: a worker activates a new model version
    version = ModelVersion.objects.create(kind="popularity", artifact="stamps-test.npz")
    training.activate(version)
    # then
    assert _seconds_until(lambda: other_process()["version"] == version.pk) <= WITHIN_SECONDS
