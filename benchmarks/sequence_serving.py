"""Serving latency of "for you" when a sequence model (SASRec / GRU4Rec) is active, beside the default.

Usage::

    python benchmarks/sequence_serving.py [--dataset DIR] [--events 50] [--calls 200] [--models sasrec,gru4rec]

On a private embedded PostgreSQL (never the demo database): hm's 24,685 products with
their cached image vectors (``var/bench-cache``, the quality benchmark's) and HNSW index,
hm's purchases before its test split as shopper events, and one signed-in shopper with
``--events`` events of their own. Then, in one run and one process:

1. the **baseline**: ``training.train()`` with the default ``TRAIN_MODELS`` picks and
   activates its model, as a shop's first retrain does;
2. each sequence model, fitted on the same snapshot with the parameters of
   ``--params`` (default: the first entry of its grid in ``benchmarks/quality.py``),
   stored and activated.

For each active model ``serving.for_you(user=shopper)`` is timed ``--calls`` times with
the cache cleared before every call (each one a miss: history query, model scores,
session-taste vector query, fill, product query), and the model step alone
(``_model_for_shopper``). Prints a table, writes a section of
``docs/benchmarks/serving.md`` and ends with a ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime, timedelta

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as a web process runs (wsgi.py)
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402 (after the thread settings)
from _common import DOCS, ROOT, isolated_django, machine, markdown_table, stop_isolated, write_section  # noqa: E402
from _quality_data import image_vectors, load_dataset, parse_time  # noqa: E402
from sequence_dev import section  # noqa: E402

log = logging.getLogger("visrec.bench.sequence_serving")

HM_SPLIT = "2020-06-01"
TARGET_P95_MS = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "hm"))
    parser.add_argument("--events", type=int, default=50, help="events of the measured signed-in shopper")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per model")
    parser.add_argument("--models", default="sasrec,gru4rec")
    parser.add_argument("--params", help='JSON {"sasrec": {...}} (default: the first grid entry in quality.py)')
    parser.add_argument("--out", default=str(DOCS / "serving.md"))
    return parser.parse_args(argv)


def load_catalogue(data, vectors: np.ndarray, events: int, seed: int = 0):
    """Products, images, vectors (then the HNSW index), hm's training purchases and the measured shopper."""
    from django.contrib.auth import get_user_model
    from pgvector import HalfVector

    from catalog.models import Category, Product, ProductImage
    from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState, Interaction
    from recommendations.sync import sync_products

    category = Category.objects.create(name="hm", slug="hm")
    products = Product.objects.bulk_create(
        [Product(sku=item, title=f"hm {item}", category=category, stock=5) for item in data.item_ids], batch_size=5000
    )
    # a file name per image (the adapter reports only images with one); the files are never read: the vectors
    # come from the cache, and the checksum of a missing file is left empty (logged at INFO per image: muted)
    ProductImage.objects.bulk_create(
        [ProductImage(product=p, file=f"hm/{p.sku}.jpg", is_primary=True) for p in products], batch_size=5000
    )
    sync_log = logging.getLogger("recommendations.sync")
    level = sync_log.level
    sync_log.setLevel(logging.WARNING)
    try:
        sync_products([p.pk for p in products], embed=False)  # visrec's snapshots and image states (no signals)
    finally:
        sync_log.setLevel(level)
    state = dict(ImageState.objects.filter(product__in=products).values_list("product_id", "pk"))
    ImageState.objects.filter(pk__in=state.values()).update(status=ImageState.Status.READY)
    images = [ImageState(pk=state[p.pk]) for p in products]
    model = EmbeddingModel.objects.create(
        key="hm-bench", backbone="efficientnet_lite0", weights_sha256="0", dimensions=vectors.shape[1], is_active=True
    )
    has = np.abs(vectors).sum(axis=1) > 0
    ImageEmbedding.objects.bulk_create(
        [ImageEmbedding(image=images[i], model=model, vector=HalfVector(vectors[i])) for i in np.flatnonzero(has)],
        batch_size=2000,
    )
    started = time.perf_counter()
    model.ensure_index()
    log.info("HNSW index over %d vectors in %.0f s", int(has.sum()), time.perf_counter() - started)
    train = data.timestamps < parse_time(HM_SPLIT)
    Interaction.objects.bulk_create(
        [
            Interaction(
                product=products[i], kind="purchase", session_key=f"hm{u}", created_at=datetime.fromtimestamp(t, UTC)
            )
            for u, i, t in zip(data.users[train], data.items[train], data.timestamps[train], strict=True)
        ],
        batch_size=5000,
    )
    user = get_user_model().objects.create_user("bench-shopper", password="x" * 16)
    rng = np.random.default_rng(seed)
    bought = np.unique(data.items[train])
    picks = rng.choice(bought, events, replace=False)
    now = datetime.now(UTC)
    Interaction.objects.bulk_create(
        [
            Interaction(product=products[i], kind="view", user=user, created_at=now - timedelta(minutes=events - n))
            for n, i in enumerate(picks)
        ]
    )
    return user


