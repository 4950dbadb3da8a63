"""Recommendation quality (contract version 2): every visrec model against its peers, all chosen on validation.

Usage::

    python benchmarks/quality.py --dataset DIR [--split-date YYYY-MM-DD | --split-fraction F | --split-per-user F]

``DIR`` holds ``items.csv`` (``item_id``, ``image_path``, …) and ``interactions.csv``
(``user_id``, ``item_id``, ``value`` or ``rating``, ``timestamp``). Default split: the
hm protocol (``../shared/datasets/hm/SOURCE.md``: cut at 2020-06-01) for a folder
named ``hm``, else each user's last 20 % (``--split-per-user 0.2``). Users with at
least one test and one training interaction are evaluated; all items are ranked,
the user's training items excluded.

The contract:

- Every image is embedded once with the packaged EfficientNet-Lite0 (cached under
  ``var/bench-cache/``); every contender that uses images gets the vectors of *every*
  catalogue item.
- Contenders: every registered visrec model, and the peers as their users run them:
  popularity and recent popularity, ``implicit``'s ALS and BPR, Cornac's VBPR (in a
  separate venv, ``var/peers-venv``, created on first use from
  ``benchmarks/requirements-peers.txt``; ``--no-cornac`` skips it). Cornac scores
  items without interactions from its learned visual parameters.
- Every choice is made on a validation cut of the training period (same kind of
  split), by Recall@50: each contender tries at most :data:`BUDGET` configurations
  (:data:`GRIDS`), and on each the same popularity-prior blend
  (:func:`recommendations.ml.blend.choose_blend`: weight 0 first, so the plain scores
  win unless a prior helps) is offered, the same way to ours and to the peers. The
  chosen configuration is refitted on the whole training period.
- ``best`` is the visrec model with the highest *validation* Recall@50 (what visrec's
  own training activates); the reported peer is the strongest peer *on the test
  period*. ``diff_lo`` is the lower end of the 95 % paired bootstrap interval (per
  user, 1,000 resamples) of best − peer on Recall@50.
- ``<model>_noprior`` rows (kind ``ablation``) refit the chosen configuration with
  the prior, ``cold_bias`` and the freshness bias off.

``--dev`` drops the test period before anything else and evaluates on the validation
cut instead (with a validation cut inside it): for developing models without ever
looking at the test period.

Reports Recall@12/50, NDCG@12/50, coverage@12 and cold-item Recall@50 (items with no
training interaction) with 95 % bootstrap intervals over users, validation Recall@50
and fit times; writes a section of ``docs/benchmarks/quality.md`` and ends with one
``RESULT`` line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import DOCS, ROOT, machine, markdown_table, write_section
from _quality_data import Dataset, image_vectors, load_dataset, parse_time, strengths
from _quality_runners import cornac_many, implicit_runner, visrec_runner

log = logging.getLogger("visrec.bench.quality")

HM_SPLIT_DATE = "2020-06-01"
K_LIST = (12, 50)
N = max(K_LIST)
#: Most configurations any contender tries on validation, ours and the peers' alike.
BUDGET = 4
#: Most validation users scored per configuration (a seeded sample beyond).
MAX_VALIDATION_USERS = 2000
#: Registered models that are the peers' baselines, not visrec's own contenders.
PEER_MODELS = ("popularity", "recent_popularity")

# At most BUDGET configurations each, every tuned parameter given (nothing validated again inside a fit).
# A registered model missing here tries the first BUDGET combinations of its ``tuned_params``.
_ALS = [{"factors": 64, "regularization": r, "alpha": a, "iterations": 15} for r in (0.01, 0.1) for a in (1.0, 10.0)]
_BPR = [
    {"factors": 64, "learning_rate": lr, "regularization": reg, "iterations": 100}
    for lr, reg in ((0.01, 0.01), (0.05, 0.01), (0.01, 0.001), (0.05, 0.001))
]
GRIDS: dict[str, list[dict]] = {
    "popularity": [{}],
    "recent_popularity": [{"half_life_days": h} for h in (7.0, 14.0, 30.0, 90.0)],
    "item_knn": [{"k": k, "shrink": s} for k in (100, 400) for s in (10.0, 100.0)],
    "user_knn": [{"k": k, "shrink": s} for k in (50, 200) for s in (10.0, 100.0)],
    "als": [{**c, "random_state": 0} for c in _ALS],  # the same solver and grid as the implicit_als peer
    "bpr": [{**c, "random_state": 0} for c in _BPR],
    "sgd_mf": [{"factors": f} for f in (32, 8)],
    "visual_similarity": [{"whiten": w} for w in (128, 0)],
    "image_cf": [{"whiten": w, "half_life_days": h} for w in (128, 0) for h in (365.0, 90.0)],
    # the hybrids also try their collaborative part alone (no visual factors, no similarity channel)
    "vbpr": [{"epochs": 8, "visual_factors": v, "half_life_days": h} for v in (32, 0) for h in (0.0, 60.0)],
    **{
        f"fusion_{mode}": [{"epochs": 5, "item_dropout": 0.5}, {"epochs": 5, "item_dropout": 0.2, "sim_dims": 0}]
        for mode in ("concat", "weighted", "attention")
    },
    # sequence models: one configuration each (picked on benchmarks/sequence_dev.py's cut inside hm's training
    # period); their popularity-prior weight is validated at fit like the other blended models'
    "sasrec": [{"epochs": 20, "lr": 0.003}],
    "gru4rec": [{"epochs": 20, "lr": 0.003}],
}
PEER_GRIDS: dict[str, list[dict]] = {
    "implicit_als": [{**c, "random_state": 0} for c in _ALS],
    "implicit_bpr": [{**c, "random_state": 0} for c in _BPR],
    "cornac_vbpr": [
        {"k": 10, "k2": 20, "n_epochs": e, "batch_size": 256, "learning_rate": 0.005, "lambda_w": w, "seed": 0}
        for e, w in ((20, 1.0), (20, 0.01))
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
    priors: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """One contender's test metrics, fit time and chosen configuration."""

    name: str
    kind: str
    metrics: dict
    fit_seconds: float
    params: dict
    tune_seconds: float = 0.0
    val_recall50: float = float("nan")
    per_user_recall50: np.ndarray = field(default_factory=lambda: np.zeros(0))


