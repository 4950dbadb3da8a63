"""Memory of a running process, from Linux's ``/proc/<pid>/smaps_rollup`` and ``smaps``.

- USS (unique set size): pages only this process maps (``Private_Clean + Private_Dirty``),
  what it would give back by exiting.
- PSS: each mapped page divided by the number of processes mapping it.
- RSS: every resident page it maps, shared or not.

A file page mapped by a single process counts as private: pages of a memory-mapped
model that only one worker has touched yet are in its USS although every worker
would share them. :func:`mapped_files` reports such mappings by file, so a caller can
count them once, apart from the processes.
"""

from __future__ import annotations

from pathlib import Path

_KB = 1024
_MB = 1024 * 1024

FIELDS = {
    "Rss": "rss",
    "Pss": "pss",
    "Shared_Clean": "shared_clean",
    "Shared_Dirty": "shared_dirty",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
    "Swap": "swap",
}


def parse_smaps_rollup(text: str) -> dict[str, float]:
    """MiB per field of a ``smaps_rollup`` text, with ``uss`` (private pages) and ``shared`` added."""
    found = dict.fromkeys(FIELDS.values(), 0.0)
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS and rest.strip().endswith("kB"):
            found[FIELDS[name]] = int(rest.split()[0]) * _KB / _MB
    found["uss"] = found["private_clean"] + found["private_dirty"]
    found["shared"] = found["shared_clean"] + found["shared_dirty"]
    return found


def rollup(pid: int) -> dict[str, float]:
    """RSS, PSS, USS, shared memory and the rest of ``smaps_rollup`` (MiB) of process ``pid`` now."""
    return parse_smaps_rollup(Path(f"/proc/{int(pid)}/smaps_rollup").read_text())


def process_memory(pid: int) -> dict[str, float]:
    """``{"uss_mb", "pss_mb", "rss_mb"}`` of process ``pid`` now (MB = 2**20 bytes)."""
    found = rollup(pid)
    return {"uss_mb": found["uss"], "pss_mb": found["pss"], "rss_mb": found["rss"]}


def mapped_files(pid: int, under: str | Path) -> dict[str, dict[str, float]]:
    """Per file under folder ``under`` that ``pid`` maps: ``{"rss_mb", "private_mb"}`` of its mappings."""
    prefix = str(Path(under).resolve()) + "/"
    out: dict[str, dict[str, float]] = {}
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
            path = head[5] if len(head) == 6 else ""
            current = out.setdefault(path, {"rss_mb": 0.0, "private_mb": 0.0}) if path.startswith(prefix) else None
            continue
        if current is None:
            continue
        key, _, rest = line.partition(":")
        if key == "Rss":
            current["rss_mb"] += int(rest.split()[0]) * _KB / _MB
        elif key in ("Private_Clean", "Private_Dirty"):
            current["private_mb"] += int(rest.split()[0]) * _KB / _MB
    return out


def children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (e.g. a gunicorn master's workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(x) for x in text]
    return sorted(found)
