"""What a production start needs from the environment, and the demo's own secret key.

With ``DEBUG`` off the shop refuses to start without the settings that keep a public
site safe and consistent (:func:`check_environment`), instead of falling back to the
demo's: a key anyone can read, an embedded database, tasks run inside the web request,
a cache per process. ``VISREC_SINGLE_PROCESS=1`` is the one opt-out, for the demo, the
tests and the benchmarks, which run one web process with in-process tasks.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

OPT_OUT = "VISREC_SINGLE_PROCESS"

# variable -> what to set, and what happens without it
REQUIRED = {
    "SECRET_KEY": "a long random string, the same for every web process and worker, e.g. the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (it signs sessions, CSRF and click tokens)",
    "DATABASE_URL": "your PostgreSQL server with pgvector >= 0.7, e.g. postgres://shop:password@db.example:5432/shop "
    "(without it an embedded PostgreSQL would be started on this machine)",
    "CELERY_BROKER_URL": "a Redis for Celery, e.g. redis://redis.example:6379/0, and run a worker "
    "(without it admin retrains, re-embeddings and imports would run inside the web request)",
    "REDIS_URL": "a cache shared by every web process, e.g. redis://redis.example:6379/1 "
    "(without it each process would keep its own throttle counts and cached lists)",
}


def check_environment(environ: Mapping[str, str], *, debug: bool, single_process: bool) -> None:
    """Raise ``ImproperlyConfigured`` naming every missing production variable (none with debug or the opt-out)."""
    if debug or single_process:
        return
    missing = [name for name in REQUIRED if not environ.get(name, "").strip()]
    if not missing:
        return
    lines = "\n".join(f"  {name}: {REQUIRED[name]}" for name in missing)
    raise ImproperlyConfigured(
        f"DEBUG is off and {len(missing)} production setting(s) are missing:\n{lines}\n"
        "Set them in the environment (README.md, 'Production configuration'), or set "
        f"{OPT_OUT}=1 to run the single-process demo (embedded database, tasks in-process, "
        "a local cache and a key of its own)."
    )


def local_secret_key(path: Path) -> str:
    """The installation's own secret key, created at ``path`` on first use (never a published one).

    Processes sharing the data folder (runserver, a demo worker, the tests' subprocesses)
    share the key; a process racing the first one keeps the key written first.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(50))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()
