"""The serving benchmark's helpers: synthetic vectors, the open-loop scheduler, Server-Timing."""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _memory import parse_smaps_rollup  # noqa: E402
from _serving_load import (  # noqa: E402
    Sample,
    max_rate,
    percentile,
    poisson_schedule,
    run_open_loop,
    schedule,
    server_timing_ms,
    step_passes,
    summarize,
)
from _serving_vectors import mixture_weights, nearest_cosine, normalise, recall_at_10, synthetic_vectors  # noqa: E402


@pytest.fixture
def real_vectors() -> np.ndarray:
    """Clustered unit vectors like image embeddings: 40 tight clusters of 10 in 64-d, non-negative."""
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(40, 64)))
    return normalise(np.repeat(centres, 10, axis=0) + 0.15 * np.abs(rng.normal(size=(400, 64)))).astype(np.float32)


# -- synthetic vectors --------------------------------------------------------------------------
def test_mixture_weights_are_convex_with_no_dominant_component():
    weights, counts = mixture_weights(np.random.default_rng(1), 5000, 3, 5, max_weight=0.6)

    assert np.allclose(weights.sum(axis=1), 1.0)
    assert weights.min() >= 0 and weights.max() <= 0.6
    assert set(np.unique(counts)) == {3, 4, 5}
    assert ((weights > 0).sum(axis=1) == counts).all()


def test_synthetic_vectors_are_unit_length_and_never_near_duplicates(real_vectors):
    # given real vectors that contain near-duplicates of each other (clusters)
    real_self = nearest_cosine(real_vectors, real_vectors, exclude_self=True)
    assert (real_self > 0.95).mean() > 0.5

    # when
    vectors, dominant = synthetic_vectors(real_vectors, 3000, np.random.default_rng(2), max_cosine=0.95)

    # then
    assert vectors.shape == (3000, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert nearest_cosine(vectors, real_vectors).max() <= 0.95
    assert ((dominant >= 0) & (dominant < len(real_vectors))).all()
    assert len(np.unique(vectors.round(4), axis=0)) == 3000


def test_synthetic_vectors_follow_the_real_distribution(real_vectors):
    vectors, dominant = synthetic_vectors(real_vectors, 4000, np.random.default_rng(3), noise_scale=0.3)

    synthetic_mean = normalise(vectors.mean(0, keepdims=True))
    real_mean = normalise(real_vectors.mean(0, keepdims=True))
    assert float(synthetic_mean[0] @ real_mean[0]) > 0.99
    # the heaviest component is a real neighbour: the synthetic vector sits near its cluster
    to_dominant = np.sum(vectors * real_vectors[dominant], axis=1)
    to_random = np.sum(vectors * real_vectors[np.random.default_rng(4).integers(0, 400, 4000)], axis=1)
    assert to_dominant.mean() > to_random.mean() + 0.02


def test_synthetic_vectors_are_deterministic_per_seed(real_vectors):
    a, _ = synthetic_vectors(real_vectors, 50, np.random.default_rng(7))
    b, _ = synthetic_vectors(real_vectors, 50, np.random.default_rng(7))
    c, _ = synthetic_vectors(real_vectors, 50, np.random.default_rng(8))

    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_nearest_cosine_excludes_self_only():
    corpus = normalise(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))

    assert nearest_cosine(corpus, corpus, exclude_self=True, block=2).tolist() == [1.0, 1.0, 0.0]
    assert nearest_cosine(corpus, corpus).tolist() == [1.0, 1.0, 1.0]


# -- open-loop scheduling -----------------------------------------------------------------------------
def test_schedule_is_a_fixed_grid_independent_of_responses():
    due = schedule(50, 2.0, start=10.0)

    assert len(due) == 100
    assert due[0] == 10.0
    assert np.allclose(np.diff(due), 0.02)
    with pytest.raises(ValueError):
        schedule(0, 1)


