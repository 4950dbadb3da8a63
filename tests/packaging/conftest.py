"""The ``django-visrec`` distribution built from this tree, offline, once per test session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_dist(outdir: Path) -> dict[str, Path]:
    """Build the sdist, then the wheel from it (``python -m build --no-isolation``: nothing is fetched)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {"wheel": next(outdir.glob("django_visrec-*.whl")), "sdist": next(outdir.glob("django_visrec-*.tar.gz"))}


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory) -> dict[str, Path]:
    """``{"wheel": path, "sdist": path}`` of this tree's distribution."""
    return build_dist(tmp_path_factory.mktemp("dist"))
