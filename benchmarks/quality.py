"""Recommendation quality: every visrec model against implicit ALS/BPR and Cornac VBPR.

Usage::

    python benchmarks/quality.py --dataset DIR [--split-date YYYY-MM-DD | --split-fraction F | --split-per-user F]

``DIR`` holds ``items.csv`` (``item_id``, ``image_path``, …) and ``interactions.csv``
(``user_id``, ``item_id``, ``value`` or ``rating``, ``timestamp``). Default split: the
hm protocol (``../shared/datasets/hm/SOURCE.md``: cut at 2020-06-01) for a folder
named ``hm``, else each user's last 20 % (``--split-per-user 0.2``). Users with at
least one test and one training interaction are evaluated; all items are ranked,
the user's training items excluded.

Every image is embedded once with the packaged EfficientNet-Lite0 (cached under
``var/bench-cache/``). Every registered visrec model runs, and so do the peers as
their users run them: ``implicit``'s ALS and BPR directly, and Cornac's VBPR in a
separate venv (``var/peers-venv``, created on first use from
``benchmarks/requirements-peers.txt``; ``--no-cornac`` skips it). Hyper-parameters
of every model, ours and the peers', are picked the same way: on a validation split
cut from the training period only (same kind of split), by Recall@50; the chosen
ones are refitted on the whole training period.

Reports Recall@12/50, NDCG@12/50, coverage@12 and cold-item Recall@50 (items with no
training interaction) with 95 % bootstrap intervals over users, and fit times;
writes a section of ``docs/benchmarks/quality.md`` and ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import DOCS, ROOT, machine, markdown_table, write_section
from _quality_data import Dataset, image_vectors, load_dataset, parse_time, strengths

log = logging.getLogger("visrec.bench.quality")

HM_SPLIT_DATE = "2020-06-01"
K_LIST = (12, 50)
N = max(K_LIST)
PEERS_VENV = ROOT / "var" / "peers-venv"
PEERS_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-peers.txt"

# Small grids, tuned on the validation split. A registered model missing here runs with its defaults.
GRIDS: dict[str, list[dict]] = {
    "recent_popularity": [{"half_life_days": h} for h in (7.0, 30.0, 90.0)],
    "item_knn": [{"k": 100}, {"k": 400}],
    "user_knn": [{"k": 50}, {"k": 200}],
    "als": [{"factors": 64, "regularization": r, "alpha": a} for r in (0.01, 0.1) for a in (1.0, 10.0)],
    "bpr": [{"factors": 64, "learning_rate": lr} for lr in (0.01, 0.05)],
    "sgd_mf": [{}],
    "image_cf": [{}, {"popularity_weight": 0.2, "whiten": 128}],
    "vbpr": [
        {"visual_factors": 32, "epochs": 8, "half_life_days": h, "cold_bias": c}
        for h in (0.0, 60.0)
        for c in (0.0, 2.0)
    ],
    **{
        f"fusion_{mode}": [
            {"epochs": 6, "item_dropout": d, "cold_bias": c} for d, c in ((0.5, 0.0), (0.5, 2.0), (0.2, 2.0))
        ]
        for mode in ("concat", "weighted", "attention")
    },
    # sequence models: one configuration each (picked on benchmarks/sequence_dev.py's cut inside hm's training
    # period); their popularity-prior weight is validated at fit like the other blended models'
    "sasrec": [{"epochs": 20, "lr": 0.003}],
    "gru4rec": [{"epochs": 20, "lr": 0.003}],
}
PEER_GRIDS: dict[str, list[dict]] = {
    "implicit_als": [
        {"factors": 64, "regularization": r, "alpha": a, "iterations": 15} for r in (0.01, 0.1) for a in (1.0, 10.0)
    ],
    "implicit_bpr": [
        {"factors": 64, "learning_rate": lr, "regularization": 0.01, "iterations": 100} for lr in (0.01, 0.05)
    ],
    "cornac_vbpr": [
        {"k": 10, "k2": 20, "n_epochs": 50, "batch_size": 100, "learning_rate": 0.005, "lambda_w": w, "seed": 0}
        for w in (1.0, 0.01)
    ],
}


@dataclass
class Split:
    """Training rows, evaluation targets and the side information of one train/evaluate round."""

    train: sp.csr_matrix
    context: object
    relevant: sp.csr_matrix
    users: np.ndarray
    description: str = ""


@dataclass
class Outcome:
    """One model's test metrics, fit time and chosen parameters."""

    name: str
    kind: str
    metrics: dict
    fit_seconds: float
    params: dict
    tune_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# -- splits ------------------------------------------------------------------------------
