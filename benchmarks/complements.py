"""Complete the look on hm: co-purchase counts, visual similarity and the compatibility model.

Usage::

    nice python benchmarks/complements.py [--dataset ../shared/datasets/hm] [--split 2020-06-01]
                                          [--val-weeks 4] [--resamples 1000] [--out docs/benchmarks/complements.md]

Protocol. Purchases before ``--split`` train; a basket is one shopper's purchases on one
test-period day holding at least two items of different product types
(``item_metadata.csv``'s ``product_type_name``). Each of its typed items in turn is the
anchor; the other-typed items of the basket are the relevant ones; every item with a photo
is a candidate except the anchor and the items known to be of the anchor's type (items
without metadata stay candidates: their type is unknown). Product types define "other
type" here and nothing else: no method reads them.

- ``co-purchase``: how many training shoppers bought the candidate within a day of the
  anchor; ties (and anchors never bought) ranked by training popularity (all training, or
  its last four weeks: chosen on the validation cut).
- ``visual``: cosine of the image vectors.
- ``compatibility``: :class:`recommendations.ml.complements.CompatibilityModel`, fitted on
  the training co-purchase pairs' image vectors.
- ``co-purchase, then compatibility``: what the product serves (co-purchased partners
  first, the model's below them and for anchors with none).

Every hyper-parameter (the model's grid, the popularity window) is chosen on a
validation cut: fit before ``split - val_weeks``, evaluate on the baskets of the weeks up
to ``split``, pick by hit@12 on never-bought anchors; then refit on all training and
measure on the test period once. Intervals: percentile bootstrap over baskets (1,000
resamples), paired for differences. Writes the table and the reading to ``--out`` and
ends with the ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import DOCS, ROOT, machine, markdown_table, write_section
from _quality_data import image_vectors, load_dataset, parse_time
from freshness import git_commit

sys.path.insert(0, str(ROOT))
from recommendations.ml.complements import (  # noqa: E402
    CompatibilityModel,
    copurchase_pairs,
    decayed_weights,
    principal_axes,
)

log = logging.getLogger("visrec.bench.complements")

K = 12
DAY = 86_400.0
#: The compatibility model's grid (tried on the validation cut only).
GRID = {"rank": [16, 32, 64], "half_life_days": [0.0, 60.0]}
#: Tried for each fitted model (no refit): the weight of the candidates' recent popularity, and its window.
PRIOR_WEIGHTS = [0.0, 0.5, 1.0, 2.0]
WINDOWS = [None, 28.0]  # days before the end of the fitting period (None: all of it)
FIXED = {"dims": 128, "epochs": 3, "weight_decay": 1e-3, "lr": 0.01, "batch": 512, "negatives": 2048, "seed": 0}


@dataclass
class Eval:
    """The anchors of one evaluation period: which basket, anchor item, relevant items, candidates mask."""

    basket: np.ndarray  # (n,) basket index of each anchor row
    anchor: np.ndarray  # (n,) item index
    relevant: list[np.ndarray]  # per row: the basket's items of other types
    anchor_type: np.ndarray  # (n,) type index of the anchor
    cold: np.ndarray  # (n,) anchor never bought in the fitting period

    def __len__(self) -> int:
        return len(self.anchor)


def item_types(data, folder: Path) -> np.ndarray:
    """Product type index of every item (-1: no metadata). Evaluation only."""
    index = {item: i for i, item in enumerate(data.item_ids)}
    types = np.full(data.n_items, -1, np.int64)
    names: dict[str, int] = {}
    with open(folder / "item_metadata.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = (row.get("product_type_name") or "").strip()
            item = index.get(row["item_id"].strip())
            if name and item is not None:
                types[item] = names.setdefault(name, len(names))
    return types


def baskets(data, types: np.ndarray, period: np.ndarray, fitted: np.ndarray) -> Eval:
    """Anchor rows of the baskets (shopper, day) in ``period`` with two typed items of different types."""
    days = (data.timestamps // DAY).astype(np.int64)
    bought = np.zeros(data.n_items, bool)
    bought[data.items[fitted]] = True
    groups: dict[tuple[int, int], set[int]] = {}
    for user, day, item in zip(data.users[period], days[period], data.items[period], strict=True):
        if types[item] >= 0:
            groups.setdefault((int(user), int(day)), set()).add(int(item))
    rows: dict[str, list] = {"basket": [], "anchor": [], "relevant": [], "type": []}
    for b, items in enumerate(sorted(groups.values(), key=sorted)):
        items = np.array(sorted(items))
        if len(set(types[items])) < 2:
            continue
        for a in items:
            rows["basket"].append(b)
            rows["anchor"].append(a)
            rows["relevant"].append(items[types[items] != types[a]])
            rows["type"].append(types[a])
    anchor = np.array(rows["anchor"], np.int64)
    return Eval(np.array(rows["basket"]), anchor, rows["relevant"], np.array(rows["type"]), ~bought[anchor])


def measure(scores_of, ev: Eval, types: np.ndarray, has_image: np.ndarray, batch: int = 256) -> np.ndarray:
    """``(n, 2)`` hit@12 and NDCG@12 of every anchor row; ``scores_of(anchor_items) -> (b, n_items)``."""
    out = np.zeros((len(ev), 2))
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    for lo in range(0, len(ev), batch):
        rows = np.arange(lo, min(lo + batch, len(ev)))
        scores = np.array(scores_of(ev.anchor[rows]), dtype=np.float64)
        same = types[None, :] == ev.anchor_type[rows, None]
        scores[same | ~has_image[None, :]] = -np.inf
        scores[np.arange(len(rows)), ev.anchor[rows]] = -np.inf
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        for i, r in enumerate(rows):
            hit = np.isin(top[i], ev.relevant[r])
            ideal = discounts[: min(len(ev.relevant[r]), K)].sum()
            out[r] = hit.any(), (hit * discounts).sum() / ideal
    return out


def recent(data, mask: np.ndarray, days: float | None) -> np.ndarray:
    """Purchases per item in the last ``days`` of the period ``mask`` (None: all of it)."""
    sel = mask if days is None else mask & (data.timestamps >= data.timestamps[mask].max() - days * DAY)
    return np.bincount(data.items[sel], minlength=data.n_items).astype(np.float64)


def popularity(data, mask: np.ndarray, days: float | None) -> np.ndarray:
    """:func:`recent` scaled into ``[0, 1)``: the co-purchase baseline's tie-break."""
    counts = recent(data, mask, days)
    return counts / (counts.max() + 1.0)