# -- splits ------------------------------------------------------------------------------
def split_masks(data: Dataset, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """``(train, test)`` row masks, a description and how to cut validation inside train."""
    from recommendations.ml.evaluation import fraction_split, per_user_split, temporal_split

    table = (data.users, data.items, data.values, data.timestamps)
    if args.split_date:
        train, test = temporal_split(*table, parse_time(args.split_date))
        share = test.mean() if len(test) else 0.2
        desc = f"temporal: test = interactions on or after {args.split_date}"
        return train, test, desc, {"method": "fraction", "fraction": float(min(max(share, 0.05), 0.5))}
    if args.split_fraction:
        train, test = fraction_split(*table, args.split_fraction)
        desc = f"temporal: the last {args.split_fraction:.0%} of all interactions are test"
        return train, test, desc, {"method": "fraction", "fraction": args.split_fraction}
    fraction = args.split_per_user or 0.2
    train, test = per_user_split(*table, fraction)
    desc = f"per user: each user's last {fraction:.0%} of interactions (by time) are test"
    return train, test, desc, {"method": "per_user", "fraction": fraction}


def drop_rows(data: Dataset, keep: np.ndarray) -> None:
    """Forget every interaction row outside ``keep`` (the catalogue and the users stay)."""
    for name in ("users", "items", "values", "timestamps"):
        setattr(data, name, getattr(data, name)[keep])


def make_split(data: Dataset, train: np.ndarray, test: np.ndarray, description: str) -> Split:
    """Matrices of one round; relevant = test items the user has not had in training."""
    from recommendations.ml.base import FitContext
    from recommendations.ml.blend import PRIOR_HALF_LIVES, prior_options
    from recommendations.ml.evaluation import interactions_matrix

    shape = (data.n_users, data.n_items)
    strength = interactions_matrix(data.users, data.items, strengths(data), shape, train)
    stamps = interactions_matrix(data.users, data.items, data.timestamps, shape, train, aggregate="max")
    stamps = stamps.astype(np.float64).tocsr()
    now = float(data.timestamps[train].max()) if train.any() else None
    context = FitContext(timestamps=stamps, now=now)
    relevant = interactions_matrix(data.users, data.items, np.ones(len(data.users)), shape, test).tocsr()
    relevant = (relevant - relevant.multiply(strength != 0)).tocsr()
    relevant.eliminate_zeros()
    relevant.data[:] = 1.0
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(strength.indptr) > 0))
    strength = strength.tocsr()
    priors = prior_options(strength, context, PRIOR_HALF_LIVES)
    return Split(strength, context, relevant, users, description, priors)


