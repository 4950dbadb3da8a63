"""A model's item neighbours at catalogue scale: exact over every item vs the bounded pool serving searches.

One process, no HTTP, no database: for N items (default 1,000,000) it builds an ALS-like
model (64-d factors) and an image_cf-like one (128-d whitened unit image vectors, as
``benchmarks/web_memory.py`` does at scale), both with power-law training interaction
counts (the models' popularity prior is the standardised log of them, as training
computes it). Items belong to latent styles (clusters of vectors), independent of their
popularity. For each model it times ``LoadedModel.similar_items`` (the serving step of
similar items) per request

- ``exact``: the pool is every item (what serving did before: a 1M-row matrix-vector
  product and a top-n over a million scores);
- ``pool P``: the ``P`` items the model saw most often (``VISREC["MODEL_NEIGHBOUR_POOL"]``);

on the same anchors, drawn half uniformly from the catalogue and half by interaction
count (the products shoppers open), and reports recall@8 of the pooled neighbours against
the exact ones (the share of the exact top 8 the pool returns), overall and for anchors
inside and outside the pool, and the share of the 8 returned neighbours that share the
anchor's style (the synthetic ground truth: what a shopper would call "similar").

    .venv/bin/python benchmarks/model_neighbours.py

Prints a table, writes ``docs/benchmarks/model-neighbours.md`` and ends with
``RESULT neighbours_p95_ms=<pool P, worst model> exact_p95_ms=<exact, worst model>
recall8=<pool P, all anchors, worst model> items=<N>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as a web process runs (wsgi.py)
    os.environ.setdefault(_name, os.environ.get("VISREC_WEB_THREADS", "1"))

import numpy as np  # noqa: E402 (after the thread settings)

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import DOCS, ROOT, markdown_table, write_section  # noqa: E402

N_NEIGHBOURS = 8


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalogue size N (item columns)")
    parser.add_argument("--exact", type=int, default=100_000, help="MODEL_NEIGHBOUR_EXACT: exact up to this many items")
    parser.add_argument("--probes", type=int, default=32, help="MODEL_NEIGHBOUR_PROBES of the RESULT line")
    parser.add_argument("--also-probes", default="8,16,64,128", help="other numbers of probed cells to measure")
    parser.add_argument("--pool", type=int, default=100_000, help="size of the popularity pool (the alternative)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per model and method")
    parser.add_argument("--styles", type=int, default=2_000, help="latent styles (clusters) of the vectors")
    parser.add_argument("--noise", type=float, default=1.5, help="spread of items around their style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks/model-neighbours.md")
    args = parser.parse_args(argv)
    args.probe_list = [args.probes] + [int(p) for p in args.also_probes.split(",") if p and int(p) != args.probes]
    return args


def setup_django() -> None:
    """Django's app registry without a database (serving's modules import the models).

    Called from a process where Django is already set up (the test suite), it changes
    nothing: the environment it would write is inherited by every subprocess started later.
    """
    from django.apps import apps

    if apps.ready:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visrec_shop.settings")
    os.environ.setdefault("VISREC_SINGLE_PROCESS", "1")
    os.environ.setdefault("DATABASE_URL", "postgres://bench@127.0.0.1:9/unused")  # never connected
    os.environ.setdefault("VISREC_DATA_DIR", tempfile.mkdtemp(prefix="visrec-bench-neighbours-"))
    import django

    django.setup()


def interaction_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Power-law training interaction counts (Pareto tail, at least one each)."""
    return np.floor(rng.pareto(1.2, n) + 1.0)


def styled_vectors(rng: np.random.Generator, n: int, dims: int, styles: int, noise: float) -> tuple:
    """``n`` float32 vectors around ``styles`` random centres, and each one's style."""
    centres = rng.standard_normal((styles, dims)).astype(np.float32)
    style = rng.integers(0, styles, n)
    out = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        out[start:stop] = centres[style[start:stop]]
        out[start:stop] += noise * rng.standard_normal((stop - start, dims)).astype(np.float32)
    return out, style


def standardised_log(counts: np.ndarray) -> np.ndarray:
    prior = np.log(counts)
    return ((prior - prior.mean()) / prior.std()).astype(np.float32)


