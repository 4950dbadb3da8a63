"""Development numbers for the sequence models on a cut inside hm's training period.

Usage::

    python benchmarks/sequence_dev.py [--dataset DIR] [--fit-before 2020-03-01] [--until 2020-06-01]
                                      [--configs JSON] [--out docs/benchmarks/sequence-dev.md]

Models are fitted on the interactions before ``--fit-before`` and evaluated on those
from then until ``--until`` (exclusive; default: hm's test split date, so the hm test
period, 2020-06-01 onwards, is never read into a metric). Every configuration of
``--configs`` (default: :data:`CONFIGS`) runs beside popularity and recent popularity,
with the quality benchmark's metrics (Recall@12/50, NDCG@12, cold-item Recall@50; the
user's training items excluded). This is where the sequence models' hyper-parameters
and the grids in ``benchmarks/quality.py`` were chosen. Prints a table; with ``--out``
writes it as a section of that file; ends with a ``RESULT`` line for the best sequence
configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time

import numpy as np
from _common import ROOT, machine, markdown_table, write_section
from _quality_data import image_vectors, load_dataset, parse_time, strengths

log = logging.getLogger("visrec.bench.sequence_dev")

#: Configurations tried by default: (model name, parameters).
CONFIGS: list[tuple[str, dict]] = [
    ("popularity", {}),
    ("recent_popularity", {"half_life_days": 30.0}),
    ("sasrec", {}),
    ("gru4rec", {}),
]


def dev_split(data, fit_before: float, until: float):
    """Training matrices before ``fit_before``; relevant = new items bought in ``[fit_before, until)``."""
    from recommendations.ml.base import FitContext
    from recommendations.ml.evaluation import interactions_matrix

    train = data.timestamps < fit_before
    test = (data.timestamps >= fit_before) & (data.timestamps < until)
    shape = (data.n_users, data.n_items)
    strength = interactions_matrix(data.users, data.items, strengths(data), shape, train)
    stamps = interactions_matrix(data.users, data.items, data.timestamps, shape, train, aggregate="max")
    context = FitContext(timestamps=stamps.astype(np.float64).tocsr(), now=float(data.timestamps[train].max()))
    relevant = interactions_matrix(data.users, data.items, np.ones(len(data.users)), shape, test).tocsr()
    relevant = (relevant - relevant.multiply(strength != 0)).tocsr()
    relevant.eliminate_zeros()
    relevant.data[:] = 1.0
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(strength.indptr) > 0))
    return strength.tocsr(), context, relevant, users


def run(name: str, params: dict, split, features: np.ndarray) -> dict:
    """Fit one configuration and measure it."""
    import recommendations.ml.popularity  # noqa: F401 (registers the baselines)
    import recommendations.ml.sequence  # noqa: F401
    from recommendations.ml.base import REGISTRY
    from recommendations.ml.evaluation import metrics_from_recommendations, recommend_all

    train, context, relevant, users = split
    model = REGISTRY[name](**params)
    started = time.perf_counter()
    model.fit(train, features, context)
    seconds = time.perf_counter() - started
    recs = recommend_all(model, users, train, 50)
    metrics = metrics_from_recommendations(recs, relevant[users], train, (12, 50), n_bootstrap=200)
    chosen = {"prior_weight": getattr(model, "weight", None)} if name in ("sasrec", "gru4rec") else {}
    log.info("%s %s: recall@50 %.4f (%.0f s)", name, params, metrics["recall@50"], seconds)
    return {"name": name, "params": {**params, **chosen}, "metrics": metrics, "seconds": seconds}


def table(rows: list[dict]) -> str:
    def cell(m: dict, key: str) -> str:
        value = m.get(key)
        if value is None or value != value:
            return "n/a"
        low, high = m.get(f"{key}_low"), m.get(f"{key}_high")
        return f"{value:.4f} [{low:.4f}, {high:.4f}]" if low is not None else f"{value:.4f}"

    headers = ["model", "params", "Recall@12", "Recall@50", "NDCG@12", "cold Recall@50", "fit s"]
    body = [
        [r["name"], "`" + json.dumps(r["params"], sort_keys=True) + "`"]
        + [cell(r["metrics"], k) for k in ("recall@12", "recall@50", "ndcg@12", "cold_recall@50")]
        + [f"{r['seconds']:.0f}"]
        for r in rows
    ]
    return markdown_table(headers, body)


def section(title: str, script: str, argv: list[str] | None, intro: str, text: str, line: str) -> str:
    """A report section: title, the command that made it, what was measured, the table, the RESULT line."""
    command = f"python benchmarks/{script} " + shlex.join(argv if argv is not None else sys.argv[1:])  # copy-pastable
    return "\n".join([f"## {title}", "", f"Command: `{command}`", "", intro, "", text, "", "```", line, "```"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "hm"))
    parser.add_argument("--fit-before", default="2020-03-01")
    parser.add_argument("--until", default="2020-06-01", help="end of the evaluation window (exclusive)")
    parser.add_argument("--configs", help='JSON list of [name, params] pairs, e.g. [["sasrec", {"epochs": 20}]]')
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", help="markdown file to write the table into (a section of its own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    """Run the configurations; returns the ``RESULT`` line."""
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    features = image_vectors(data, ROOT / "var" / "bench-cache", ROOT / "var" / "cache")
    split = dev_split(data, parse_time(args.fit_before), parse_time(args.until))
    log.info("dev: %d training pairs, %d evaluated users", split[0].nnz, len(split[3]))
    configs = [tuple(c) for c in json.loads(args.configs)] if args.configs else CONFIGS
    rows = [run(name, params, split, features) for name, params in configs]
    text = table(rows)
    print(text)
    sequence = [r for r in rows if r["name"] in ("sasrec", "gru4rec")] or rows
    best = max(sequence, key=lambda r: r["metrics"]["recall@50"])
    line = (
        f"RESULT dev_best={best['name']} params={json.dumps(best['params'], sort_keys=True)} "
        f"recall50={best['metrics']['recall@50']:.4f} ndcg12={best['metrics']['ndcg@12']:.4f}"
    )
    if args.out:
        intro = (
            f"Fit on interactions before {args.fit_before}, evaluated on {args.fit_before} ≤ t < {args.until} "
            f"(inside hm's training period; the test period is never read). {len(split[3]):,} users; "
            f"machine: {machine()}."
        )
        body = section("Sequence models on a development cut of hm", "sequence_dev.py", argv, intro, text, line)
        write_section(ROOT / args.out, "sequence-dev", "Sequence models (development)", body)
    print(line)
    return line


if __name__ == "__main__":
    main()
