"""The numbers of a fault drill, from its samples, its faults and the database at the end.

Definitions (the drill's doc repeats them):

- a request is a *server error* when it got a 5xx or no HTTP answer at all (refused,
  reset, timed out), the owner's admin requests included. ``server_errors`` counts those
  outside the windows in which PostgreSQL itself is down; inside them they are counted
  apart (``server_errors_pg_down``). A request belongs to a window when the time from its
  due time to its answer overlaps the window.
- ``normal`` latency is the product pages' p95 over the warm-up (its first 5 seconds
  left out: cold caches), and a p95 is *back to normal* when it is at most
  ``max(1.5 x normal, normal + 25 ms)``.
- ``recovery_s`` of a fault: seconds from its end until the rolling p95 of product pages
  (5-second windows, 1-second steps, by due time) stays back to normal for 10 seconds;
  searched until the drill begins the next fault (the owner's import or retrain that
  precedes a worker kill counts as its beginning) or the load ends: a fault that never
  recovers in that time counts the whole interval (shown with ``>``).
- ``page_p95_ms_during_faults``: p95 of product pages due while any fault lasted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

ROLLING_S, STEP_S, STEADY_S, WARMUP_SKIP_S = 5.0, 1.0, 10.0, 5.0


def outcome(status: int, error: str) -> str:
    """``2xx``, ``3xx``, ``4xx``, ``429``, ``5xx`` or ``no answer``."""
    if not status:
        return "no answer"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def p95(values) -> float | None:
    values = list(values)
    return float(np.percentile(values, 95)) if values else None


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


@dataclass
class Row:
    """What happened in one stretch of time (or to one kind of request)."""

    name: str
    counts: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    page_latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)  # (kind, status code) -> requests

    def add(self, kind: str, sample) -> None:
        self.counts[outcome(sample.status, sample.error)] += 1
        self.codes[kind, sample.status or "none"] += 1
        self.latencies.append(sample.latency_ms)
        if sample.server_ms is not None:
            self.server.append(sample.server_ms)
        if kind == "page":
            self.page_latencies.append(sample.latency_ms)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def cells(self) -> list:
        c = self.counts
        return [
            self.name,
            self.total,
            c["2xx"],
            c["3xx"],
            c["4xx"],
            c["429"],
            c["5xx"],
            c["no answer"],
            _ms(p95(self.page_latencies)),
            _ms(p95(self.latencies)),
            _ms(float(np.median(self.server)) if self.server else None),
        ]


ROW_HEADERS = [
    "",
    "requests",
    "2xx",
    "3xx",
    "4xx",
    "429",
    "5xx",
    "no answer",
    "page p95 ms",
    "all p95 ms",
    "server p50 ms",
]


class DrillReport:
    """Everything computed from one drill: windows, per-kind rows, recoveries, the RESULT numbers."""

    def __init__(self, samples, traffic, faults, owner_calls, t0: float, warmup: float, load_end: float) -> None:
        self.samples, self.traffic, self.faults = samples, traffic, [f for f in faults if f.happened]
        self.all_faults = faults
        self.owner_calls, self.t0, self.warmup, self.load_end = owner_calls, t0, warmup, load_end
        self.kinds = [traffic.kinds.get(i, "?") for i in range(len(samples))]
        self.pg_windows = [(f.start, f.end) for f in self.faults if f.pg_down]
        pages = [
            s.latency_ms
            for s, k in zip(samples, self.kinds, strict=True)
            if k == "page" and t0 + WARMUP_SKIP_S <= s.due < t0 + warmup
        ]
        self.normal_ms = p95(pages) or 0.0
        self.limit_ms = max(1.5 * self.normal_ms, self.normal_ms + 25.0)

    # -- classification ---------------------------------------------------------------------
    def in_pg_down(self, start: float, end: float) -> bool:
        return any(start <= b and end >= a for a, b in self.pg_windows)

    def server_errors(self) -> tuple[int, int, list[str]]:
        """(outside PostgreSQL-down windows, inside them, a few examples of the former)."""
        outside = inside = 0
        examples: list[str] = []
        for s, kind in zip(self.samples, self.kinds, strict=True):
            if s.status and s.status < 500:
                continue
            if self.in_pg_down(s.due, s.done):
                inside += 1
                continue
            outside += 1
            if len(examples) < 12:
                examples.append(f"{kind} at {s.due - self.t0:.1f} s: {s.error or s.status}")
        for call in self.owner_calls:
            if call.status and call.status < 500:
                continue
            if self.in_pg_down(call.at, call.at + call.seconds):
                inside += 1
            else:
                outside += 1
                examples.append(f"owner's {call.action} at {call.at - self.t0:.1f} s: {call.status} {call.detail[:80]}")
        return outside, inside, examples

    def events(self, stored_ids: list[str]) -> dict:
        """Events in 2xx-answered batches vs the database."""
        acked: set[str] = set()
        sent: set[str] = set()
        for i, s in enumerate(self.samples):
            ids = self.traffic.event_ids.get(i, [])
            sent.update(ids)
            if s.ok:
                acked.update(ids)
        stored = Counter(stored_ids)
        return {
            "events_sent": len(sent),
            "events_acked": len(acked),
            "events_lost": len(acked - set(stored)),
            "events_stored_unacked": len(set(stored) - acked),
            "events_stored_twice": sum(1 for n in stored.values() if n > 1),
        }

    # -- latency ----------------------------------------------------------------------------
    def _page_points(self) -> tuple[np.ndarray, np.ndarray]:
        due = np.array([s.due for s, k in zip(self.samples, self.kinds, strict=True) if k == "page"])
        lat = np.array([s.latency_ms for s, k in zip(self.samples, self.kinds, strict=True) if k == "page"])
        return due, lat

    def page_p95_during_faults(self) -> float | None:
        return p95(
            s.latency_ms
            for s, k in zip(self.samples, self.kinds, strict=True)
            if k == "page" and any(f.start <= s.due <= f.end for f in self.faults)
        )

    def recovery(self, fault) -> tuple[float, bool]:
        """Seconds from ``fault``'s end until the rolling page p95 stays normal; whether it did."""
        due, lat = self._page_points()
        later = [f.begun for f in self.faults if f.begun > fault.end]
        limit = min(later) if later else self.load_end
        t = fault.end
        steady_since: float | None = None
        while t + ROLLING_S <= limit:
            window = lat[(due >= t) & (due < t + ROLLING_S)]
            normal = window.size == 0 or float(np.percentile(window, 95)) <= self.limit_ms
            if normal:
                steady_since = t if steady_since is None else steady_since
                if t + ROLLING_S - steady_since >= STEADY_S:
                    return steady_since - fault.end, True
            else:
                steady_since = None
            t += STEP_S
        return max(limit - fault.end, 0.0), False

    # -- tables -----------------------------------------------------------------------------
    def window_rows(self) -> list[Row]:
        """Warm-up, each fault, the recovery after it, as rows."""
        marks = [("warm-up", self.t0, self.t0 + self.warmup)]
        ordered = sorted(self.faults, key=lambda f: f.start)
        for n, f in enumerate(ordered):
            marks.append((f"{f.name} (fault)", f.start, f.end))
            after_end = ordered[n + 1].begun if n + 1 < len(ordered) else self.load_end
            marks.append((f"{f.name} (after)", f.end, after_end))
        if not ordered:
            marks.append(("after the warm-up", self.t0 + self.warmup, self.load_end))
        rows = []
        for name, a, b in marks:
            row = Row(name)
            for s, kind in zip(self.samples, self.kinds, strict=True):
                if a <= s.due < b:
                    row.add(kind, s)
            rows.append(row)
        return rows

    def window_statuses(self) -> list[list]:
        """Status codes per window and kind of request (``none``: no answer)."""
        rows = []
        for row in self.window_rows():
            parts = [f"{kind} {code}: {n}" for (kind, code), n in sorted(row.codes.items(), key=str)]
            rows.append([row.name, ", ".join(parts)])
        return rows

    def kind_rows(self) -> list[Row]:
        rows: dict[str, Row] = {}
        for i, (s, kind) in enumerate(zip(self.samples, self.kinds, strict=True)):
            name = kind if kind not in ("upload_api", "upload_page") else f"{kind}:{self.traffic.variants.get(i)}"
            rows.setdefault(name, Row(name)).add(kind, s)
        return [rows[k] for k in sorted(rows)]

    def statuses_by_kind(self) -> dict[str, Counter]:
        out: dict[str, Counter] = defaultdict(Counter)
        for i, (s, kind) in enumerate(zip(self.samples, self.kinds, strict=True)):
            name = kind if kind not in ("upload_api", "upload_page") else f"{kind}:{self.traffic.variants.get(i)}"
            out[name][s.status or "none"] += 1
        return out

    def fault_rows(self) -> list[list]:
        """Per fault: when, how long, its requests, server errors outside PG-down, page p95, recovery."""
        rows = []
        for f in self.all_faults:
            if not f.happened:
                rows.append([f.name, "–", "–", "–", "–", "–", "–", f.skipped or f.facts.get("error", "not run")])
                continue
            inside = [(s, k) for s, k in zip(self.samples, self.kinds, strict=True) if f.start <= s.due <= f.end]
            failed = [s for s, _ in inside if not s.status or s.status >= 500]
            errors_pg = sum(1 for s in failed if self.in_pg_down(s.due, s.done))
            errors = len(failed) - errors_pg
            recovery, recovered = self.recovery(f)
            facts = ", ".join(f"{k}={v}" for k, v in f.facts.items())
            if f.skipped:
                facts = f"NOTE: {f.skipped}; {facts}"
            rows.append(
                [
                    f.name,
                    f"{f.start - self.t0:.1f}",
                    f"{f.end - f.start:.1f}",
                    len(inside),
                    f"{errors}" + (f" (+{errors_pg} PG down)" if f.pg_down else ""),
                    _ms(p95(s.latency_ms for s, k in inside if k == "page")),
                    f"{recovery:.0f}" if recovered else f">{recovery:.0f}",
                    facts,
                ]
            )
        return rows

    def recovery_s(self) -> tuple[float, bool]:
        """The slowest recovery and whether every fault recovered."""
        found = [self.recovery(f) for f in self.faults]
        if not found:
            return 0.0, True
        return max(r for r, _ in found), all(ok for _, ok in found)


FAULT_HEADERS = ["fault", "at s", "lasted s", "requests", "server errors", "page p95 ms", "recovery s", "facts"]
