"""Helpers shared by the benchmark scripts: an isolated Django set-up and table output."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks"


def isolated_django(name: str) -> Path:
    """Set Django up on a private embedded PostgreSQL and media folder under a temp dir.

    The benchmark never touches the demo database. With ``DATABASE_URL`` set, that
    server is used instead (its data is left behind in new tables of a fresh run).
    """
    sys.path.insert(0, str(ROOT))
    data_dir = Path(tempfile.mkdtemp(prefix=f"visrec-bench-{name}-"))
    os.environ.setdefault("VISREC_DATA_DIR", str(data_dir))
    os.environ.setdefault("MEDIA_ROOT", str(data_dir / "media"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visrec_shop.settings")
    os.environ.setdefault("VISREC_SINGLE_PROCESS", "1")  # one process, in-process tasks
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return data_dir


def stop_isolated(data_dir: Path) -> None:
    """Stop the private server and delete its files."""
    import shutil

    from visrec_shop import dbserver

    if os.environ.get("VISREC_DATA_DIR") == str(data_dir):
        dbserver.stop(data_dir / "pgdata")
        shutil.rmtree(data_dir, ignore_errors=True)


def peak_rss_mb() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import platform

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        threads = torch.get_num_threads()
    except ImportError:
        gpu, threads = "torch missing", 0
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {threads}, {gpu}"


def write_section(path: Path, name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of a markdown report, keeping the others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else f"# {title}\n\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def stop_gunicorn(proc: subprocess.Popen, wait_s: float = 30) -> None:
    """Stop a gunicorn master started by a benchmark: TERM, then KILL after ``wait_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
