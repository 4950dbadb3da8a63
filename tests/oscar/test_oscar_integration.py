"""The oscar adapter and oscar's signals, tested under the oscar example's own settings.

pytest-django has one settings module per session, and the demo's (``visrec_shop``) has
no oscar; so this test runs the suite in ``tests/oscar/inner`` (files ``oscar_test_*.py``,
which the main session does not collect) in a second pytest process with
``--ds=oscar_shop.settings``, on its own database of the embedded server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from visrec_shop import dbserver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INNER = Path(__file__).resolve().parent / "inner"


def test_oscar_suite_passes_under_the_oscar_shops_settings(tmp_path):
    data_dir = Path(settings.VAR_DIR) / "pgdata"
    env = {
        **os.environ,
        "DATABASE_URL": dbserver.database_url(data_dir, "visrec_oscar_unit"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples" / "oscar_shop")]),
        "OSCAR_SHOP_DATA_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(INNER), "--ds=oscar_shop.settings", "--confcutdir", str(INNER),
         "-o", "python_files=oscar_test_*.py", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:warnings",
         "-q", "-rA", "--create-db"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output and " failed" not in output and " skipped" not in output, output[-3000:]