def split_masks(data: Dataset, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """``(train, test)`` row masks, a description and how to cut validation inside train."""
    from recommendations.ml.evaluation import fraction_split, per_user_split, temporal_split

    table = (data.users, data.items, data.values, data.timestamps)
    if args.split_date:
        train, test = temporal_split(*table, parse_time(args.split_date))
        share = test.mean() if len(test) else 0.2
        return (
            train,
            test,
            f"temporal: test = interactions on or after {args.split_date}",
            {
                "method": "fraction",
                "fraction": float(min(max(share, 0.05), 0.5)),
            },
        )
    if args.split_fraction:
        train, test = fraction_split(*table, args.split_fraction)
        desc = f"temporal: the last {args.split_fraction:.0%} of all interactions are test"
        return train, test, desc, {"method": "fraction", "fraction": args.split_fraction}
    fraction = args.split_per_user or 0.2
    train, test = per_user_split(*table, fraction)
    desc = f"per user: each user's last {fraction:.0%} of interactions (by time) are test"
    return train, test, desc, {"method": "per_user", "fraction": fraction}


def item_categories(data: Dataset) -> np.ndarray | None:
    """Integer category per item from the first metadata column that has one (-1 = none)."""
    for column in ("category", "product_type_name", "product_group_name", "genre", "genres"):
        values = data.item_meta.get(column)
        if values and any(values):
            names = sorted({v for v in values if v})
            index = {v: n for n, v in enumerate(names)}
            return np.array([index.get(v, -1) for v in values], dtype=np.int64)
    return None


def make_split(data: Dataset, train: np.ndarray, test: np.ndarray, categories, description: str) -> Split:
    """Matrices of one round; relevant = test items the user has not had in training."""
    from recommendations.ml.base import FitContext
    from recommendations.ml.evaluation import interactions_matrix

    shape = (data.n_users, data.n_items)
    strength = interactions_matrix(data.users, data.items, strengths(data), shape, train)
    stamps = interactions_matrix(data.users, data.items, data.timestamps, shape, train, aggregate="max")
    stamps = stamps.astype(np.float64).tocsr()
    now = float(data.timestamps[train].max()) if train.any() else None
    context = FitContext(timestamps=stamps, item_categories=categories, now=now)
    relevant = interactions_matrix(data.users, data.items, np.ones(len(data.users)), shape, test).tocsr()
    relevant = (relevant - relevant.multiply(strength != 0)).tocsr()
    relevant.eliminate_zeros()
    relevant.data[:] = 1.0
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(strength.indptr) > 0))
    return Split(strength.tocsr(), context, relevant, users, description)


# -- models ------------------------------------------------------------------------------
def registered_models() -> dict[str, type]:
    """Every registered recommender (all ``recommendations.ml`` modules imported); duplicates dropped.

    A class whose registered subclass has the same default parameters (e.g. ``fusion``
    and ``fusion_concat``) is the same model and runs once, under the subclass's name.
    """
    import recommendations.ml as package
    from recommendations.ml.base import REGISTRY

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"recommendations.ml.{module.name}")
    models = {}
    for name, cls in sorted(REGISTRY.items()):
        twins = [c for c in REGISTRY.values() if c is not cls and issubclass(c, cls)]
        if any(_defaults(c) == _defaults(cls) for c in twins):
            continue
        models[name] = cls
    return models


def _defaults(cls) -> dict | None:
    try:
        return cls().get_params()
    except TypeError:
        return None


