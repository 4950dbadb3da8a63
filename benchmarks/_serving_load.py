"""An open-loop HTTP load generator: arrivals on a schedule, independent of responses.

Request ``i`` is due at ``start + i / rate`` (``arrivals="fixed"``) or at the ``i``-th
point of a Poisson process of that rate (``arrivals="poisson"``: exponential gaps, the
bursts real shoppers make) whatever happened to the earlier ones, and its latency is
measured from that due time, not from when it was actually sent. A server that
stalls therefore shows its stall in every request that should have been sent meanwhile
(no coordinated omission). A pool of threads with keep-alive ``http.client`` connections
sends the requests; a request that finds every thread busy waits in the queue and that wait
counts. The server's own time comes from the ``Server-Timing: app;dur=<ms>`` header.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Request = tuple[str, dict[str, str]] | tuple[str, str, dict[str, str], bytes | None]
"""``(path, headers)`` for a GET, or ``(method, path, headers, body)``."""


@dataclass
class Sample:
    """One request: when it was due, sent and answered (``perf_counter`` seconds)."""

    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0
    server_ms: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300

    @property
    def latency_ms(self) -> float:
        """Client time from the due time (coordinated-omission corrected)."""
        return (self.done - self.due) * 1000.0

    @property
    def service_ms(self) -> float:
        """Client time from the moment the request was actually sent."""
        return (self.done - self.sent) * 1000.0


def schedule(rate: float, duration: float, start: float = 0.0) -> np.ndarray:
    """Due times of a constant-rate open-loop run: ``start + i / rate`` for ``i < rate * duration``."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    return start + np.arange(int(round(rate * duration))) / float(rate)


def poisson_schedule(rate: float, duration: float, start: float = 0.0, seed: int = 0) -> np.ndarray:
    """Due times of a Poisson process of ``rate`` per second in ``[start, start + duration)``.

    Gaps are exponential with mean ``1 / rate``, so arrivals bunch up and thin out as
    independent shoppers' do; the count is Poisson with mean ``rate * duration``.
    Deterministic per ``seed``.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    rng = np.random.default_rng(seed)
    expected = rate * duration
    gaps = rng.exponential(1.0 / rate, size=int(expected + 10 * np.sqrt(expected) + 20))
    times = np.cumsum(gaps)
    while times[-1] < duration:  # not reached for any sensible size; kept so the end is never cut short
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, size=len(times)))])
    return start + times[times < duration]


def server_timing_ms(header: str | None, metric: str = "app") -> float | None:
    """The ``dur`` of ``metric`` in a ``Server-Timing`` header (``app;dur=3.2, db;dur=1``)."""
    for entry in (header or "").split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        if name != metric:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                try:
                    return float(value.strip().strip('"'))
                except ValueError:
                    return None
    return None


FAILED = float("inf")
"""The latency a failed or unanswered request counts with: it never reached the shopper."""


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile with linear interpolation, where an infinite value wins any interpolation it enters.

    ``np.percentile`` interpolates ``a + f * (inf - a)``, which is ``nan`` when ``f`` is 0;
    here a rank that falls exactly on a finite value gives that value, and any rank that
    reaches into the failed requests gives ``inf``. So with 6 % failures p95 is ``inf``.
    """
    if not len(values):
        return float("nan")
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    rank = (len(ordered) - 1) * p / 100.0
    low = int(np.floor(rank))
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    if fraction == 0 or np.isinf(ordered[low]):
        return float(ordered[low])
    if np.isinf(ordered[high]):
        return FAILED
    return float(ordered[low] + fraction * (ordered[high] - ordered[low]))


def summarize(samples: Sequence[Sample]) -> dict:
    """Percentiles (ms) of client latency (from due time), service and server time; rate; failures.

    Client percentiles are over every request: one that failed (an error status, a broken
    connection) or got no answer within the timeout counts as an infinite latency, so a
    phase where more than 5 % failed has an infinite p95. ``errors`` counts them all,
    ``timeouts`` the unanswered ones among them. Server time exists only for answers.
    """
    ok = [s for s in samples if s.ok]
    timeouts = sum(1 for s in samples if not s.ok and _timed_out(s.error))
    out = {"requests": len(samples), "errors": len(samples) - len(ok), "timeouts": timeouts}
    if not samples:
        return out
    span = max(s.done for s in samples) - min(s.due for s in samples)
    out["achieved_rps"] = len(ok) / span if span > 0 else 0.0
    series = {
        "client": [s.latency_ms if s.ok else FAILED for s in samples],
        "service": [s.service_ms for s in ok],
        "server": [s.server_ms for s in ok if s.server_ms is not None],
    }
    for name, values in series.items():
        if values:
            for p in (50, 95, 99):
                out[f"{name}_p{p}"] = percentile(values, p)
    return out


