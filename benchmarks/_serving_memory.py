"""Memory of the web processes, as Linux accounts it (``/proc/<pid>/smaps_rollup``).

A process's resident memory (RSS) counts every page it maps, including pages shared with
other processes (the interpreter's code, libraries, memory-mapped files). Its unique set
size (USS: private clean + private dirty pages) is what it alone costs: the memory freed
if it exited. PSS splits each shared page between the processes mapping it, so the PSS of
all web processes sums to what they cost together.
"""

from __future__ import annotations

from pathlib import Path

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
            found[FIELDS[name]] = int(rest.split()[0]) / 1024
    found["uss"] = found["private_clean"] + found["private_dirty"]
    found["shared"] = found["shared_clean"] + found["shared_dirty"]
    return found


def process_memory(pid: int) -> dict[str, float]:
    """RSS, PSS, USS and shared memory (MiB) of process ``pid``."""
    return parse_smaps_rollup(Path(f"/proc/{int(pid)}/smaps_rollup").read_text())


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (e.g. a gunicorn master's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{int(pid)}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return sorted(set(found))