def build_models(args) -> dict:
    from recommendations.ml.mf import ALS
    from recommendations.ml.visual import ImageCF

    rng = np.random.default_rng(args.seed)
    counts = interaction_counts(rng, args.items)
    als = ALS(factors=64, regularization=0.1, prior_weight=0.3)
    als.item_factors, als_style = styled_vectors(rng, args.items, 64, args.styles, noise=args.noise)
    als.item_factors *= (1.0 + 0.2 * np.log(counts))[:, None].astype(np.float32)  # popular: longer rows
    als.prior, als.weight = standardised_log(counts), 0.3
    image = ImageCF(whiten=128, popularity_weight=0.3)
    features, image_style = styled_vectors(rng, args.items, 128, args.styles, noise=args.noise)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    image.features, image.has_image = features, np.ones(args.items, dtype=bool)
    image.prior, image.weight = standardised_log(counts), 0.3
    return {"als": (als, als_style, counts), "image_cf": (image, image_style, counts)}


def anchors(rng: np.random.Generator, counts: np.ndarray, n: int) -> np.ndarray:
    """Half drawn uniformly from the catalogue, half by interaction count (the products shoppers open)."""
    uniform = rng.integers(0, len(counts), n - n // 2)
    viewed = rng.choice(len(counts), n // 2, p=counts / counts.sum())
    return np.concatenate([uniform, viewed])


@dataclass
class Measured:
    model: str
    method: str
    scored: float  # items scored per request (mean)
    build_s: float
    times_ms: list[float]
    results: list[np.ndarray]
    in_pool: np.ndarray | None = None  # anchors inside the popularity pool (that method only)


def serving_for(model, index):
    from recommendations.serving.versions import KeyIndex, LoadedModel

    items = np.arange(len(model.prior), dtype=np.int64)
    loaded = LoadedModel(1, model, items, KeyIndex(items), KeyIndex(np.array([], dtype=str)))
    loaded.index = index
    return loaded


def popularity_pool(vectors: np.ndarray, counts: np.ndarray, size: int):
    """The alternative measured and not chosen: exact search among the ``size`` most-bought items only."""
    from recommendations.ml.neighbours import NeighbourIndex, unit_rows

    cols = np.sort(np.argsort(-counts, kind="stable")[:size])
    offsets = np.array([0, len(cols)], dtype=np.int64)
    unused = np.zeros((1, vectors.shape[1]), np.float32)
    return NeighbourIndex(cols, unit_rows(vectors, cols), offsets, unused, vectors, 1)


def timed(loaded, cols: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    for col in cols[:10]:  # warm-up: first touches of the arrays
        loaded.similar_items(int(col), N_NEIGHBOURS)
    times, results = [], []
    for col in cols:
        start = time.perf_counter()
        ids, _ = loaded.similar_items(int(col), N_NEIGHBOURS)
        times.append((time.perf_counter() - start) * 1000)
        results.append(ids)
    return times, results


def searches(args, vectors: np.ndarray, counts: np.ndarray):
    """``(method, build seconds, index)`` of each way measured, built one at a time (each holds a copy)."""
    from recommendations.ml.neighbours import neighbour_index

    start = time.perf_counter()
    yield "exact (before)", time.perf_counter() - start, neighbour_index(vectors, args.items, 1)
    start = time.perf_counter()
    cells = neighbour_index(vectors, args.exact, args.probes)
    build_s = time.perf_counter() - start
    for probes in args.probe_list:
        yield f"cells, {probes} probed", build_s, replace(cells, probes=probes)
    del cells
    start = time.perf_counter()
    pool = popularity_pool(vectors, counts, args.pool)
    yield f"popularity pool {args.pool:,}", time.perf_counter() - start, pool


def measure(args, models: dict) -> tuple[list[Measured], dict]:
    rng = np.random.default_rng(args.seed + 1)
    out, queries = [], {}
    for name, (model, _, counts) in models.items():
        cols = anchors(rng, counts, args.requests)
        queries[name] = cols
        for method, build_s, index in searches(args, model.neighbour_vectors(), counts):
            times, results = timed(serving_for(model, index), cols)
            cells = len(index.offsets) - 1
            scored = len(index.cols) if cells == 1 else len(index.cols) * index.probes / cells + cells
            m = Measured(name, method, scored, build_s, times, results)
            if method.startswith("popularity"):
                m.in_pool = np.isin(cols, index.cols)
            out.append(m)
            print(f"{name:9s} {method:28s} p50 {np.percentile(times, 50):7.2f} ms", flush=True)
            del index
    return out, queries


def recall(found: list[np.ndarray], exact: list[np.ndarray], mask: np.ndarray) -> float:
    pairs = [(f, e) for f, e, m in zip(found, exact, mask, strict=True) if m]
    hits = [len(set(f.tolist()) & set(e.tolist())) / max(len(e), 1) for f, e in pairs]
    return float(np.mean(hits)) if hits else float("nan")


def same_style(found: list[np.ndarray], cols: np.ndarray, style: np.ndarray) -> float:
    return float(np.mean([np.mean(style[f] == style[c]) for f, c in zip(found, cols, strict=True) if len(f)]))


HEADERS = [
    "model",
    "search",
    "items scored",
    "build s",
    "p50 ms",
    "p95 ms",
    "max ms",
    "recall@8",
    "recall@8, anchors in the pool",
    "recall@8, anchors outside",
    "same-style share",
]


def rows(measured: list[Measured], models: dict, queries: dict) -> list[list]:
    out = []
    for m in measured:
        exact = next(x for x in measured if x.model == m.model and x.method.startswith("exact"))
        cols, style = queries[m.model], models[m.model][1]
        every = np.ones(len(cols), dtype=bool)
        split = ["-", "-"]
        if m.in_pool is not None:
            split = [
                f"{recall(m.results, exact.results, m.in_pool):.3f} ({m.in_pool.mean():.0%} of anchors)",
                f"{recall(m.results, exact.results, ~m.in_pool):.3f}",
            ]
        out.append(
            [
                m.model,
                m.method,
                f"{m.scored:,.0f}",
                f"{m.build_s:.1f}",
                f"{np.percentile(m.times_ms, 50):.2f}",
                f"{np.percentile(m.times_ms, 95):.2f}",
                f"{max(m.times_ms):.2f}",
                f"{recall(m.results, exact.results, every):.3f}",
                *split,
                f"{same_style(m.results, cols, style):.3f}",
            ]
        )
    return out


def commit() -> str:
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return found.stdout.strip()
    except OSError:
        return "?"


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_django()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    models = build_models(args)
    measured, queries = measure(args, models)
    table = markdown_table(HEADERS, rows(measured, models, queries))
    print(table)
    chosen = [m for m in measured if m.method == f"cells, {args.probes} probed"]
    exact = [m for m in measured if m.method.startswith("exact")]
    p95 = max(np.percentile(m.times_ms, 95) for m in chosen)
    exact_p95 = max(np.percentile(m.times_ms, 95) for m in exact)
    every = np.ones(args.requests, dtype=bool)
    worst_recall = min(recall(m.results, x.results, every) for m, x in zip(chosen, exact, strict=True))
    elapsed = time.perf_counter() - started
    load = (load_before, os.getloadavg()[0])
    if not args.no_doc:
        write_doc(args, table, elapsed, load)
    print(
        f"RESULT neighbours_p95_ms={p95:.2f} exact_p95_ms={exact_p95:.2f} recall8={worst_recall:.3f} items={args.items}"
    )


def write_doc(args, table: str, elapsed: float, load: tuple[float, float]) -> None:
    lines = [
        f"### {args.items:,} items, styles spread {args.noise:g}",
        "",
        f"`benchmarks/model_neighbours.py --items {args.items} --requests {args.requests} --noise {args.noise:g}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{commit()}`, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} before / {load[1]:.1f} after, {elapsed:.0f} s. One process, one request at a time, BLAS "
        f"single-threaded as in a web process. `build s`: building the search in memory (serving does it once per "
        f"model version; training writes it with the version's memory-mapped arrays). `items scored`: per request, "
        f"cell centres included. Default settings: cells past {args.exact:,} items, {args.probes} probed.",
        "",
        table,
    ]
    section = f"model-neighbours-{args.items}-noise{args.noise:g}"
    write_section(DOCS / "model-neighbours.md", section, "Model item neighbours", "\n".join(lines))


if __name__ == "__main__":
    main()