# -- contenders --------------------------------------------------------------------------
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


def grid_of(name: str, cls) -> list[dict]:
    """The configurations ``name`` tries (at most :data:`BUDGET`)."""
    if name in GRIDS:
        return GRIDS[name][:BUDGET]
    combos: list[dict] = [{}]
    for param, options in getattr(cls, "tuned_params", {}).items():
        combos = [{**c, param: v} for c in combos for v in options]
    return combos[:BUDGET]


def validation_users(split: Split) -> np.ndarray:
    users = split.users
    if len(users) > MAX_VALIDATION_USERS:
        users = np.sort(np.random.default_rng(0).choice(users, MAX_VALIDATION_USERS, replace=False))
    return users


def blended_top(personal: np.ndarray, split: Split, users: np.ndarray, weight: float, key) -> np.ndarray:
    """Top-``N`` ids after the chosen blend, training items filtered."""
    from recommendations.ml.base import top_n
    from recommendations.ml.blend import blend

    prior = split.priors[key] if weight and key is not None else np.zeros(0, np.float32)
    scores = np.array(blend(personal, prior, weight), dtype=np.float32, copy=True)
    rows, cols = split.train[users].nonzero()
    scores[rows, cols] = -np.inf
    return top_n(scores, N)[0]


def measure(recs: np.ndarray, split: Split, n_bootstrap: int) -> tuple[dict, np.ndarray]:
    """Metrics with bootstrap intervals, and the per-user Recall@50 (for the paired bootstrap)."""
    from recommendations.ml.evaluation import metrics_from_recommendations, recall_at_k

    relevant = split.relevant[split.users]
    metrics = metrics_from_recommendations(recs, relevant, split.train, K_LIST, n_bootstrap)
    return metrics, recall_at_k(recs, relevant, N)


def choose(name: str, grid: list[dict], fit, val: Split) -> tuple[dict, float, tuple | None, float]:
    """The configuration and blend with the best validation Recall@50 (ties: the earlier, plainer one)."""
    from recommendations.ml.blend import PRIOR_WEIGHTS, choose_blend

    users = validation_users(val)
    seen, wanted = val.train[users], val.relevant[users]
    best, best_recall = (grid[0], 0.0, None), -1.0
    for params in grid:
        try:
            scorer, _ = fit(params, val)
            personal = scorer(users)
        except Exception as e:  # noqa: BLE001 (a failing candidate must not stop the benchmark)
            log.warning("%s %s failed on validation: %s", name, params, e)
            continue
        weight, key, recall = choose_blend(personal, val.priors, PRIOR_WEIGHTS, seen, wanted, N)
        log.info("  %s %s validation recall@50 %.4f (prior weight %s, %s)", name, params, recall, weight, key)
        if recall > best_recall + 1e-9:
            best, best_recall = (params, weight, key), recall
    return (*best, best_recall)


def evaluate_choice(name, kind, fit, params, weight, key, test: Split, n_bootstrap: int) -> tuple[Outcome, np.ndarray]:
    """Refit the chosen configuration on the whole training period and measure it on the test period."""
    scorer, seconds = fit(params, test)
    personal = scorer(test.users)
    metrics, per_user = measure(blended_top(personal, test, test.users, weight, key), test, n_bootstrap)
    shown = {**params, "prior_weight": weight}
    if weight and key is not None:
        shown |= {"prior_half_life": key[0], "prior_new_items": key[1]}
    log.info("%s: recall@50 %.4f ndcg@12 %.4f fit %.1fs", name, metrics["recall@50"], metrics["ndcg@12"], seconds)
    return Outcome(name, kind, metrics, seconds, shown, per_user_recall50=per_user), personal


