"""The integration contract beyond the bundled catalogue: a tiny shop with UUID product keys.

The swappable product model is fixed per process, so the shop's checks
(``tests/uuidshop/contract_checks.py``) run in a pytest of their own with
``tests.uuidshop.settings`` and their own database on the same PostgreSQL server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_uuid_keyed_shop_gets_embeddings_similar_items_for_you_events_and_the_admin_preview():
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/uuidshop/contract_checks.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "--ds",
        "tests.uuidshop.settings",
        "--confcutdir",
        "tests/uuidshop",
        "--create-db",
    ]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.uuidshop.settings"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
