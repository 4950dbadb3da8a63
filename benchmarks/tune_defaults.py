"""Tune ``ImageCF``'s taste defaults and complete the look's on synthetic shops, never on a benchmark dataset.

Usage::

    python benchmarks/tune_defaults.py [--only image-cf|complements|close-colour] [--seeds 0 1 2] [--no-write]

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

Complete the look (``COMPLEMENT_MODEL``, ``COMPLEMENT_PRIOR_SECONDS``): basket shops from
``tests/ml/synthetic.baskets`` (a planted compatibility of kinds of pictures, one shape whose
newest baskets turn to a few best sellers) and the demo simulation's carts and purchases
with the same attribute vectors; each configuration scores its validation hit@12 with the
prior the shop's own training would choose (:func:`BasketShop.score`), by the same coordinate
ascent; then the fallback prior weight (a shop too small to choose keeps it).

"Why this?"'s close colour (``WHY_CLOSE_COLOUR``): the demo catalogue's own drawings (each
knows its colour name), their colour histograms computed as the colour descriptors compute
them (:func:`close_colour_histograms`); the threshold is the smallest on :data:`CLOSE_GRID`
that calls at most :data:`FALSE_CLOSE` of the pairs of two different colours close.
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

    def score(self, params: dict) -> float:
        """Validation Recall@K of ``ImageCF(**params)`` fitted on the fit part."""
        model = ImageCF(**params, popularity_weight=0.0, whiten=0).fit(self.fit, self.features, self.fit_context)
        scores = model.score(self.users, self.fit[self.users])
        return recall_at(scores, self.fit[self.users], self.val[self.users], K)


def clustered_shop(seed: int, **shape) -> Shop:
    from tests.ml.synthetic import clustered

    data = clustered(seed=seed, **shape)
    return Shop("clustered", data.train, data.context, data.features)


def demo_simulation(seed: int, products: int = 500, users: int = 600, noise: float = 0.5):
    """The demo simulation's events and image vectors = weighted one-hot type/colour/pattern + noise."""
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
    return simulation.events, features


def demo_shop(seed: int, products: int = 500, users: int = 600, noise: float = 0.5) -> Shop:
    """Purchases of the demo simulation (:func:`demo_simulation`)."""
    events, features = demo_simulation(seed, products, users, noise)
    bought = [(e.user, e.product, e.at.timestamp()) for e in events if e.kind != "view"]
    u, i, t = (np.array(c) for c in zip(*bought, strict=True))
    shape = (users, len(features))
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


def tune(shops: list, start: dict, grid: list[dict[str, tuple]]) -> tuple[dict, list[list]]:
    """Coordinate ascent over the blocks of ``grid`` by each shop's ``score(params)``.

    Returns the chosen values and the table rows.
    """
    chosen, rows = dict(start), []
    for block in grid:
        names = list(block)
        scores = {}
        for combo in itertools.product(*block.values()):
            params = {**chosen, **dict(zip(names, combo, strict=True))}
            scores[combo] = [shop.score(params) for shop in shops]
        best = choose(scores)
        chosen.update(zip(names, best, strict=True))
        rows += table_rows(names, scores, best)
    return chosen, rows


def make_shops(shapes: dict[str, Callable], seeds: list[int]) -> tuple[list, list[str]]:
    """One shop per shape and seed, and their labels (the table's columns)."""
    shops, labels = [], []
    for label, make in shapes.items():
        for seed in seeds:
            shops.append(make(seed))
            labels.append(f"{label} s{seed}")
    return shops, labels


def table_rows(names: list[str], scores: dict[tuple, list[float]], best: tuple) -> list[list]:
    """One row per setting: ``name=value, ...`` (the chosen one marked), the mean score and each shop's."""
    rows = []
    for combo, values in scores.items():
        setting = ", ".join(f"{n}={v}" for n, v in zip(names, combo, strict=True))
        mark = " **chosen**" if combo == best else ""
        rows.append([setting + mark, f"{np.mean(values):.4f}", *(f"{v:.4f}" for v in values)])
    return rows