def tune(
    name: str, kind: str, grid: list[dict], fit, val: Split, test: Split, n_bootstrap: int
) -> tuple[Outcome, np.ndarray]:
    """:func:`choose` on validation, then :func:`evaluate_choice` on the test period (also its personal scores)."""
    started = time.perf_counter()
    params, weight, key, val_recall = choose(name, grid, fit, val)
    tune_seconds = time.perf_counter() - started
    outcome, personal = evaluate_choice(name, kind, fit, params, weight, key, test, n_bootstrap)
    outcome.tune_seconds, outcome.val_recall50 = tune_seconds, val_recall
    return outcome, personal


def plain_params(cls, params: dict) -> dict:
    """``params`` with every fixed prior for items without interactions and the freshness bias off."""
    defaults = _defaults(cls) or {}
    off = {k: v for k, v in (("cold_bias", 0.0), ("freshness", False)) if k in defaults}
    return {**params, **off}


def ablation(
    outcome: Outcome, personal: np.ndarray, cls, features: np.ndarray, test: Split, n_bootstrap: int
) -> Outcome:
    """``outcome``'s configuration refitted with no prior, no ``cold_bias``, no freshness bias (a ``_noprior`` row).

    ``personal`` are the chosen configuration's scores before the blend: reused (no refit)
    where the configuration has no ``cold_bias`` or freshness bias to switch off.
    """
    chosen = {k: v for k, v in outcome.params.items() if not k.startswith("prior_")}
    params, seconds = plain_params(cls, chosen), 0.0
    if params != chosen:
        scorer, seconds = visrec_runner(cls, features)(params, test)
        personal = scorer(test.users)
    metrics, per_user = measure(blended_top(personal, test, test.users, 0.0, None), test, n_bootstrap)
    log.info(
        "%s_noprior: recall@50 %.4f cold %.4f", outcome.name, metrics["recall@50"], _num(metrics["cold_recall@50"])
    )
    return Outcome(f"{outcome.name}_noprior", "ablation", metrics, seconds, params, per_user_recall50=per_user)


def tune_cornac(grid: list[dict], features: np.ndarray, val: Split, test: Split, n_bootstrap: int) -> Outcome:
    """As :func:`tune`, with every validation fit in one Cornac subprocess and the final fit in another."""
    started = time.perf_counter()
    users = validation_users(val)
    results = cornac_many(features, [(params, val, users) for params in grid])
    cache = {json.dumps(p, sort_keys=True): r for p, r in zip(grid, results, strict=True)}

    def fit_val(params, split):
        scores, seconds = cache[json.dumps(params, sort_keys=True)]
        return (lambda rows: scores[np.searchsorted(users, rows)]), seconds

    params, weight, key, val_recall = choose("cornac_vbpr", grid, fit_val, val)
    tune_seconds = time.perf_counter() - started

    def fit_test(params, split):
        ((scores, seconds),) = cornac_many(features, [(params, split, split.users)])
        return (lambda rows: scores[np.searchsorted(split.users, rows)]), seconds

    outcome, _ = evaluate_choice("cornac_vbpr", "peer", fit_test, params, weight, key, test, n_bootstrap)
    outcome.tune_seconds, outcome.val_recall50 = tune_seconds, val_recall
    return outcome


# -- report ------------------------------------------------------------------------------
COLUMNS = [("recall@12", "Recall@12"), ("recall@50", "Recall@50"), ("ndcg@12", "NDCG@12"), ("ndcg@50", "NDCG@50")]


def cell(metrics: dict, key: str) -> str:
    value, low, high = metrics.get(key), metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    if value is None or value != value:
        return "n/a"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]" if low is not None else f"{value:.4f}"


def table(outcomes: list[Outcome]) -> str:
    headers = ["model", "kind", "val Recall@50", *(label for _, label in COLUMNS), "Coverage@12", "cold Recall@50"]
    headers += ["fit s", "params"]
    rows = []
    for o in sorted(outcomes, key=lambda o: -o.metrics["recall@50"]):
        val = f"{o.val_recall50:.4f}" if o.val_recall50 == o.val_recall50 else "–"
        row = [o.name, o.kind, val, *(cell(o.metrics, key) for key, _ in COLUMNS)]
        row += [f"{o.metrics['coverage@12']:.4f}", cell(o.metrics, "cold_recall@50"), f"{o.fit_seconds:.1f}"]
        rows.append([*row, "`" + json.dumps(o.params, sort_keys=True) + "`"])
    return markdown_table(headers, rows)