def time_for_you(user, calls: int) -> dict:
    """``for_you`` with a cold cache, ``calls`` times (after 5 warm-up calls); the model step alone too."""
    from django.core.cache import cache

    from recommendations import serving
    from recommendations.data import shopper_key

    serving.forget_active()
    act = serving.active()
    loaded = serving.loaded_model(act.version)  # loading the artifact is not part of a request
    key = shopper_key(user.pk, "")
    totals, model_step, sources = [], [], set()
    for n in range(calls + 5):
        cache.clear()
        started = time.perf_counter()
        rec = serving.for_you(user=user, limit=12)
        elapsed = (time.perf_counter() - started) * 1000
        events = serving.history(user)
        started = time.perf_counter()
        ranked = serving._model_for_shopper(loaded, key, events, 40)
        step = (time.perf_counter() - started) * 1000
        if n >= 5:
            totals.append(elapsed)
            model_step.append(step)
            sources.add(rec.source)
    return {
        "kind": act.version.kind if act.version else "none",
        "p50": float(np.percentile(totals, 50)),
        "p95": float(np.percentile(totals, 95)),
        "model_p50": float(np.percentile(model_step, 50)),
        "model_p95": float(np.percentile(model_step, 95)),
        "source": ",".join(sorted(sources)),
        "model_items": len(ranked),
    }


def grid_params(name: str) -> dict:
    """The first entry of ``name``'s grid in the quality benchmark (its validated default)."""
    from quality import GRIDS

    return dict(GRIDS.get(name, [{}])[0])


def main(argv: list[str] | None = None) -> str:
    """Build, train, time; returns the ``RESULT`` line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    data = load_dataset(args.dataset)
    vectors = image_vectors(data, ROOT / "var" / "bench-cache", ROOT / "var" / "cache")
    data_dir = isolated_django("sequence-serving")
    try:
        import torch

        torch.set_num_threads(1)
        from django.conf import settings

        from recommendations import training
        from recommendations.data import build_snapshot

        settings.VISREC = {**settings.VISREC, "CACHE_DIR": str(data_dir / "cache")}
        user = load_catalogue(data, vectors, args.events)
        started = time.perf_counter()
        baseline = training.train()
        log.info("baseline %s trained in %.0f s", baseline.kind, time.perf_counter() - started)
        rows = [("baseline (default training)", time_for_you(user, args.calls), 0.0)]
        chosen = json.loads(args.params) if args.params else {}
        snapshot = build_snapshot()
        for name in args.models.split(","):
            params = chosen.get(name, grid_params(name))
            started = time.perf_counter()
            version = training._store(training.Candidate(name, params, {}, 0.0), snapshot)
            fit = time.perf_counter() - started
            training.activate(version)
            rows.append((f"{name} `{json.dumps(params, sort_keys=True)}`", time_for_you(user, args.calls), fit))
    finally:
        stop_isolated(data_dir)
    headers = ["active model", "kind", "for_you p50 ms", "for_you p95 ms", "model step p50 ms", "model step p95 ms"]
    headers += ["sources", "fit s"]
    body = [
        [label, r["kind"], f"{r['p50']:.1f}", f"{r['p95']:.1f}", f"{r['model_p50']:.2f}", f"{r['model_p95']:.2f}"]
        + [r["source"], f"{fit:.0f}"]
        for label, r, fit in rows
    ]
    text = markdown_table(headers, body)
    print(text)
    sequence = rows[1:]
    worst = max(sequence, key=lambda row: row[1]["p95"]) if sequence else rows[0]
    line = (
        f"RESULT sequence_for_you_p95_ms={worst[1]['p95']:.1f} sequence_model={worst[1]['kind']} "
        f"baseline_p95_ms={rows[0][1]['p95']:.1f} baseline_model={rows[0][1]['kind']} events={args.events} "
        f"target_ms={TARGET_P95_MS:.0f} pass={'yes' if worst[1]['p95'] < TARGET_P95_MS else 'no'}"
    )
    intro = (
        f"hm's {data.n_items:,} products with their image vectors (HNSW index), its purchases before {HM_SPLIT} as "
        f"events, and one signed-in shopper with {args.events} events, on a private embedded PostgreSQL; "
        f"machine: {machine()}. `serving.for_you(user=shopper, limit=12)` timed {args.calls} times per active "
        "model, the cache cleared before each call, BLAS single-threaded as in a web process (every call a miss: "
        "history query, model scores, session-taste "
        "vector query, top-up, product query). The baseline is the model `training.train()` activates with "
        "the default `TRAIN_MODELS`; the sequence models rank from the shopper's events, newest last (one "
        "numpy forward pass over the 50 events, all products scored); `model step` is that part alone."
    )
    body_text = section("For you with an active sequence model", "sequence_serving.py", argv, intro, text, line)
    write_section(ROOT / args.out, "sequence-serving", "Serving", body_text)  # an absolute --out stays absolute
    print(line)
    return line


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