# -- complete the look ------------------------------------------------------------------
#: Where the complements search starts (the defaults before this section existed).
COMPLEMENT_START = {
    "rank": 32,
    "dims": 128,
    "epochs": 3,
    "weight_decay": 1e-3,
    "half_life_days": 60.0,
    "prior_days": 28.0,
}
#: Its blocks, simplest first in each. ``dims`` is not searched: the synthetic pictures have
#: fewer axes than it keeps (it bounds the cost on real embeddings, 512-2048 numbers).
COMPLEMENT_GRID: list[dict[str, tuple]] = [
    {"rank": (8, 16, 32, 64), "half_life_days": (0.0, 30.0, 60.0, 180.0)},
    {"epochs": (1, 3, 6, 10)},
    {"weight_decay": (1e-2, 1e-3, 1e-4)},
    {"prior_days": (7.0, 28.0, 90.0)},
]


class BasketShop:
    """A synthetic shop's basket events and image vectors, scored as training scores a prior.

    A configuration's score is the validation hit@12 of the held-out baskets' partners
    (newest 20 % of the events) with the popularity prior the shop's fit would choose
    (:func:`recommendations.ml.complements.validate_prior`, the same code as training's).
    """

    def __init__(self, name: str, vectors: np.ndarray, events) -> None:
        self.name, self.vectors, self.events = name, vectors, events

    def validate(self, params: dict) -> dict:
        from recommendations.conf import DEFAULTS
        from recommendations.ml.complements import validate_prior

        model = {k: v for k, v in params.items() if k != "prior_days"}
        window = float(DEFAULTS["COMPLEMENT_WINDOW_SECONDS"])
        return validate_prior(model, self.vectors, self.events, window, params["prior_days"] * DAY)

    def score(self, params: dict) -> float:
        return self.validate(params)["hit_rate"]


def planted_baskets_shop(seed: int, **shape) -> BasketShop:
    from tests.ml.synthetic import baskets

    data = baskets(seed=seed, **shape)
    return BasketShop("planted", data.vectors, data.events)


def demo_baskets_shop(seed: int) -> BasketShop:
    """The demo simulation's basket events (``COMPLEMENT_KINDS``) and its products' vectors."""
    from recommendations.conf import DEFAULTS
    from recommendations.ml.complements import Events

    events, features = demo_simulation(seed)
    kept = [(e.user, e.product, e.at.timestamp()) for e in events if e.kind in DEFAULTS["COMPLEMENT_KINDS"]]
    u, i, t = (np.array(c) for c in zip(*kept, strict=True))
    return BasketShop("demo-simulation", features, Events(u, i, t.astype(np.float64)))


#: Basket shops: a planted compatibility whose newest baskets turn to five best sellers; a
#: steady planted compatibility, more kinds, pictures of 96 numbers (so that every rank tried
#: is a different model: a rank above the pictures' axes is the same model); the demo
#: simulation's carts and purchases.
BASKET_SHAPES: dict[str, Callable[[int], BasketShop]] = {
    "planted 6x40, best sellers in the last 40 %": lambda seed: planted_baskets_shop(seed, trend="best sellers"),
    "planted 8x50 in 96 dims, steady, 1200 baskets": lambda seed: planted_baskets_shop(
        seed, n_kinds=8, per_kind=50, dim=96, n_baskets=1200
    ),
    "demo simulation 500 products, 600 users": demo_baskets_shop,
}


def fallback_weight(shops: list[BasketShop], chosen: dict) -> tuple[float, list[list]]:
    """The prior weight (with the chosen window) that validates best over all shops: a small shop's fallback."""
    from recommendations.ml.complements import PRIOR_WEIGHTS

    scores: dict[tuple, list[float]] = {(w,): [] for w in PRIOR_WEIGHTS}
    for shop in shops:
        record = {(w, s): v for w, s, v in shop.validate(chosen)["hit_rates"]}
        for w in PRIOR_WEIGHTS:
            scores[(w,)].append(record[(w, None if not w else chosen["prior_days"] * DAY)])
    best = choose(scores)
    return best[0], table_rows(["prior_weight"], scores, best)


