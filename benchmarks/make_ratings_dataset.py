"""A dataset folder with explicit 1-5 ratings and unix timestamps, from the demo shop's simulation.

Usage::

    python benchmarks/make_ratings_dataset.py --out var/ratings-demo [--products 600] [--users 400] [--seed 11]

Stands in for a held-out multimodal ratings dataset in ``benchmarks/quality.py``'s
layout, built from the demo catalogue (``catalog.demo``: PIL-drawn product photos,
shoppers with hidden visual tastes). Each shopper rates the products they clicked
at least once, at the time of their first click: the better a product fits their
hidden taste, the higher the rating (1-5, with noise), so low ratings mark products
that do *not* fit. ``items.csv`` has ``item_id`` (opaque strings), ``image_path`` and
metadata columns (``title``, ``category``, ``colour``); the awkward cases of real
data are there on purpose: some items have no image or a corrupt file, some have
no metadata, some rated items are missing from ``items.csv``, and some shoppers
rate a single product. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: Shares of the catalogue with the awkward cases of real data.
NO_IMAGE, CORRUPT_IMAGE, NO_METADATA, NOT_LISTED = 0.03, 0.02, 0.2, 0.01
#: Extra shoppers who rate exactly one product.
SINGLE_RATERS = 20


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "ratings-demo")
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    build(args.out, args.products, args.users, args.seed)
    print(args.out)
    return args.out


def build(out: Path, n_products: int, n_users: int, seed: int) -> None:
    """Write ``items.csv``, ``interactions.csv`` and ``images/`` under ``out``."""
    sys.path.insert(0, str(ROOT))
    from catalog.demo.drawing import draw_product
    from catalog.demo.simulation import plan_catalog, simulate_shoppers

    rng = np.random.default_rng([seed, 2])
    plans = [p for p in plan_catalog(n_products, seed) if p.is_active]
    simulation = simulate_shoppers(plans, n_users, seed)
    ids = [f"P{h:08x}" for h in rng.choice(2**32, size=len(plans), replace=False)]
    (out / "images").mkdir(parents=True, exist_ok=True)
    ratings = _ratings(rng, simulation, plans, ids)
    ratings += _single_raters(rng, ids, ratings)
    _write_items(out, rng, plans, ids, draw_product)
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "item_id", "rating", "timestamp"])
        writer.writerows(sorted(ratings, key=lambda r: (r[3], r[0], r[1])))


def _fit(taste: dict[str, list[str]], attributes: dict[str, str]) -> float:
    """0..1: how well a product fits a hidden taste (type, colour, pattern)."""
    weights = {"types": ("type", 1.7), "colours": ("colour", 1.3), "patterns": ("pattern", 0.9)}
    total = sum(w for _, w in weights.values())
    return sum(w for key, (attr, w) in weights.items() if attributes[attr] in taste[key]) / total


def _ratings(rng: np.random.Generator, simulation, plans, ids: list[str]) -> list[tuple[str, str, int, int]]:
    """One rating per (shopper, clicked product), at the first click."""
    first: dict[tuple[int, int], int] = {}
    for event in simulation.events:
        if event.kind != "view":
            first.setdefault((event.user, event.product), int(event.at.timestamp()))
    rows = []
    for (user, product), at in first.items():
        fit = _fit(simulation.tastes[user], plans[product].attributes)
        stars = int(np.clip(np.rint(1.0 + 4.0 * fit + rng.normal(0.0, 0.8)), 1, 5))
        rows.append((f"user-{user:05d}", ids[product], stars, at))
    return rows


def _single_raters(rng: np.random.Generator, ids: list[str], rows: list) -> list[tuple[str, str, int, int]]:
    times = np.array([r[3] for r in rows])
    return [
        (f"once-{n:03d}", ids[int(rng.integers(len(ids)))], int(rng.integers(1, 6)), int(rng.choice(times)))
        for n in range(SINGLE_RATERS)
    ]


def _write_items(out: Path, rng: np.random.Generator, plans, ids: list[str], draw) -> None:
    draws = rng.random((len(plans), 4))
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "image_path", "title", "category", "colour"])
        for plan, item, (no_image, corrupt, no_meta, unlisted) in zip(plans, ids, draws, strict=True):
            if unlisted < NOT_LISTED:
                continue  # rated, but absent from items.csv
            path = "" if no_image < NO_IMAGE else f"images/{item}.jpg"
            if path:
                data = b"not a jpeg" if corrupt < CORRUPT_IMAGE else draw(plan.image)
                (out / path).write_bytes(data)
            meta = ("", "", "") if no_meta < NO_METADATA else (plan.title, plan.image.type, plan.image.colour)
            writer.writerow([item, path, *meta])


if __name__ == "__main__":
    main()
