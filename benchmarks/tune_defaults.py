"""Tune ``ImageCF``'s taste defaults on synthetic shops, never on a benchmark dataset.

Usage::

    python benchmarks/tune_defaults.py [--seeds 0 1 2] [--no-write]

Shops come from the project's own generators: ``tests/ml/synthetic.clustered``
(drifting popularity, items launched late) with one and with three taste groups per
shopper, and the demo shop's simulation (``catalog.demo.simulation``: shoppers who
like a few types, colours and patterns at once; its clicks, carts and purchases)
with image vectors made from each product's visual attributes plus noise. Every shop's purchases are cut in time
(:func:`recommendations.ml.blend.validation_cut`: the newest 20 % validate) and a
configuration scores its mean validation Recall@50 over all shops and seeds.
``ImageCF``'s personal part is tuned alone (``popularity_weight=0``, ``whiten=0``:
the prior and whitening are validated per shop at fit time anyway). The search is
one pass of coordinate ascent from the previous defaults over :data:`GRID`'s blocks
(ties keep the earlier, simpler value). Prints the table and
the chosen values and writes ``docs/benchmarks/defaults.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import DOCS, markdown_table, write_section  # noqa: E402

from recommendations.ml.base import FitContext  # noqa: E402
from recommendations.ml.blend import recall_at, validation_cut  # noqa: E402
from recommendations.ml.evaluation import interactions_matrix  # noqa: E402
from recommendations.ml.visual import ImageCF  # noqa: E402

K = 50
#: Where the search starts (the defaults before this script existed).
START = {"max_tastes": 5, "items_per_taste": 4, "taste_temperature": 0.2, "half_life_days": 365.0}
#: Blocks of parameters searched jointly (every combination), in this order; in each
#: block the values are listed simplest first, so a tie keeps the simpler model.
GRID: list[dict[str, tuple]] = [
    {"max_tastes": (1, 2, 3, 5, 8), "taste_temperature": (2.0, 1.0, 0.5, 0.2, 0.1, 0.0)},
    {"items_per_taste": (8, 4, 2)},
    {"half_life_days": (None, 365.0, 90.0, 30.0)},
]
DAY = 86_400.0


class Shop:
    """A synthetic shop's purchases (all of them training data) and image vectors."""

    def __init__(self, name: str, user_items: sp.csr_matrix, context: FitContext, features: np.ndarray) -> None:
        self.name = name
        self.fit, self.val, self.fit_context = validation_cut(user_items, context)
        self.features = features
        self.users = np.flatnonzero(np.diff(self.val.indptr) > 0)

    def recall(self, params: dict) -> float:
        """Validation Recall@K of ``ImageCF(**params)`` fitted on the fit part."""
        model = ImageCF(**params, popularity_weight=0.0, whiten=0).fit(self.fit, self.features, self.fit_context)
        scores = model.score(self.users, self.fit[self.users])
        return recall_at(scores, self.fit[self.users], self.val[self.users], K)


def clustered_shop(seed: int, **shape) -> Shop:
    from tests.ml.synthetic import clustered

    data = clustered(seed=seed, **shape)
    return Shop("clustered", data.train, data.context, data.features)


def demo_shop(seed: int, products: int = 500, users: int = 600, noise: float = 0.5) -> Shop:
    """Purchases of the demo simulation; vectors = weighted one-hot type/colour/pattern + noise."""
    from catalog.demo.drawing import COLOURS, PATTERNS, TYPES
    from catalog.demo.simulation import _WEIGHTS, plan_catalog, simulate_shoppers

    plans = plan_catalog(products, seed)
    simulation = simulate_shoppers(plans, users, seed)
    rng = np.random.default_rng([seed, 3])
    blocks = []
    for attr, values in (("type", TYPES), ("colour", list(COLOURS)), ("pattern", PATTERNS)):
        index = np.array([list(values).index(p.attributes[attr]) for p in plans])
        blocks.append(np.sqrt(_WEIGHTS[attr]) * np.eye(len(values))[index])
    features = np.hstack(blocks) + noise * rng.normal(size=(len(plans), sum(b.shape[1] for b in blocks)))
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    bought = [(e.user, e.product, e.at.timestamp()) for e in simulation.events if e.kind != "view"]
    u, i, t = (np.array(c) for c in zip(*bought, strict=True))
    shape = (users, len(plans))
    user_items = interactions_matrix(u, i, np.ones(len(u)), shape)  # repeat purchases add up
    stamps = interactions_matrix(u, i, t, shape, aggregate="max")  # the latest purchase of an item
    return Shop("demo-simulation", user_items, FitContext(timestamps=stamps), features)


#: Shop shapes: one taste per shopper; several distinct tastes per shopper, longer history;
#: facet tastes (types x colours x patterns) of the demo simulation.
SHAPES: dict[str, Callable[[int], Shop]] = {
    "clustered 6x40, 300 users, 100 days": lambda seed: clustered_shop(seed),
    "clustered 16x60, 3 groups per user, 500 users, 200 days": lambda seed: clustered_shop(
        seed, n_groups=16, items_per_group=60, n_users=500, days=200.0, test_days=40.0, groups_per_user=3
    ),
    "demo simulation 500 products, 600 users": demo_shop,
}


def choose(scores: dict[tuple, list[float]]) -> tuple:
    """The key with the highest mean score (ties: the earliest key)."""
    keys = list(scores)
    return keys[int(np.argmax([np.mean(scores[key]) for key in keys]))]


def tune(shops: list[Shop], start: dict, grid: list[dict[str, tuple]]) -> tuple[dict, list[list]]:
    """Coordinate ascent over the blocks of ``grid``; returns the chosen values and the table rows."""
    chosen, rows = dict(start), []
    for block in grid:
        names = list(block)
        scores = {}
        for combo in itertools.product(*block.values()):
            params = {**chosen, **dict(zip(names, combo, strict=True))}
            scores[combo] = [shop.recall(params) for shop in shops]
        best = choose(scores)
        chosen.update(zip(names, best, strict=True))
        for combo, values in scores.items():
            setting = ", ".join(f"{n}={v}" for n, v in zip(names, combo, strict=True))
            mark = " **chosen**" if combo == best else ""
            rows.append([setting + mark, f"{np.mean(values):.4f}", *(f"{v:.4f}" for v in values)])
    return chosen, rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks alone")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    shops, labels = [], []
    for label, make in SHAPES.items():
        for seed in args.seeds:
            shops.append(make(seed))
            labels.append(f"{label} s{seed}")
    chosen, rows = tune(shops, START, GRID)
    seconds = time.perf_counter() - started
    headers = ["setting", "mean Recall@50", *labels]
    table = markdown_table(headers, rows)
    summary = ", ".join(f"{k}={v}" for k, v in chosen.items())
    print(table)
    print(f"CHOSEN {summary}  ({len(shops)} shops, {seconds:.0f} s)")
    if not args.no_write:
        body = (
            "## ImageCF taste defaults\n\n"
            f"`python benchmarks/tune_defaults.py --seeds {' '.join(map(str, args.seeds))}` "
            f"({seconds:.0f} s). Synthetic shops only (no benchmark dataset): validation "
            f"Recall@{K} on the newest 20 % of each shop's purchases, ImageCF's personal part "
            "alone (popularity_weight=0, whiten=0), one pass of coordinate ascent over the "
            f"blocks below from {START}.\n\n{table}\n\n**Chosen:** {summary}\n"
        )
        write_section(DOCS / "defaults.md", "image-cf", "Defaults tuned on synthetic shops", body)
    return chosen


if __name__ == "__main__":
    main()
