"""Shared pytest setup: the embedded PostgreSQL (via settings), media in a temp folder."""

import pytest

pytest_plugins = ["tests.fixtures.images", "tests.fixtures.catalog"]


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes uploaded files to its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