def pick_best(outcomes: list[Outcome]) -> Outcome:
    """The visrec model with the highest validation Recall@50 (first on ties): never by a test number."""
    ours = [o for o in outcomes if o.kind == "visrec"]
    return max(ours, key=lambda o: o.val_recall50 if o.val_recall50 == o.val_recall50 else -1.0)


def pick_peer(outcomes: list[Outcome]) -> Outcome | None:
    """The strongest peer on the test period (the comparison can only get harder for us)."""
    peers = [o for o in outcomes if o.kind == "peer"]
    return max(peers, key=lambda o: o.metrics["recall@50"]) if peers else None


def result_line(outcomes: list[Outcome], n_bootstrap: int = 1000) -> str:
    from recommendations.ml.evaluation import paired_bootstrap_diff

    best, peer = pick_best(outcomes), pick_peer(outcomes)
    line = (
        f"RESULT best={best.name} recall50={best.metrics['recall@50']:.4f} ndcg12={best.metrics['ndcg@12']:.4f} "
        f"cold_recall50={_num(best.metrics.get('cold_recall@50')):.4f}"
    )
    if peer is None:
        return line + " peer=none peer_recall50=nan peer_ndcg12=nan diff_lo=nan"
    _, low, _ = paired_bootstrap_diff(best.per_user_recall50, peer.per_user_recall50, max(n_bootstrap, 1), seed=0)
    return line + (
        f" peer={peer.name} peer_recall50={peer.metrics['recall@50']:.4f} peer_ndcg12={peer.metrics['ndcg@12']:.4f}"
        f" diff_lo={low:.4f}"
    )


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def report(args, data: Dataset, test: Split, val: Split, outcomes: list[Outcome], seconds: dict, command: str) -> str:
    n_train = test.train.nnz
    cold = np.bincount(test.train.indices, minlength=data.n_items) == 0
    relevant = test.relevant[test.users]
    cold_share = cold[relevant.indices].mean() if relevant.nnz else 0.0
    best, peer = pick_best(outcomes), pick_peer(outcomes)
    lines = [
        f"## {data.name}{' (dev: the test period dropped, evaluated on the validation cut)' if args.dev else ''}",
        "",
        f"Command: `{command}`",
        "",
        f"- Dataset: {data.n_users:,} users, {data.n_items:,} items, {len(data.users):,} interaction rows "
        f"({n_train:,} distinct training user–item pairs); {int(cold.sum()):,} items have no training interaction.",
        f"- Split: {test.description}. Evaluated users: {len(test.users):,} (≥ 1 test item not had in training, "
        f"≥ 1 training item); {relevant.nnz:,} relevant pairs, {cold_share:.0%} of them on items without a "
        f"training interaction. All {data.n_items:,} items ranked, the user's training items excluded.",
        f"- Validation: {val.description}; {len(val.users):,} validation users (at most {MAX_VALIDATION_USERS:,} "
        f"scored). Every contender, ours and the peers, tries at most {BUDGET} configurations and on each the "
        "same popularity-prior blend (weight 0 first, so the plain model wins ties); the best by validation "
        "Recall@50 is refitted on the whole training period.",
        f"- best = `{best.name}`: the visrec model with the highest validation Recall@50 (column `val Recall@50`), "
        f"never chosen by a test number. Reported peer = `{peer.name if peer else 'none'}`: the strongest peer on "
        "the test period.",
        f"- Image vectors: efficientnet_lite0 (packaged) for every item; {seconds['embed']:.0f} s in this run "
        "(cached under `var/bench-cache/` after the first run, ~60 images/s on 2 CPUs).",
        f"- Machine: {machine()}. Fit time of the final models: {seconds['fit']:.0f} s; tuning: "
        f"{seconds['tune']:.0f} s; whole run {seconds['total']:.0f} s. `fit s` = the final fit.",
        f"- Cells: mean [95 % bootstrap interval over users, {args.bootstrap} resamples]. Cold = items with no "
        "training interaction (averaged over users with at least one cold relevant item).",
        "- Rows of kind `ablation` (`<model>_noprior`) refit the chosen configuration with the prior, `cold_bias` "
        "and the freshness bias off: what the images and the interactions do alone. They never count as `best`.",
        f"- Interaction strength: {_strength_note(data)}",
        "",
        table(outcomes),
        "",
        "```",
        result_line(outcomes, args.bootstrap),
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
    parser.add_argument("--dev", action="store_true", help="drop the test period; evaluate on the validation cut")
    parser.add_argument("--no-cornac", action="store_true", help="skip Cornac VBPR (and the peers venv)")
    parser.add_argument("--no-peers", action="store_true", help="skip the implicit and Cornac peers")
    parser.add_argument("--models", help="comma-separated visrec model names (default: every registered one)")
    parser.add_argument("--no-tune", action="store_true", help="first configuration only (quick runs)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the `_noprior` rows")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "bench-cache")
    parser.add_argument("--out", type=Path, help="report file (default docs/benchmarks/quality.md; --dev: var/)")
    args = parser.parse_args(argv)
    if not (args.split_date or args.split_fraction or args.split_per_user):
        if args.dataset.resolve().name == "hm":
            args.split_date = HM_SPLIT_DATE
        else:
            args.split_per_user = 0.2
    if args.out is None:
        args.out = ROOT / "var" / "quality-dev.md" if args.dev else DOCS / "quality.md"
    return args


