"""Fixtures of the fast fault drills: a full disk (a small tmpfs) and a stack served in subprocesses.

The full-length drill is ``benchmarks/drills.py``; these are its faults in seconds, on the
real services (PostgreSQL, Redis, gunicorn, a tmpfs), reusing its stack helpers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _drill_stack import Store  # noqa: E402


@pytest.fixture
def full_store(tmp_path):
    """A 1 MiB tmpfs with ``media/``, ``cache/`` and ``tmp/``, filled to the last byte (root only)."""
    if os.geteuid() != 0:
        pytest.skip("a size-limited folder needs a tmpfs mount (root)")
    store = Store(tmp_path / "store", size_mb=1)
    store.mount()
    if not store.mounted:
        pytest.skip("tmpfs mount refused")
    for name in ("media", "cache", "tmp"):
        (store.path / name).mkdir()
    try:
        yield store
    finally:
        store.unmount()


@pytest.fixture(scope="module")
def served_shop(tmp_path_factory):
    """The demo shop on a scratch PostgreSQL and Redis, served by gunicorn with DEBUG off (one worker).

    The catalogue (12 products, not embedded) is a template under ``var/drills/``, built on
    first use and copied for each module.
    """
    from _drill_stack import ROOT, Stack, catalogue_template

    template = catalogue_template(ROOT / "var" / "drills", products=12, users=4, seed=3, trained=False)
    stack = Stack(tmp_path_factory.mktemp("shop"), store_mb=0, web_workers=1, web_threads=2)
    try:
        stack.prepare(template)
        stack.start_web()
        yield stack
    finally:
        stack.close()