def tune_complements(seeds: list[int], write: bool) -> dict:
    """Complete the look's structural defaults and its fallback prior weight, on the basket shops."""
    started = time.perf_counter()
    shops, labels = make_shops(BASKET_SHAPES, seeds)
    chosen, rows = tune(shops, COMPLEMENT_START, COMPLEMENT_GRID)
    chosen["prior_weight"], more = fallback_weight(shops, chosen)
    seconds = time.perf_counter() - started
    table = markdown_table(["setting", "mean hit@12", *labels], rows + more)
    summary = ", ".join(f"{k}={v}" for k, v in chosen.items())
    print(table)
    print(f"CHOSEN complements {summary}  ({len(shops)} shops, {seconds:.0f} s)")
    if write:
        body = (
            "## Complete the look defaults\n\n"
            f"`python benchmarks/tune_defaults.py --only complements --seeds {' '.join(map(str, seeds))}` "
            f"({seconds:.0f} s). Synthetic shops only (no benchmark dataset): validation hit@12 of the "
            "held-out partners of the newest 20 % of each shop's basket events, with the popularity prior "
            "each shop's training would choose (the same code, `validate_prior`); one pass of coordinate "
            f"ascent over the blocks below from {COMPLEMENT_START}. The last block is the fallback prior "
            "weight of a shop with too few baskets to choose its own: the weight that validates best over "
            f"these shops.\n\n{table}\n\n**Chosen:** {summary}\n"
        )
        write_section(DOCS / "defaults.md", "complements", "Defaults tuned on synthetic shops", body)
    return chosen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=["image-cf", "complements", "close-colour"], help="tune one section only")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks alone")
    args = parser.parse_args(argv)
    sections = {"image-cf": tune_image_cf, "complements": tune_complements, "close-colour": tune_close_colour}
    return {name: run(args.seeds, not args.no_write) for name, run in sections.items() if args.only in (None, name)}


def tune_image_cf(seeds: list[int], write: bool) -> dict:
    """ImageCF's taste defaults on the interaction shops."""
    started = time.perf_counter()
    shops, labels = make_shops(SHAPES, seeds)
    chosen, rows = tune(shops, START, GRID)
    seconds = time.perf_counter() - started
    headers = ["setting", "mean Recall@50", *labels]
    table = markdown_table(headers, rows)
    summary = ", ".join(f"{k}={v}" for k, v in chosen.items())
    print(table)
    print(f"CHOSEN {summary}  ({len(shops)} shops, {seconds:.0f} s)")
    if write:
        body = (
            "## ImageCF taste defaults\n\n"
            f"`python benchmarks/tune_defaults.py --seeds {' '.join(map(str, seeds))}` "
            f"({seconds:.0f} s). Synthetic shops only (no benchmark dataset): validation "
            f"Recall@{K} on the newest 20 % of each shop's purchases, ImageCF's personal part "
            "alone (popularity_weight=0, whiten=0), one pass of coordinate ascent over the "
            f"blocks below from {START}.\n\n{table}\n\n**Chosen:** {summary}\n"
        )
        write_section(DOCS / "defaults.md", "image-cf", "Defaults tuned on synthetic shops", body)
    return chosen


# -- "why this?": when two products' colours are called close ---------------------------------
#: Thresholds tried for the cosine of two colour histograms, lowest first.
CLOSE_GRID = tuple(round(0.4 + 0.05 * i, 2) for i in range(12))
#: At most this share of the pairs of two different colours may be called close.
FALSE_CLOSE = 0.05
#: Demo drawings per seed.
CLOSE_DRAWINGS = 300