def prepare_splits(data: Dataset, args: argparse.Namespace) -> tuple[Split, Split]:
    """``(validation, test)`` rounds; with ``--dev`` the test rows are dropped first and validation becomes test."""
    from recommendations.ml.evaluation import validation_split

    train, test_mask, description, val_how = split_masks(data, args)
    table_ = (data.users, data.items, data.values, data.timestamps)
    val_desc = f"the training period's last {val_how['fraction']:.0%}" + (
        " per user" if val_how["method"] == "per_user" else " (temporal)"
    )
    if args.dev:
        drop_rows(data, train)
        table_ = (data.users, data.items, data.values, data.timestamps)
        train, test_mask = validation_split(*table_, np.ones(len(data.users), bool), **val_how)
        description = f"dev: the test period dropped; test = {val_desc}"
    fit_mask, val_mask = validation_split(*table_, train, **val_how)
    test = make_split(data, train, test_mask, description)
    val = make_split(data, fit_mask, val_mask, f"validation = {val_desc}")
    log.info("test users %d, validation users %d", len(test.users), len(val.users))
    return val, test


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
    val, test = prepare_splits(data, args)

    def budget(grid: list[dict]) -> list[dict]:
        return grid[: 1 if args.no_tune else BUDGET]

    outcomes = []
    models = registered_models()
    chosen = args.models.split(",") if args.models else list(models)
    for name in chosen:
        cls = models[name]
        kind = "peer" if name in PEER_MODELS else "visrec"
        try:
            grid = budget(grid_of(name, cls))
            outcome, personal = tune(name, kind, grid, visrec_runner(cls, features), val, test, args.bootstrap)
            outcomes.append(outcome)
            if kind == "visrec" and not args.no_ablation:
                outcomes.append(ablation(outcome, personal, cls, features, test, args.bootstrap))
        except Exception as e:  # noqa: BLE001 (one broken model must not hide the others' results)
            log.error("%s failed and is left out of the report: %r", name, e)
    if not args.no_peers:
        for which in ("als", "bpr"):
            grid = budget(PEER_GRIDS[f"implicit_{which}"])
            outcome, _ = tune(f"implicit_{which}", "peer", grid, implicit_runner(which), val, test, args.bootstrap)
            outcomes.append(outcome)
        if not args.no_cornac:
            outcomes.append(tune_cornac(budget(PEER_GRIDS["cornac_vbpr"]), features, val, test, args.bootstrap))

    seconds = {
        "embed": embed_seconds,
        "fit": sum(o.fit_seconds for o in outcomes),
        "tune": sum(o.tune_seconds for o in outcomes),
        "total": time.perf_counter() - started,
    }
    command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = report(args, data, test, val, outcomes, seconds, command)
    print(table(outcomes))
    section = f"quality-{data.name}" + ("-dev" if args.dev else "")
    write_section(args.out, section, "Recommendation quality", body)
    line = result_line(outcomes, args.bootstrap)
    print(line)
    return line


if __name__ == "__main__":
    main()