def _timed_out(error: str) -> bool:
    return error == "no answer" or error.startswith(("TimeoutError", "timeout"))


class _Worker(threading.Thread):
    """Takes due requests from the queue and sends them over one keep-alive connection."""

    def __init__(self, host: str, port: int, jobs: queue.Queue, timeout: float) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.jobs, self.timeout = host, port, jobs, timeout
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            sample, request = job
            self._send(sample, *(request if len(request) == 4 else ("GET", *request, None)))

    def _send(self, sample: Sample, method: str, path: str, headers: dict[str, str], body: bytes | None) -> None:
        sample.sent = time.perf_counter()
        for attempt in (1, 2):  # a keep-alive connection the server closed is reopened once
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                sample.status = response.status
                sample.server_ms = server_timing_ms(response.getheader("Server-Timing"))
                sample.error = "" if response.status < 500 else f"HTTP {response.status}"
                if response.getheader("Connection", "").lower() == "close":
                    self._close()
                break
            except (OSError, http.client.HTTPException) as e:
                self._close()
                sample.error = f"{type(e).__name__}: {e}"
                if attempt == 2 or isinstance(e, TimeoutError):
                    break
        sample.done = time.perf_counter()

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_open_loop(
    host: str,
    port: int,
    requests: Callable[[int], Request],
    rate: float,
    duration: float,
    *,
    threads: int = 64,
    timeout: float = 10.0,
    arrivals: str = "fixed",
    seed: int = 0,
    started: Callable[[float], None] | None = None,
) -> list[Sample]:
    """Send ``requests(i)`` at ``rate`` per second for ``duration`` seconds; one sample per request.

    ``arrivals``: ``"fixed"`` (a constant grid) or ``"poisson"`` (exponential gaps drawn
    from ``seed``). ``started(t0)`` is called with the ``perf_counter`` time the schedule
    counts from, before the first request. The schedule never waits for responses;
    requests still unanswered ``timeout`` seconds after the last due time are reported as
    errors.
    """
    if arrivals not in ("fixed", "poisson"):
        raise ValueError(f"arrivals must be 'fixed' or 'poisson', not {arrivals!r}")
    jobs: queue.Queue = queue.Queue()
    workers = [_Worker(host, port, jobs, timeout) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter() + 0.05
    if started is not None:
        started(start)
    if arrivals == "fixed":
        due_times = schedule(rate, duration, start)
    else:
        due_times = poisson_schedule(rate, duration, start, seed)
    samples = []
    for i, due in enumerate(due_times):
        request = requests(i)
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sample = Sample(due=float(due))
        samples.append(sample)
        jobs.put((sample, request))
    for _ in workers:
        jobs.put(None)
    deadline = time.perf_counter() + timeout
    for worker in workers:
        worker.join(max(deadline - time.perf_counter(), 0))
        worker._close()
    for sample in samples:
        if not sample.done:
            sample.error, sample.done = sample.error or "no answer", max(time.perf_counter(), sample.due)
    return samples


def max_rate(
    measure: Callable[[float], dict], rates: Sequence[float], p95_ms: float = 100.0, max_errors: float = 0.01
) -> tuple[float, list[tuple[float, dict]]]:
    """Step the open-loop rate up; the highest rate whose client p95 stays under ``p95_ms``.

    A step passes when its p95 (from due time) is under ``p95_ms``, at most ``max_errors``
    of its requests failed and it achieved at least 95 % of the offered rate. Stepping stops
    at the first failing step. Returns the best passing rate (0 if none) and every step.
    """
    best, steps = 0.0, []
    for rate in rates:
        result = measure(rate)
        steps.append((rate, result))
        if not step_passes(result, rate, p95_ms, max_errors):
            break
        best = rate
    return best, steps


def step_passes(result: dict, rate: float, p95_ms: float = 100.0, max_errors: float = 0.01) -> bool:
    """Whether one open-loop step met the latency, error and rate conditions of :func:`max_rate`."""
    if not result.get("requests"):
        return False
    return (
        result.get("client_p95", float("inf")) < p95_ms
        and result["errors"] <= max_errors * result["requests"]
        and result.get("achieved_rps", 0.0) >= 0.95 * rate
    )