def cooc_matrix(data, mask: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Symmetric item x item co-purchase counts (shoppers) of ``mask``'s purchases, and the pairs."""
    pairs, counts = copurchase_pairs(data.users[mask], data.items[mask], data.timestamps[mask], DAY)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    c = sp.csr_matrix((np.concatenate([counts, counts]), (both[:, 0], both[:, 1])), shape=(data.n_items,) * 2)
    return c, pairs, counts


def pair_weights(data, mask: np.ndarray, pairs: np.ndarray, counts: np.ndarray, half_life_days: float) -> np.ndarray:
    """Weight of each pair: its shopper count, decayed by the age of its items' last purchase (0: no decay)."""
    return decayed_weights(pairs, counts, data.items[mask], data.timestamps[mask], half_life_days * DAY)


def scorers(data, vectors, mask, window: float | None, model: CompatibilityModel, model_window: float | None):
    """The methods' ``scores_of`` functions for a fitting period ``mask``."""
    cooc, _, _ = cooc_matrix(data, mask)
    pop = popularity(data, mask, window)
    codes = model.item_codes(vectors, recent(data, mask, model_window))
    bare = replace(model, prior_weight=0.0).item_codes(vectors)

    def compat(items):
        return model.anchor_codes(vectors[items]) @ codes.T

    def co(items):
        return cooc[items].toarray() + pop[None, :]

    def product(items):
        c = compat(items)
        span = np.ptp(c, axis=1, keepdims=True) + 1.0
        return cooc[items].toarray() * span + (c - c.min(axis=1, keepdims=True))

    return {
        "co-purchase": co,
        "visual": lambda items: vectors[items] @ vectors.T,
        "compatibility": compat,
        "compatibility without the popularity prior": lambda items: model.anchor_codes(vectors[items]) @ bare.T,
        "co-purchase, then compatibility": product,
    }


def fit_model(data, vectors, mask, params: dict, axes) -> CompatibilityModel:
    params = {k: v for k, v in params.items() if k != "prior window (days)"}
    half_life = params.pop("half_life_days", 0.0)
    _, pairs, counts = cooc_matrix(data, mask)
    model = CompatibilityModel(**params, **FIXED)
    return model.fit(vectors, pairs, pair_weights(data, mask, pairs, counts, half_life), axes)


def choose(data, vectors, axes, types, has_image, split: float, val_weeks: int):
    """What the validation cut chooses: the baseline's popularity window, the model's parameters and prior window."""
    cut = split - val_weeks * 7 * DAY
    fit_mask, val_mask = data.timestamps < cut, (data.timestamps >= cut) & (data.timestamps < split)
    ev = baskets(data, types, val_mask, fit_mask)
    cold = ev.cold
    log.info("validation: %d anchor rows (%d never bought before the cut)", len(ev), int(cold.sum()))
    trials: list = []
    cooc, _, _ = cooc_matrix(data, fit_mask)
    baseline = {}
    for days in WINDOWS:
        pop = popularity(data, fit_mask, days)
        got = measure(lambda items, p=pop: cooc[items].toarray() + p[None, :], ev, types, has_image)
        baseline[days] = float(got[:, 0].mean())  # overall hit@12: the baseline at its own best
        trials.append(("co-purchase", {"popularity window (days)": days}, float(got[cold, 0].mean()), baseline[days]))
    got = measure(lambda items: vectors[items] @ vectors.T, ev, types, has_image)
    trials.append(("visual", {}, float(got[cold, 0].mean()), float(got[:, 0].mean())))
    best, best_value = None, -1.0
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        started = time.perf_counter()
        model = fit_model(data, vectors, fit_mask, params, axes)
        for days, weight in itertools.product(WINDOWS, PRIOR_WEIGHTS):
            if days is not None and not weight:
                continue
            m = replace(model, prior_weight=weight)
            codes = m.item_codes(vectors, recent(data, fit_mask, days))
            got = measure(lambda items, m=m, c=codes: m.anchor_codes(vectors[items]) @ c.T, ev, types, has_image)
            value = float(got[cold, 0].mean())
            tried = {**params, "prior_weight": weight, "prior window (days)": days}
            trials.append(("compatibility", tried, value, float(got[:, 0].mean())))
            if value > best_value:
                best, best_value = tried, value
        log.info("validation %s done (%.0f s)", params, time.perf_counter() - started)
    return max(baseline, key=lambda d: (baseline[d], d is None)), best, trials


def paired(a: np.ndarray, b: np.ndarray, basket: np.ndarray, n: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over rows and its 95 % percentile interval, resampling baskets (paired)."""
    ids, inverse = np.unique(basket, return_inverse=True)
    sums = np.bincount(inverse, a - b, len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n).astype(np.float64)
    means = (draws @ sums) / (draws @ counts)
    low, high = np.percentile(means, [2.5, 97.5])
    return float((a - b).mean()), float(low), float(high)


def interval(values: np.ndarray, basket: np.ndarray, n: int) -> tuple[float, float]:
    _, low, high = paired(values, np.zeros_like(values), basket, n, seed=1)
    return low, high


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "hm")
    parser.add_argument("--split", default="2020-06-01")
    parser.add_argument("--val-weeks", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "bench-cache")
    parser.add_argument("--model-cache", type=Path, default=ROOT / "var" / "cache")
    parser.add_argument("--out", type=Path, default=DOCS / "complements.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started, load_before = time.perf_counter(), os.getloadavg()
    data = load_dataset(args.dataset)
    vectors = image_vectors(data, args.cache_dir, args.model_cache).astype(np.float32)
    types = item_types(data, args.dataset)
    has_image = np.abs(vectors).sum(axis=1) > 0
    split = parse_time(args.split)
    axes = principal_axes(vectors, FIXED["dims"])  # of the catalogue's pictures (no purchase is read)
    window, params, trials = choose(data, vectors, axes, types, has_image, split, args.val_weeks)
    log.info("chosen: %s; co-purchase popularity window %s", params, window)
    train, test = data.timestamps < split, data.timestamps >= split
    model = fit_model(data, vectors, train, params, axes)
    ev = baskets(data, types, test, train)
    methods = scorers(data, vectors, train, window, model, params["prior window (days)"])
    results = {name: measure(f, ev, types, has_image) for name, f in methods.items()}
    seconds = time.perf_counter() - started
    body, result = report(args, ev, results, params, window, trials, seconds, (load_before, os.getloadavg()))
    print(body)
    write_section(args.out, "complements", "Complete the look (hm)", body)
    print(result)


def report(args, ev: Eval, results: dict, params, window, trials, seconds: float, load) -> tuple[str, str]:
    cold, n = ev.cold, args.resamples
    rows = []
    for name, got in results.items():
        cells = [name]
        for sel in (np.ones(len(ev), bool), cold):
            for col in (0, 1):
                low, high = interval(got[sel, col], ev.basket[sel], n)
                cells.append(f"{got[sel, col].mean():.4f} [{low:.4f}, {high:.4f}]")
        rows.append(cells)
    table = markdown_table(
        ["method", "hit@12", "NDCG@12", "never-bought anchors: hit@12", "never-bought: NDCG@12"], rows
    )
    diffs = []
    for base in ("co-purchase", "visual"):
        for col, metric in ((0, "hit@12"), (1, "NDCG@12")):
            mean, low, high = paired(results["compatibility"][cold, col], results[base][cold, col], ev.basket[cold], n)
            diffs.append([f"compatibility − {base}", metric, f"{mean:+.4f}", f"[{low:+.4f}, {high:+.4f}]"])
    reached = all(float(d[3].strip("[]").split(",")[0]) > 0 for d in diffs if d[1] == "hit@12")
    extra = [
        ("never-bought anchors", "compatibility without the popularity prior", "visual", cold),
        ("all anchors", "co-purchase, then compatibility", "co-purchase", np.ones(len(ev), bool)),
    ]
    for rows_name, method, base, sel in extra:
        mean, low, high = paired(results[method][sel, 0], results[base][sel, 0], ev.basket[sel], n)
        diffs.append([f"{method} − {base} ({rows_name})", "hit@12", f"{mean:+.4f}", f"[{low:+.4f}, {high:+.4f}]"])
    diff_table = markdown_table(
        ["never-bought anchors unless said", "metric", "mean difference", "95 % interval"], diffs
    )
    trial_rows = [[kind, p, f"{v:.4f}", "" if o is None else f"{o:.4f}"] for kind, p, v, o in trials]
    h = {name: got[:, 0].mean() for name, got in results.items()}
    hc = {name: got[cold, 0].mean() for name, got in results.items()}
    result = (
        f"RESULT complements_hit12={h['compatibility']:.4f} cooc_hit12={h['co-purchase']:.4f} "
        f"visual_hit12={h['visual']:.4f} cold_complements_hit12={hc['compatibility']:.4f} "
        f"cold_cooc_hit12={hc['co-purchase']:.4f}"
    )
    body = f"""## Test period ({args.split} onwards)

{len(ev)} anchor rows in {len(np.unique(ev.basket))} baskets; {int(cold.sum())} anchors never bought in
training (in {len(np.unique(ev.basket[cold]))} baskets). Mean over anchor rows, 95 % bootstrap interval over
baskets ({n} resamples) in brackets.

{table}

Paired bootstrap over the baskets ({n} resamples; for never-bought anchors, the baskets holding them):

{diff_table}

Target (compatibility above both baselines on never-bought anchors, hit@12 interval above zero):
**{"reached" if reached else "not reached"}**.

Chosen on the validation cut ({args.val_weeks} weeks before {args.split}; fit on what came before): compatibility
{params} (with {FIXED}); co-purchase tie-break popularity over {"the last 28 days" if window else "all"} of training.

`{result}`

### Validation trials (never the test period)

{markdown_table(["method", "setting", "never-bought anchors: hit@12", "hit@12"], trial_rows)}

### Reading

- What differs between the rows is the ranking only: the same anchors, the same relevant items and the same
  candidates (every item with a photo except the anchor's own product type; items without metadata stay in,
  their type unknown), so the paired intervals compare like with like.
- Never-bought anchors are the case the model exists for: co-purchase counts know nothing of them and rank by
  popularity alone. For anchors with history the product serves co-purchases first
  ("co-purchase, then compatibility").
- Where the gap is: the model's image compatibility alone (the row without the popularity prior) is
  {hc["compatibility without the popularity prior"]:.4f} hit@12 on never-bought anchors against visual similarity's
  {hc["visual"]:.4f}; on the validation cut it was well above visual (trials below). Its lift over the baselines there
  came mostly from the prior (sales of the last 28 days before the fit), which the validation cut, four weeks
  right after the fit, rewards and the sixteen-week test period (June to September) does not: both the
  co-purchase tie-break and the prior go stale over the summer. A validation horizon as long as the test's
  would be the fairer choice for the next run; it was not changed after these numbers were seen.
- What the numbers do not show: whether the partners *look* right together (a basket is what one shopper
  bought on one day, for themselves or for others, so many "relevant" items are not outfit partners at
  all); the shop's own categories (product types stand in for them here); a catalogue other than H&M's
  2018-2020 range; what happens with more shoppers (this is a 0.1 % sample: 1,364 shoppers, so intervals
  are wide and a few heavy shoppers weigh much).
- Run: {seconds:.0f} s on {machine()}, load average {load[0][0]:.2f} before and {load[1][0]:.2f} after
  (shared with other jobs); commit {git_commit()}; image vectors: EfficientNet-Lite0 (the benchmark cache).
"""
    return body, result


if __name__ == "__main__":
    main()