def close_colour_histograms(plans: list, backbone: str = "efficientnet_lite0_colour") -> np.ndarray:
    """Colour histograms of the demo ``plans``' drawings, as ``backbone``'s stored vectors carry them.

    The photo is prepared with the descriptor's own preprocessing record (its letterboxed
    whole-photo view) and described with its :class:`~recommendations.ml.colour.ColourSpec`,
    so the cosine of two rows is what "why this?" reads from the stored vectors' colour tail.
    """
    import io

    from PIL import Image

    from catalog.demo.drawing import draw_product
    from recommendations.ml.backbones import DESCRIPTORS, load_backbone
    from recommendations.ml.colour import colour_descriptor
    from recommendations.ml.embedder import prepare_image

    preprocessing = load_backbone(backbone).preprocessing
    arrays = [
        prepare_image(Image.open(io.BytesIO(draw_product(plan.image))).convert("RGB"), preprocessing)[..., 3:]
        for plan in plans
    ]
    return colour_descriptor(np.stack(arrays), DESCRIPTORS[backbone].colour)


def close_colour_rates(histograms: np.ndarray, colours: list[str], thresholds=CLOSE_GRID) -> list[tuple]:
    """Per threshold: the share of same-colour pairs and of different-colour pairs whose cosine reaches it."""
    cosine = histograms @ histograms.T
    upper = np.triu_indices(len(colours), k=1)
    names = np.asarray(colours)
    same = (names[:, None] == names[None, :])[upper]
    values = cosine[upper]
    return [(t, float((values[same] >= t).mean()), float((values[~same] >= t).mean())) for t in thresholds]


def choose_close_colour(rates: list[tuple], false_close: float = FALSE_CLOSE) -> float:
    """The lowest threshold whose different-colour pairs pass at most ``false_close`` of the time."""
    return next((t for t, _, different in rates if different <= false_close), rates[-1][0])


def tune_close_colour(seeds: list[int], write: bool) -> float:
    """``WHY_CLOSE_COLOUR`` from the demo catalogue's drawings (a fixed rule, no benchmark dataset)."""
    from catalog.demo.simulation import plan_catalog

    started = time.perf_counter()
    plans = [plan for seed in seeds for plan in plan_catalog(CLOSE_DRAWINGS, seed)]
    histograms = close_colour_histograms(plans)
    colours = [plan.image.colour for plan in plans]
    rates = close_colour_rates(histograms, colours)
    solid = [i for i, plan in enumerate(plans) if plan.image.pattern == "solid"]
    solid_rates = close_colour_rates(histograms[solid], [colours[i] for i in solid])
    chosen = choose_close_colour(rates)
    seconds = time.perf_counter() - started
    rows = [
        [f"**{t}**" if t == chosen else t, f"{s:.3f}", f"{d:.3f}", f"{ss:.3f}", f"{sd:.3f}"]
        for (t, s, d), (_, ss, sd) in zip(rates, solid_rates, strict=True)
    ]
    headers = ["cosine >=", "same colour: called close", "two colours: called close", "solid only: same", "solid: two"]
    table = markdown_table(headers, rows)
    print(table)
    print(f"CHOSEN WHY_CLOSE_COLOUR={chosen}  ({len(plans)} drawings, {seconds:.0f} s)")
    if write:
        body = (
            '## "Why this?": close colour\n\n'
            f"`python benchmarks/tune_defaults.py --only close-colour --seeds {' '.join(map(str, seeds))}` "
            f"({seconds:.0f} s). {len(plans)} drawings of the demo catalogue ({CLOSE_DRAWINGS} per seed, "
            f"{len(solid)} of them solid-coloured; every drawing knows its colour name), their colour "
            "histograms as `efficientnet_lite0_colour` stores them (the other descriptors share its "
            "histogram); every pair of drawings is one of one colour or of two. The threshold is the "
            f"lowest that calls at most {FALSE_CLOSE:.0%} of the pairs of two colours close: a shopper "
            'reading "close colour" should rarely see two colours. Patterned drawings carry a second '
            "colour (a tint or shade of the first), so the solid-only columns are the cleaner reading. "
            "Names are the drawing's, not a shopper's judgement: navy and black, or teal and green, are "
            "two colours here although many shoppers would call them close, so the false rate is an "
            f"upper bound.\n\n{table}\n\n**Chosen:** WHY_CLOSE_COLOUR={chosen}\n"
        )
        write_section(DOCS / "defaults.md", "close-colour", "Defaults tuned on synthetic shops", body)
    return chosen


if __name__ == "__main__":
    main()
