"""Which image vectors to store: retrieval quality of backbones, precisions and sizes.

Usage::

    python benchmarks/vector_quality.py --dataset ../shared/datasets/hm [--limit N]

For the items that have metadata, embeds each photo and measures, over its 12
nearest neighbours (cosine, exact search, the item itself excluded), the share with
the same ``product_type_name`` and the same ``colour_group_name`` (precision@12), for
every backbone whose weights are on this machine, each preprocessing geometry, and
the stored forms: float32, ``halfvec`` (float16) and PCA to 256 dims. Baselines in the
same run: random neighbours (chance) and a colour histogram (no CNN). Writes the
"vectors" section of ``docs/benchmarks/embedding.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path

import numpy as np
from _common import DOCS, ROOT, machine, markdown_table, write_section

K = 12


def load_items(dataset: Path, limit: int | None) -> list[dict]:
    with open(dataset / "items.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("product_type_name") and r.get("colour_group_name")]
    return rows[:limit] if limit else rows


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = K) -> float:
    """Mean share of each item's k nearest neighbours (itself excluded) with its label."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argpartition(-sims, k, axis=1)[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())


def pca(vectors: np.ndarray, dims: int) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:dims].T
    return projected / np.linalg.norm(projected, axis=1, keepdims=True)


def colour_histogram(images) -> np.ndarray:
    """A no-CNN baseline: 4x4x4 RGB histogram of the picture."""
    out = []
    for im in images:
        a = np.asarray(im.resize((64, 64)), dtype=np.int32) // 64
        hist = np.bincount((a[..., 0] * 16 + a[..., 1] * 4 + a[..., 2]).ravel(), minlength=64).astype(np.float32)
        out.append(hist / np.linalg.norm(hist))
    return np.stack(out)


def offline_backbones() -> list[str]:
    from recommendations.ml.backbones import WeightsNotFound, available_backbones, resolve_weights

    found = []
    for name in available_backbones():
        try:
            resolve_weights(name)
        except (WeightsNotFound, ValueError):
            continue
        found.append(name)
    return found


def main() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from recommendations.ml.backbones import load_backbone
    from recommendations.ml.embedder import Embedder
    from recommendations.ml.images import load_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N items with metadata (default: all)")
    parser.add_argument("--out", type=Path, default=DOCS / "embedding.md")
    args = parser.parse_args()

    items = load_items(args.dataset, args.limit)
    images = [load_image((args.dataset / r["image_path"]).read_bytes()) for r in items]
    labels = {
        "type": np.array([r["product_type_name"] for r in items]),
        "colour": np.array([r["colour_group_name"] for r in items]),
    }
    rng = np.random.default_rng(0)
    rows = []

    def add(name: str, vectors: np.ndarray, bytes_per_vector: int, seconds: float | None = None) -> None:
        p_type, p_colour = precision_at_k(vectors, labels["type"]), precision_at_k(vectors, labels["colour"])
        rows.append(
            [
                name,
                vectors.shape[1],
                bytes_per_vector,
                f"{p_type:.3f}",
                f"{p_colour:.3f}",
                "" if seconds is None else f"{len(items) / seconds:.0f}",
            ]
        )
        print(rows[-1])

    add("chance (random vectors)", rng.normal(size=(len(items), 64)).astype(np.float32), 0)
    add("colour histogram (no CNN)", colour_histogram(images), 256)
    for name in offline_backbones():
        backbone = load_backbone(name)
        for geometry in ("crop-box", "pad"):
            variant = dataclasses.replace(backbone, preprocessing={**backbone.preprocessing, "geometry": geometry})
            embedder = Embedder(variant, device="auto", cache_dir=ROOT / "var" / "cache")
            started = time.perf_counter()
            full = embedder.embed(images)
            seconds = time.perf_counter() - started
            label = f"{name}, {geometry}"
            add(f"{label}, float32", full, 4 * full.shape[1], seconds)
            half = full.astype(np.float16).astype(np.float32)
            add(f"{label}, halfvec", half, 2 * full.shape[1])
            add(f"{label}, PCA 256 + halfvec", pca(full, 256).astype(np.float16).astype(np.float32), 2 * 256)

    headers = ["vectors", "dims", "bytes/vector", "P@12 same type", "P@12 same colour", "images/s"]
    table = markdown_table(headers, rows)
    print(table)
    body = (
        f"## Which vectors to store\n\n{len(items)} hm items with metadata "
        f"({len(set(labels['type']))} product types, {len(set(labels['colour']))} colour groups); "
        f"exact cosine search, the item itself excluded. Machine: {machine()}.\n"
        f"Command: `python benchmarks/vector_quality.py --dataset {args.dataset}"
        f"{f' --limit {args.limit}' if args.limit else ''}`\n\n{table}\n"
    )
    write_section(args.out, "vectors", "Embedding benchmarks", body)


if __name__ == "__main__":
    main()