def fit_and_rank(cls, params: dict, split: Split, features: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit on ``split.train``; top-``N`` ids for ``split.users`` (training items filtered)."""
    from recommendations.ml.evaluation import recommend_all

    model = cls(**params)
    started = time.perf_counter()
    model.fit(split.train, features, split.context)
    seconds = time.perf_counter() - started
    return recommend_all(model, split.users, split.train, N), seconds


def measure(recs: np.ndarray, split: Split, n_bootstrap: int) -> dict:
    from recommendations.ml.evaluation import metrics_from_recommendations

    return metrics_from_recommendations(recs, split.relevant[split.users], split.train, K_LIST, n_bootstrap)


def tune(name: str, grid: list[dict], run, val: Split, test: Split, n_bootstrap: int, kind: str) -> Outcome:
    """Pick ``grid``'s best by validation Recall@50, refit on the whole training period, evaluate."""
    started, best, best_recall = time.perf_counter(), grid[0], -1.0
    if len(grid) > 1:
        for params in grid:
            try:
                recs, _ = run(params, val)
            except Exception as e:  # noqa: BLE001 (a failing candidate must not stop the benchmark)
                log.warning("%s %s failed on validation: %s", name, params, e)
                continue
            recall = measure(recs, val, 0)["recall@50"]
            log.info("  %s %s validation recall@50 %.4f", name, params, recall)
            if recall > best_recall:
                best, best_recall = params, recall
    tune_seconds = time.perf_counter() - started
    recs, seconds = run(best, test)
    metrics = measure(recs, test, n_bootstrap)
    log.info("%s: recall@50 %.4f ndcg@12 %.4f fit %.1fs", name, metrics["recall@50"], metrics["ndcg@12"], seconds)
    return Outcome(name, kind, metrics, seconds, best, tune_seconds, {"val_recall50": best_recall})


def without_new_item_prior(cls, params: dict) -> tuple[type, dict] | None:
    """The same model with every prior for items without interactions switched off (None if it has none).

    That is ``cold_bias`` (VBPR, fusion), ``new_item_share`` (image_cf) and the new-item
    share of the validated popularity prior (``recommendations.ml.blend``).
    """
    from recommendations.ml.blend import PriorBlended

    defaults = _defaults(cls) or {}
    changed = {k: 0.0 for k in ("cold_bias", "new_item_share") if k in defaults}
    blended = issubclass(cls, PriorBlended) and cls.new_item_prior
    if not changed and not blended:
        return None
    if blended:
        cls = type(f"{cls.__name__}NoNewItemPrior", (cls,), {"new_item_prior": False})
    return cls, {**params, **changed}


def ablation(outcome: Outcome, cls, features: np.ndarray, test: Split, n_bootstrap: int) -> Outcome | None:
    """``outcome``'s model refitted with its chosen parameters but no new-item prior (a ``_noprior`` row)."""
    variant = without_new_item_prior(cls, outcome.params)
    if variant is None:
        return None
    recs, seconds = fit_and_rank(*variant, test, features)
    metrics = measure(recs, test, n_bootstrap)
    log.info(
        "%s_noprior: recall@50 %.4f cold %.4f", outcome.name, metrics["recall@50"], _num(metrics["cold_recall@50"])
    )
    return Outcome(f"{outcome.name}_noprior", "ablation", metrics, seconds, variant[1])


# -- peers -------------------------------------------------------------------------------
def implicit_runner(which: str):
    """Implicit's ALS or BPR exactly as its README uses it (fit on user_items, recommend)."""

    def run(params: dict, split: Split) -> tuple[np.ndarray, float]:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        cls = AlternatingLeastSquares if which == "als" else BayesianPersonalizedRanking
        with threadpool_limits(1, "blas"):
            model = cls(**params, random_state=0)
            started = time.perf_counter()
            model.fit(split.train, show_progress=False)
            seconds = time.perf_counter() - started
            ids, _ = model.recommend(split.users, split.train[split.users], N=N, filter_already_liked_items=True)
        return np.asarray(ids, dtype=np.int64), seconds

    return run


def peers_python() -> Path:
    """The peers venv's interpreter; created on first use (reuses this venv's packages via a .pth)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == PEERS_REQUIREMENTS.read_text():
        return python
    import sysconfig

    log.info("creating %s (Cornac) from %s", PEERS_VENV, PEERS_REQUIREMENTS.name)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(site, "_visrec_main.pth").write_text("\n".join(ours) + "\n")  # torch, numpy, scipy: same as ours
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(PEERS_REQUIREMENTS.read_text())
    return python


def cornac_runner(features: np.ndarray):
    """Cornac VBPR in the peers venv; one subprocess per call with every job of the call."""

    def run_many(jobs: list[tuple[dict, Split]]) -> list[tuple[np.ndarray, float]]:
        python = peers_python()
        with tempfile.TemporaryDirectory(prefix="visrec-cornac-") as tmp:
            arrays = {"features": features}
            for n, (_, split) in enumerate(jobs):
                coo = split.train.tocoo()
                arrays.update({f"{n}_users": coo.row, f"{n}_items": coo.col, f"{n}_values": coo.data})
                arrays[f"{n}_eval"] = split.users
            meta = [{"params": params, "N": N} for params, _ in jobs]
            np.savez(Path(tmp, "in.npz"), jobs=np.array(json.dumps(meta)), **arrays)
            script = Path(__file__).resolve().parent / "_cornac_peer.py"
            subprocess.run([str(python), str(script), str(Path(tmp, "in.npz")), str(Path(tmp, "out.npz"))], check=True)
            with np.load(Path(tmp, "out.npz")) as out:
                return [(out[f"{n}_recs"], float(out[f"{n}_seconds"])) for n in range(len(jobs))]

    return run_many


def tune_cornac(grid: list[dict], runner, val: Split, test: Split, n_bootstrap: int) -> Outcome:
    """As :func:`tune`, with every validation fit in one subprocess."""
    started = time.perf_counter()
    results = runner([(params, val) for params in grid]) if len(grid) > 1 else []
    scores = [measure(recs, val, 0)["recall@50"] for recs, _ in results]
    best = grid[int(np.argmax(scores))] if scores else grid[0]
    tune_seconds = time.perf_counter() - started
    ((recs, seconds),) = runner([(best, test)])
    metrics = measure(recs, test, n_bootstrap)
    log.info("cornac_vbpr: recall@50 %.4f fit %.1fs", metrics["recall@50"], seconds)
    return Outcome(
        "cornac_vbpr", "peer", metrics, seconds, best, tune_seconds, {"val_recall50": max(scores, default=-1)}
    )


# -- report ------------------------------------------------------------------------------
COLUMNS = [("recall@12", "Recall@12"), ("recall@50", "Recall@50"), ("ndcg@12", "NDCG@12"), ("ndcg@50", "NDCG@50")]


def cell(metrics: dict, key: str) -> str:
    value, low, high = metrics.get(key), metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    if value is None or value != value:
        return "n/a"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]" if low is not None else f"{value:.4f}"


def table(outcomes: list[Outcome]) -> str:
    headers = ["model", "kind", *(label for _, label in COLUMNS), "Coverage@12", "cold Recall@50", "fit s", "params"]
    rows = []
    for o in sorted(outcomes, key=lambda o: -o.metrics["recall@50"]):
        row = [o.name, o.kind, *(cell(o.metrics, key) for key, _ in COLUMNS)]
        row += [f"{o.metrics['coverage@12']:.4f}", cell(o.metrics, "cold_recall@50"), f"{o.fit_seconds:.1f}"]
        rows.append([*row, "`" + json.dumps(o.params, sort_keys=True) + "`"])
    return markdown_table(headers, rows)


def result_line(outcomes: list[Outcome]) -> str:
    ours = max((o for o in outcomes if o.kind == "visrec"), key=lambda o: o.metrics["recall@50"])
    peers = [o for o in outcomes if o.kind == "peer"]
    peer = max(peers, key=lambda o: o.metrics["recall@50"]) if peers else None
    line = (
        f"RESULT best={ours.name} recall50={ours.metrics['recall@50']:.4f} ndcg12={ours.metrics['ndcg@12']:.4f} "
        f"cold_recall50={_num(ours.metrics.get('cold_recall@50')):.4f}"
    )
    if peer is None:
        return line + " peer=none peer_recall50=nan peer_ndcg12=nan"
    return line + (
        f" peer={peer.name} peer_recall50={peer.metrics['recall@50']:.4f} peer_ndcg12={peer.metrics['ndcg@12']:.4f}"
    )


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def report(args, data: Dataset, test: Split, val: Split, outcomes: list[Outcome], seconds: dict, command: str) -> str:
    n_train = test.train.nnz
    cold = np.bincount(test.train.indices, minlength=data.n_items) == 0
    n_cold = int(cold.sum())
    relevant = test.relevant[test.users]
    cold_share = cold[relevant.indices].mean() if relevant.nnz else 0.0
    lines = [
        f"## {data.name}",
        "",
        f"Command: `{command}`",
        "",
        f"- Dataset: {data.n_users:,} users, {data.n_items:,} items, {len(data.users):,} interaction rows "
        f"({n_train:,} distinct training user–item pairs); {n_cold:,} items have no training interaction.",
        f"- Split: {test.description}. Evaluated users: {len(test.users):,} (≥ 1 test item not had in training, "
        f"≥ 1 training item); {test.relevant[test.users].nnz:,} relevant pairs. All {data.n_items:,} items ranked, "
        "the user's training items excluded.",
        f"- Tuning: {val.description}; {len(val.users):,} validation users; best of each small grid by "
        "Recall@50, then refitted on the whole training period. Peers tuned the same way.",
        f"- Image vectors: efficientnet_lite0 (packaged) for every item; {seconds['embed']:.0f} s in this run "
        "(cached under `var/bench-cache/` after the first run, ~60 images/s on 2 CPUs).",
        f"- Machine: {machine()} (every torch model, ours and Cornac's, on one thread: faster on this machine). "
        f"Total fit time of the final models: {seconds['fit']:.0f} s; tuning: {seconds['tune']:.0f} s; "
        f"whole run {seconds['total']:.0f} s. `fit s` = the final fit on the whole training period.",
        f"- Cells: mean [95 % bootstrap interval over users, {args.bootstrap} resamples]. Cold = items with no "
        f"training interaction (averaged over users with at least one cold relevant item); {cold_share:.0%} of "
        "the relevant test pairs are on cold items, which implicit and Cornac cannot rank at all.",
        "- `cold_bias` is a fixed prior for items without interactions (new arrivals), tuned on validation like "
        "any other parameter. Where every catalogued item sells at some time (as in hm), an item without a "
        "training interaction is sure to sell later, so this prior is worth more here than in a catalogue that "
        "also holds products that never sell.",
        "- item_knn, user_knn, als, bpr, sgd_mf, visual_similarity, image_cf and the fusion models blend in a "
        "popularity prior whose weight and recency (and a few of their own parameters left unset) each model "
        "validates on the newest 20 % of its own training data at fit time (`recommendations/ml/blend.py`); for "
        "the image-based ones that prior also gives items without interactions a share, estimated from how much of "
        "the recent history went to new items.",
        "- Rows of kind `ablation` (`<model>_noprior`) are the model above refitted with the parameters it chose, "
        "but with every prior for items without interactions switched off (`cold_bias`, image_cf's "
        "`new_item_share`, the popularity prior's new-item share): what is left is what the images and the "
        "interactions themselves do. They never count as `best`.",
        f"- Interaction strength: {_strength_note(data)}",
        "",
        table(outcomes),
        "",
        "```",
        result_line(outcomes),
        "```",
    ]
    return "\n".join(lines)


def _strength_note(data: Dataset) -> str:
    if data.extra.get("value_column") == "rating":
        return (
            "explicit ratings; the lowest rating counts as a weak 1/(span+1), the highest as 1 "
            "(`_quality_data.strengths`); every test rating is a relevant item."
        )
    return "the `value` column as it is (1 when missing); repeated rows add up."


def _torch_threads(n: int) -> None:
    """Small minibatches gain nothing from a second thread on a 2-core machine (measured: 2x slower)."""
    import torch

    torch.set_num_threads(n)


# -- main --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ROOT.parent / "shared" / "datasets" / "hm"
    parser.add_argument(
        "--dataset", type=Path, required=not default.is_dir(), default=default, help=f"default: {default}"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split-date", help="test = interactions on or after this date (YYYY-MM-DD)")
    group.add_argument("--split-fraction", type=float, help="test = the last F of all interactions by time")
    group.add_argument("--split-per-user", type=float, help="test = each user's last F of interactions")
    parser.add_argument("--no-cornac", action="store_true", help="skip Cornac VBPR (and the peers venv)")
    parser.add_argument("--no-peers", action="store_true", help="skip every peer (implicit and Cornac)")
    parser.add_argument("--models", help="comma-separated visrec model names (default: every registered one)")
    parser.add_argument("--no-tune", action="store_true", help="first grid entry only (quick runs)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the `_noprior` rows (no new-item prior)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "bench-cache")
    parser.add_argument("--out", type=Path, default=DOCS / "quality.md")
    args = parser.parse_args(argv)
    if not (args.split_date or args.split_fraction or args.split_per_user):
        if args.dataset.resolve().name == "hm":
            args.split_date = HM_SPLIT_DATE
        else:
            args.split_per_user = 0.2
    return args


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark; returns the ``RESULT`` line (also printed last)."""
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    started = time.perf_counter()
    data = load_dataset(args.dataset)
    log.info("%s: %d users, %d items, %d rows", data.name, data.n_users, data.n_items, len(data.users))
    features = image_vectors(data, args.cache_dir, ROOT / "var" / "cache")
    embed_seconds = time.perf_counter() - started
    _torch_threads(1)

    from recommendations.ml.evaluation import validation_split

    train, test_mask, description, val_how = split_masks(data, args)
    categories = item_categories(data)
    test = make_split(data, train, test_mask, categories, description)
    table_ = (data.users, data.items, data.values, data.timestamps)
    fit_mask, val_mask = validation_split(*table_, train, **val_how)
    val_desc = f"validation = the training period's last {val_how['fraction']:.0%}" + (
        " per user" if val_how["method"] == "per_user" else " (temporal)"
    )
    val = make_split(data, fit_mask, val_mask, categories, val_desc)
    log.info("test users %d, validation users %d", len(test.users), len(val.users))

    outcomes = []
    models = registered_models()
    chosen = args.models.split(",") if args.models else list(models)
    for name in chosen:
        grid = GRIDS.get(name, [{}])[: 1 if args.no_tune else None]

        def run(params, split, cls=models[name]):
            return fit_and_rank(cls, params, split, features)

        try:
            outcomes.append(tune(name, grid, run, val, test, args.bootstrap, "visrec"))
            if not args.no_ablation:
                outcomes.append(ablation(outcomes[-1], models[name], features, test, args.bootstrap))
        except Exception as e:  # noqa: BLE001 (one broken model must not hide the others' results)
            log.error("%s failed and is left out of the report: %r", name, e)
        outcomes = [o for o in outcomes if o is not None]
    if not args.no_peers:
        for which in ("als", "bpr"):
            grid = PEER_GRIDS[f"implicit_{which}"][: 1 if args.no_tune else None]
            outcomes.append(tune(f"implicit_{which}", grid, implicit_runner(which), val, test, args.bootstrap, "peer"))
        if not args.no_cornac:
            grid = PEER_GRIDS["cornac_vbpr"][: 1 if args.no_tune else None]
            outcomes.append(tune_cornac(grid, cornac_runner(features), val, test, args.bootstrap))

    seconds = {
        "embed": embed_seconds,
        "fit": sum(o.fit_seconds for o in outcomes),
        "tune": sum(o.tune_seconds for o in outcomes),
        "total": time.perf_counter() - started,
    }
    command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = report(args, data, test, val, outcomes, seconds, command)
    print(table(outcomes))
    write_section(args.out, f"quality-{data.name}", "Recommendation quality", body)
    line = result_line(outcomes)
    print(line)
    return line


if __name__ == "__main__":
    main()