def test_poisson_schedule_has_the_rate_and_exponential_gaps():
    due = poisson_schedule(20, 500.0, start=3.0, seed=1)

    assert 3.0 <= due[0] and due[-1] < 503.0 and np.all(np.diff(due) > 0)
    assert len(due) == pytest.approx(20 * 500, rel=0.03)  # Poisson count: sd is 1 % of 10000
    gaps = np.diff(due)
    assert gaps.mean() == pytest.approx(1 / 20, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV 1 (a fixed grid: 0)
    assert np.mean(gaps < 0.05 / 2) == pytest.approx(1 - np.exp(-0.5), abs=0.02)  # bursts: P(gap < mean/2)
    assert np.array_equal(due, poisson_schedule(20, 500.0, start=3.0, seed=1))
    assert not np.array_equal(due[:10], poisson_schedule(20, 500.0, start=3.0, seed=2)[:10])
    with pytest.raises(ValueError):
        poisson_schedule(0, 1)


def test_open_loop_posts_bodies_on_a_poisson_schedule():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoLengthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    started = []
    try:
        samples = run_open_loop(
            "127.0.0.1",
            server.server_port,
            lambda i: ("POST", f"/{i}", {"Content-Type": "text/plain"}, b"x" * i) if i % 2 else (f"/{i}", {}),
            200,
            0.5,
            threads=4,
            arrivals="poisson",
            seed=3,
            started=started.append,
        )
    finally:
        server.shutdown()

    assert len(samples) == pytest.approx(100, abs=30) and all(s.ok for s in samples)
    assert started and started[0] <= samples[0].due
    assert _EchoLengthHandler.seen[1] == ("POST", 1) and _EchoLengthHandler.seen[2] == ("GET", 0)
    with pytest.raises(ValueError):
        run_open_loop("127.0.0.1", server.server_port, lambda i: ("/", {}), 10, 0.1, arrivals="burst")


class _EchoLengthHandler(BaseHTTPRequestHandler):
    seen: dict[int, tuple[str, int]] = {}

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen[int(self.path.strip("/"))] = (self.command, length)
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815 (http.server API)

    def log_message(self, *args):
        pass


def test_latency_counts_from_the_due_time_not_the_send_time():
    # a request due at t=0 that could only be sent at t=0.5 (server stalled) and answered at 0.51
    late = Sample(due=0.0, sent=0.5, done=0.51, status=200)

    assert late.latency_ms == pytest.approx(510)
    assert late.service_ms == pytest.approx(10)


def test_summarize_percentiles_errors_and_rate():
    samples = [Sample(due=i / 100, sent=i / 100, done=i / 100 + 0.001 * (i + 1), status=200) for i in range(100)]
    samples += [Sample(due=1.0, sent=1.0, done=1.0, status=503, error="HTTP 503")]
    for s in samples[:50]:
        s.server_ms = 2.0

    result = summarize(samples)

    assert result["requests"] == 101 and result["errors"] == 1 and result["timeouts"] == 0
    assert result["client_p50"] == pytest.approx(51.0, abs=0.01)  # the failed request is in the ranks
    assert result["client_p99"] == pytest.approx(100.0, abs=0.01)
    assert result["server_p95"] == 2.0
    assert result["achieved_rps"] == pytest.approx(100 / 1.09, rel=1e-3)


def _samples(ok: int, failed: int, timed_out: int = 0) -> list[Sample]:
    good = [Sample(due=0.0, sent=0.0, done=0.001 * (i + 1), status=200, server_ms=1.0) for i in range(ok)]
    bad = [Sample(due=0.0, sent=0.0, done=0.5, status=503, error="HTTP 503") for _ in range(failed)]
    lost = [Sample(due=0.0, sent=0.0, done=10.0, error="no answer") for _ in range(timed_out)]
    return good + bad + lost


def test_failed_and_unanswered_requests_count_as_infinite_latency():
    # 6 % failed (3 errors, 3 never answered): p95 reaches into them
    result = summarize(_samples(94, 3, 3))

    assert result["errors"] == 6 and result["timeouts"] == 3
    assert result["client_p95"] == float("inf") and result["client_p99"] == float("inf")
    assert result["client_p50"] == pytest.approx(50.5, abs=0.01)
    assert result["server_p95"] == 1.0  # server time is of the answers only


def test_few_failures_leave_p95_finite_but_not_flattered():
    with_failures = summarize(_samples(97, 3))
    without = summarize(_samples(97, 0))

    assert with_failures["client_p95"] < float("inf")
    assert with_failures["client_p95"] > without["client_p95"]  # the failures still push it up
    assert summarize(_samples(0, 5))["client_p50"] == float("inf")


def test_percentile_never_interpolates_into_nan():
    assert percentile([1.0, 2.0, float("inf")], 50) == 2.0
    assert percentile([1.0, 2.0, float("inf")], 51) == float("inf")
    assert percentile([1.0, 3.0], 50) == 2.0
    assert np.isnan(percentile([], 50))


def test_recall_counts_ties_at_the_kth_distance_as_hits():
    truth = [0.1, 0.2, 0.3]

    assert recall_at_10([0.1, 0.2, 0.3], truth, k=3) == 1.0
    assert recall_at_10([0.1, 0.3, 0.35], truth, k=3) == pytest.approx(2 / 3)  # 0.3 ties the 3rd: a hit
    assert recall_at_10([0.4, 0.5], truth, k=3) == 0.0
    assert recall_at_10([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1], k=3) == 1.0  # never above 1
    assert recall_at_10([], [], k=3) == 1.0


def test_smaps_rollup_gives_uss_as_private_pages():
    text = """55a-7ff ---p 00000000 00:00 0    [rollup]
Rss:              204800 kB
Pss:              150000 kB
Shared_Clean:      81920 kB
Shared_Dirty:       1024 kB
Private_Clean:      2048 kB
Private_Dirty:    120832 kB
Swap:                  0 kB
"""
    found = parse_smaps_rollup(text)

    assert found["rss"] == 200.0
    assert found["uss"] == pytest.approx((2048 + 120832) / 1024)
    assert found["shared"] == pytest.approx((81920 + 1024) / 1024)
    assert found["pss"] == pytest.approx(150000 / 1024)


def test_server_timing_header_parsing():
    assert server_timing_ms("app;dur=12.5") == 12.5
    assert server_timing_ms('db;dur=1, app;desc="django";dur=3.25') == 3.25
    assert server_timing_ms("db;dur=1") is None
    assert server_timing_ms(None) is None
    assert server_timing_ms("app;dur=abc") is None


def test_max_rate_stops_at_the_first_failing_step():
    p95 = {100: 10.0, 200: 40.0, 300: 90.0, 400: 150.0, 500: 20.0}

    def measure(rate):
        return {"requests": 100, "errors": 0, "client_p95": p95[rate], "achieved_rps": rate * 0.99}

    best, steps = max_rate(measure, [100, 200, 300, 400, 500])

    assert best == 300
    assert [rate for rate, _ in steps] == [100, 200, 300, 400]


def test_a_step_fails_on_errors_or_a_rate_it_could_not_reach():
    good = {"requests": 1000, "errors": 5, "client_p95": 50.0, "achieved_rps": 300.0}

    assert step_passes(good, 300)
    assert not step_passes({**good, "errors": 20}, 300)
    assert not step_passes({**good, "achieved_rps": 250.0}, 300)
    assert not step_passes({**good, "client_p95": 100.0}, 300)
    assert not step_passes({"requests": 0, "errors": 0}, 300)


class _StallingHandler(BaseHTTPRequestHandler):
    """Answers in 1 ms, except that the server stalls 300 ms once, on the 5th request."""

    protocol_version = "HTTP/1.1"
    calls = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server API)
        with self.lock:
            type(self).calls += 1
            stall = type(self).calls == 5
        time.sleep(0.3 if stall else 0.001)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Server-Timing", "app;dur=1.00")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_open_loop_keeps_sending_while_the_server_stalls():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        samples = run_open_loop("127.0.0.1", server.server_port, lambda i: (f"/{i}", {}), 100, 1.0, threads=4)
    finally:
        server.shutdown()

    assert len(samples) == 100 and all(s.ok for s in samples)
    sent_gaps = np.diff(sorted(s.sent for s in samples))
    assert sent_gaps.max() < 0.25  # arrivals kept coming during the 300 ms stall
    assert max(s.latency_ms for s in samples) >= 290
    assert all(s.server_ms == 1.0 for s in samples)
