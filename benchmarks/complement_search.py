"""Complete the look's partner search at catalogue scale: every code scored vs the index serving searches.

One process, no HTTP, no database: N products (default 1,000,000) with 128-d image-like
vectors around latent styles (``model_neighbours.styled_vectors``) and power-law recent
sales (the compatibility model's popularity prior), and a compatibility model of rank 64 (the
default ``COMPLEMENT_MODEL``) with random towers. For the same anchors (products, half drawn
uniformly, half by sales) it times

- ``every code``: :func:`recommendations.ml.complements.top_partners` over all N codes (what
  serving did before: a matrix-vector product and a top-n per uncached request);
- ``index``: :meth:`recommendations.serving.versions.Complements.partners` (the codes made
  cosine in the model neighbours' inverted file past ``MODEL_NEIGHBOUR_EXACT``);

and reports recall@40 of the index against scoring every code (the list depth a page of 8
asks for, with its rules' overfetch).

    .venv/bin/python benchmarks/complement_search.py [--items 1000000]

Prints a table, writes the ``complement-search`` section of ``docs/benchmarks/complements.md``
and ends with ``RESULT index_p95_ms=<float> every_code_p95_ms=<float> recall40=<float> items=<N>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as a web process runs (wsgi.py)
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import DOCS, machine, markdown_table, write_section  # noqa: E402
from model_neighbours import anchors, commit, interaction_counts, setup_django, styled_vectors  # noqa: E402

DEPTH = 40


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalogue size N")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per method")
    parser.add_argument("--styles", type=int, default=2_000, help="latent styles (clusters) of the vectors")
    parser.add_argument("--noise", type=float, default=1.5, help="spread of products around their style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior-weight", type=float, default=1.0, help="weight of the sales prior in the codes")
    parser.add_argument("--probes", default="32,64,128,256", help="numbers of probed cells to measure")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks/complements.md")
    return parser.parse_args(argv)


def build(args):
    """The random compatibility model, the products' vectors and sales, and the served index of their codes."""
    from recommendations.ml.complements import CompatibilityModel
    from recommendations.serving.versions import complements_index

    rng = np.random.default_rng(args.seed)
    vectors, _ = styled_vectors(rng, args.items, 128, args.styles, args.noise)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sales = interaction_counts(rng, args.items) - 1.0
    model = CompatibilityModel(rank=64, dims=128, prior_weight=args.prior_weight)
    model.mean = vectors[: min(len(vectors), 100_000)].mean(axis=0)
    model.anchor_map = rng.standard_normal((128, 64)).astype(np.float32) / 8
    model.item_map = rng.standard_normal((128, 65)).astype(np.float32) / 8
    codes = model.item_codes(vectors, sales)
    started = time.perf_counter()
    served = complements_index(model, codes, np.arange(1, args.items + 1))
    return model, vectors, codes, sales, served, time.perf_counter() - started


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_django()
    from recommendations.conf import visrec_settings
    from recommendations.ml.complements import top_partners

    load_before = os.getloadavg()
    model, vectors, codes, sales, served, build_s = build(args)
    picked = anchors(np.random.default_rng(args.seed + 1), sales + 1.0, args.requests)
    exact, before = [], []
    for col in picked:
        t0 = time.perf_counter()
        rows, _ = top_partners(model.anchor_codes(vectors[col : col + 1])[0], codes, DEPTH, np.array([col]))
        before.append((time.perf_counter() - t0) * 1000)
        exact.append(set(rows.tolist()))
    configured = int(visrec_settings.COMPLEMENT_PROBES)
    table_rows = [
        ["every code (before)", "", f"{np.percentile(before, 50):.1f}", f"{np.percentile(before, 95):.1f}", "1"]
    ]
    measured = {}
    index = served.index
    for probes in sorted({configured, *(int(x) for x in args.probes.split(",") if x)}):
        served.index = replace(index, probes=probes)
        times, recalls = [], []
        for col, best in zip(picked, exact, strict=True):
            t0 = time.perf_counter()
            found = served.partners(vectors[col], DEPTH, exclude=int(col) + 1)
            times.append((time.perf_counter() - t0) * 1000)
            recalls.append(len({pk - 1 for pk, _ in found} & best) / max(len(best), 1))
        measured[probes] = (float(np.percentile(times, 95)), float(np.mean(recalls)))
        name = "index (served)" + (" **configured**" if probes == configured else "")
        table_rows.append(
            [
                name,
                probes,
                f"{np.percentile(times, 50):.2f}",
                f"{measured[probes][0]:.2f}",
                f"{measured[probes][1]:.3f}",
            ]
        )
    load_after = os.getloadavg()
    table = markdown_table(["method", "cells probed", "p50 ms", "p95 ms", f"recall@{DEPTH} vs every code"], table_rows)
    print(table)
    p95, recall = measured[configured]
    if not args.no_doc:
        body = (
            "## Partner search at catalogue scale\n\n"
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, `benchmarks/complement_search.py "
            f"--items {args.items} --prior-weight {args.prior_weight:g}`: {args.items:,} products (128-d unit "
            f"vectors around {args.styles:,} styles), "
            "power-law recent sales as the prior, a rank-64 model with random towers (the search's cost and "
            "recall do not depend on what the model learnt; its scores' spread does, so recall is a "
            f"reading of this spread only); {args.requests} anchors, half uniform and half by sales; "
            "one process, BLAS on one thread as a web process runs it. "
            f"Index built (once per model version, when it is prepared) in {build_s:.1f} s. "
            f"Machine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.\n\n"
            f"{table}\n\nThe index scores the `COMPLEMENT_PROBES` cells of about {round(np.sqrt(args.items)):,} "
            "nearest the anchor's code; below `MODEL_NEIGHBOUR_EXACT` products it scores every code, as before.\n"
        )
        write_section(DOCS / "complements.md", "complement-search", "Complete the look (hm)", body)
    print(
        f"RESULT index_p95_ms={p95:.2f} every_code_p95_ms={np.percentile(before, 95):.2f} "
        f"recall40={recall:.3f} items={args.items}"
    )


if __name__ == "__main__":
    main()
