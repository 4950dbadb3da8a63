"""Shared pytest setup: the embedded PostgreSQL (via settings), media in a temp folder."""

import pytest

pytest_plugins = ["tests.fixtures.images", "tests.fixtures.catalog", "tests.fixtures.network"]


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes uploaded files to its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_cache_and_inline_tracking(monkeypatch):
    """Cached lists and active versions never leak between tests; impressions are written inline.

    Each test gets its own visrec cache namespace (no ``cache.clear()``, which would
    wipe a shared Redis). The defaults are patched rather than ``settings.VISREC``, so a
    test that replaces ``settings.VISREC`` wholesale keeps them. Tests of the
    asynchronous impression writer set ``TRACKING_MODE = "thread"`` in ``settings.VISREC``.
    """
    import uuid

    from recommendations.conf import DEFAULTS, visrec_settings

    monkeypatch.setitem(DEFAULTS, "TRACKING_MODE", "inline")
    monkeypatch.setitem(DEFAULTS, "CACHE_PREFIX", f"visrec-test-{uuid.uuid4().hex}:")
    visrec_settings.reset()
    yield
    visrec_settings.reset()
