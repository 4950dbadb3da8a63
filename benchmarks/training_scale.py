"""Training at catalogue scale: ``visrec_train`` on a serving-benchmark catalogue, phase by phase.

Runs :func:`recommendations.training.train` (what ``visrec_train`` runs) against a catalogue
built by ``benchmarks/serving.py --build-only`` and reports each phase's wall time and the
process's peak resident memory during it (sampled every 50 ms): the snapshot (interactions,
judgements, item vectors), the hold-out evaluation of each candidate, and storing the winner.
Any active version is deactivated first, so every run fits the same candidates (an active
version would otherwise compete as an extra one).

    .venv/bin/python benchmarks/training_scale.py --products 200000 --models als [--profile out.prof]

Ends with ``RESULT train_s=<float> snapshot_s=<float> peak_rss_mb=<int>``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _serving_catalog as catalog  # noqa: E402

log = logging.getLogger("visrec.bench.training")


class RssSampler:
    """Peak resident memory of this process (MiB) since the last :meth:`reset`, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def reset(self) -> int:
        peak, self.peak = self.peak, self.current()
        return max(peak, self.peak)

    def stop(self) -> None:
        self._stop.set()


def find_database(products: int) -> str:
    """The built catalogue of ``products`` products (its manifest under ``var/bench``)."""
    found = sorted(catalog.BENCH_DIR.glob(f"bench_{products}_*.json"))
    if not found:
        raise SystemExit(f"no catalogue of {products} products: run benchmarks/serving.py --build-only first")
    return json.loads(found[-1].read_text())["database"]


def timed_phases(phases: dict, sampler: RssSampler) -> contextlib.ExitStack:
    """Wrap training's phase functions so that each call records ``(seconds, peak MiB)`` in ``phases``."""
    from unittest import mock

    from recommendations import training

    stack = contextlib.ExitStack()

    def wrap(name: str, func):
        def timed(*args, **kwargs):
            sampler.reset()
            started = time.perf_counter()
            out = func(*args, **kwargs)
            phases[name] = (round(time.perf_counter() - started, 1), sampler.reset())
            return out

        return timed

    for name in ("build_snapshot", "evaluate_models", "_store"):
        stack.enter_context(mock.patch.object(training, name, wrap(name, getattr(training, name))))
    return stack


def run(models: list[str], profile: str | None) -> dict:
    from recommendations import training
    from recommendations.models import ModelVersion

    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    sampler, phases = RssSampler(), {}
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    with timed_phases(phases, sampler):
        if profiler:
            profiler.enable()
        version = training.train(models)
        if profiler:
            profiler.disable()
    total = time.perf_counter() - started
    sampler.stop()
    if profiler:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())
    return {
        "version": str(version),
        "data_size": version.data_size,
        "metrics": {k: version.metrics.get(k) for k in ("recall@12", "recall@50", "ndcg@12", "coverage@12")},
        "train_s": round(total, 1),
        "phases": phases,
        "peak_rss_mb": max(p[1] for p in phases.values()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=200_000, help="catalogue size N (built by serving.py)")
    parser.add_argument("--models", default="als", help="comma-separated recommenders")
    parser.add_argument("--profile", help="write a cProfile of the training here (and print its top)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    database = find_database(args.products)
    os.environ.update(catalog.env_for(catalog.create_database(catalog.start_server(), database, fresh=False)))
    import django

    django.setup()
    load = os.getloadavg()
    result = run([m for m in args.models.split(",") if m], args.profile)
    result["load_before_after"] = [round(x, 2) for x in load] + [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))
    snapshot_s = result["phases"]["build_snapshot"][0]
    print(f"RESULT train_s={result['train_s']} snapshot_s={snapshot_s} peak_rss_mb={result['peak_rss_mb']}")


if __name__ == "__main__":
    main()
