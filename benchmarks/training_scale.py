"""Training at catalogue scale: ``visrec_train`` on a serving-benchmark catalogue, phase by phase.

Runs :func:`recommendations.training.train` (what ``visrec_train`` runs) against a catalogue
built by ``benchmarks/serving.py --build-only`` and reports each phase's wall time and the
process's peak resident memory during it (sampled every 50 ms): the snapshot (interactions,
judgements, item vectors), the hold-out evaluation of each candidate, and storing the winner.
Any active version is deactivated first, so every run fits the same candidates (an active
version would otherwise compete as an extra one).

``--items N`` widens the snapshot to N item columns (products nobody interacted with, with
pks past the catalogue's) before the models see it: what a catalogue of N products gives a
model that reads no image vectors (the interactions are the same: the synthetic products
have none), without loading N products. The snapshot's own time is then the smaller
catalogue's. The version it stores names those made-up pks: it is deactivated afterwards.

    .venv/bin/python benchmarks/training_scale.py --products 200000 --models als [--profile out.prof]

Ends with ``RESULT train_s=<float> snapshot_s=<float> peak_rss_mb=<int>``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
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
    running: list[int] = []  # peak so far of each running phase, outermost first (complete the look in _store)

    def wrap(name: str, func):
        def timed(*args, **kwargs):
            before = sampler.reset()
            if running:
                running[-1] = max(running[-1], before)
            running.append(0)
            started = time.perf_counter()
            try:
                out = func(*args, **kwargs)
            finally:
                peak = max(running.pop(), sampler.reset())
                phases[name] = (round(time.perf_counter() - started, 1), peak)
                if running:  # the enclosing phase's peak includes this one's
                    running[-1] = max(running[-1], peak)
            log.info("%s: %.1f s, peak RSS %d MiB", name, *phases[name])
            return out

        return timed

    for name in ("build_snapshot", "evaluate_models", "_store", "save_complements"):
        stack.enter_context(mock.patch.object(training, name, wrap(name, getattr(training, name))))
    return stack


def widened(build, n_items: int):
    """``build_snapshot`` whose snapshot has ``n_items`` item columns (see the module docstring)."""
    import dataclasses

    import numpy as np

    def build_wide(*args, **kwargs):
        snapshot = build(*args, **kwargs)
        extra = n_items - len(snapshot.items)
        if extra <= 0:
            return snapshot
        if snapshot.item_features is not None:
            raise SystemExit("--items is for models that read no image vectors")
        items = np.concatenate([snapshot.items, snapshot.items.max() + 1 + np.arange(extra, dtype=np.int64)])
        return dataclasses.replace(snapshot, items=items)

    return build_wide


def run(models: list[str], profile: str | None, n_items: int | None = None) -> dict:
    from unittest import mock

    from recommendations import training
    from recommendations.models import ModelVersion

    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    sampler, phases = RssSampler(), {}
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if n_items:
            stack.enter_context(
                mock.patch.object(training, "build_snapshot", widened(training.build_snapshot, n_items))
            )
        stack.enter_context(timed_phases(phases, sampler))
        if profiler:
            profiler.enable()
        version = training.train(models)
        if profiler:
            profiler.disable()
    total = time.perf_counter() - started
    sampler.stop()
    if n_items:
        ModelVersion.objects.filter(pk=version.pk).update(is_active=False)
    if profiler:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())
    return {
        "version": str(version),
        "data_size": version.data_size,
        "params": version.params,
        "all_metrics_sha": hashlib.sha256(json.dumps(version.metrics, sort_keys=True).encode()).hexdigest()[:12],
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
    parser.add_argument(
        "--database", help="the catalogue's database (default: the one the manifest of --products names)"
    )
    parser.add_argument("--items", type=int, help="widen the snapshot to this many item columns (see above)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    database = args.database or find_database(args.products)
    os.environ.update(catalog.env_for(catalog.create_database(catalog.start_server(), database, fresh=False)))
    import django

    django.setup()
    load = os.getloadavg()
    result = run([m for m in args.models.split(",") if m], args.profile, args.items)
    result["load_before_after"] = [round(x, 2) for x in load] + [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))
    snapshot_s = result["phases"]["build_snapshot"][0]
    print(f"RESULT train_s={result['train_s']} snapshot_s={snapshot_s} peak_rss_mb={result['peak_rss_mb']}")


if __name__ == "__main__":
    main()
