"""Dataset folders for the quality benchmark: CSV reading, image vectors (cached) and splits.

A dataset folder holds ``items.csv`` (``item_id``, ``image_path``, optional metadata
columns) and ``interactions.csv`` (``user_id``, ``item_id``, ``value`` or ``rating``,
``timestamp`` as an ISO date/time or unix seconds). Ids are read as strings.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger("visrec.bench.quality")


@dataclass
class Dataset:
    """One dataset folder in memory; interactions are parallel arrays of row/column indices."""

    name: str
    folder: Path
    item_ids: list[str]
    user_ids: list[str]
    image_paths: list[str]
    item_meta: dict[str, list[str]]
    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def parse_time(text: str) -> float:
    """Unix seconds from unix seconds/milliseconds or an ISO date/time (naive = UTC)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return value / 1000.0 if value > 1e11 else value


def load_dataset(folder: Path) -> Dataset:
    """Read ``items.csv`` and ``interactions.csv``; items only seen in interactions get no image."""
    folder = Path(folder)
    item_ids, image_paths, meta, index = [], [], {}, {}
    with open(folder / "items.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        extra_cols = [c for c in (reader.fieldnames or []) if c not in ("item_id", "image_path")]
        meta = {c: [] for c in extra_cols}
        for row in reader:
            item = row["item_id"].strip()
            if item in index:
                continue
            index[item] = len(item_ids)
            item_ids.append(item)
            image_paths.append((row.get("image_path") or "").strip())
            for c in extra_cols:
                meta[c].append((row.get(c) or "").strip())
    users, items, values, stamps, user_index = [], [], [], [], {}
    with open(folder / "interactions.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        value_col = next((c for c in ("value", "rating") if c in (reader.fieldnames or [])), None)
        for row in reader:
            item = row["item_id"].strip()
            if item not in index:
                index[item] = len(item_ids)
                item_ids.append(item)
                image_paths.append("")
                for c in meta:
                    meta[c].append("")
            user = row["user_id"].strip()
            users.append(user_index.setdefault(user, len(user_index)))
            items.append(index[item])
            values.append(float(row[value_col]) if value_col and row[value_col] not in ("", None) else 1.0)
            stamps.append(parse_time(row["timestamp"]) if row.get("timestamp") else 0.0)
    return Dataset(
        name=folder.resolve().name,
        folder=folder,
        item_ids=item_ids,
        user_ids=list(user_index),
        image_paths=image_paths,
        item_meta=meta,
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        values=np.asarray(values, dtype=np.float64),
        timestamps=np.asarray(stamps, dtype=np.float64),
        extra={"value_column": value_col},
    )


def strengths(data: Dataset) -> np.ndarray:
    """Interaction strength of every row for the models.

    A ``value`` column counts as it is (floored at 1e-3). A ``rating`` column is an
    opinion, not an amount: the lowest rating maps to a weak ``1 / (span + 1)`` and the
    highest to 1, so a product a shopper rated badly still says what they looked at
    but counts for little next to one they loved.
    """
    values = np.asarray(data.values, dtype=np.float64)
    if data.extra.get("value_column") != "rating" or not len(values):
        return np.clip(values, 1e-3, None)
    low, high = float(values.min()), float(values.max())
    return (values - low + 1.0) / (high - low + 1.0)


# -- image vectors ---------------------------------------------------------------------
def vectors_key(data: Dataset) -> str:
    """Hash of the item ids and their image files' sizes: the cache is stale when either changes."""
    digest = hashlib.sha256()
    for item, rel in zip(data.item_ids, data.image_paths, strict=True):
        path = data.folder / rel if rel else None
        size = path.stat().st_size if path is not None and path.is_file() else -1
        digest.update(f"{item}\t{rel}\t{size}\n".encode())
    return digest.hexdigest()[:16]


def image_vectors(
    data: Dataset, cache_dir: Path, model_cache: Path, backbone: str = "efficientnet_lite0", batch: int = 256
) -> np.ndarray:
    """``(n_items, d)`` L2-normalised vectors of every item's image; failures are zero rows.

    Cached as ``<cache_dir>/<dataset>-<hash>.npy``; a partial run resumes from
    ``.partial.npy`` checkpoints. ``model_cache`` keeps the exported ONNX backbone.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{data.name}-{vectors_key(data)}.npy"
    if target.exists():
        return np.load(target)
    from recommendations.ml.backbones import load_backbone
    from recommendations.ml.embedder import Embedder
    from recommendations.ml.images import ImageRejected, load_image

    embedder = Embedder(load_backbone(backbone), device="auto", cache_dir=model_cache)
    partial = target.with_suffix(".partial.npy")
    out = np.load(partial) if partial.exists() else np.zeros((data.n_items, embedder.dimensions), np.float32)
    done = int(np.count_nonzero(np.abs(out).sum(axis=1) > 0))
    start = (done // batch) * batch
    for lo in range(start, data.n_items, batch):
        images, rows = [], []
        for row in range(lo, min(lo + batch, data.n_items)):
            rel = data.image_paths[row]
            if not rel:
                continue
            try:
                images.append(load_image((data.folder / rel).read_bytes()))
                rows.append(row)
            except (OSError, ImageRejected) as e:
                log.warning("image of item %s unusable: %s", data.item_ids[row], e)
        if images:
            out[rows] = embedder.embed(images)
        np.save(partial, out)
        log.info("embedded %d/%d images", min(lo + batch, data.n_items), data.n_items)
    np.save(target, out)
    partial.unlink(missing_ok=True)
    return out
