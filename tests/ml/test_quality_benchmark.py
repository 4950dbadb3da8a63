"""benchmarks/quality.py end to end on a tiny generated dataset folder (no Cornac)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
RESULT = re.compile(
    r"^RESULT best=\S+ recall50=\d+\.\d+ ndcg12=\d+\.\d+ cold_recall50=(nan|\d+\.\d+) "
    r"peer=\S+ peer_recall50=\d+\.\d+ peer_ndcg12=\d+\.\d+$"
)
COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 210)]


def make_dataset(folder: Path, n_items: int = 60, n_users: int = 30, seed: int = 0) -> None:
    """Three colour groups of products; each user buys from one group; the last items launch late."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    group = np.arange(n_items) % 3
    with open(folder / "items.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "image_path", "title"])
        for i in range(n_items):
            im = Image.new("RGB", (64, 96), COLOURS[group[i]])
            draw = ImageDraw.Draw(im)
            x, y = rng.integers(5, 40, 2)
            draw.ellipse([x, y, x + 20, y + 30], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            im.save(folder / "images" / f"0{i:04d}.png")
            writer.writerow([f"0{i:04d}", f"images/0{i:04d}.png", f"product {i}"])
    late = np.arange(n_items) >= n_items - 9  # bought only at the end: cold in the per-user split
    with open(folder / "interactions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "item_id", "rating", "timestamp"])
        for u in range(n_users):
            own = np.flatnonzero((group == u % 3) & ~late)
            new = np.flatnonzero((group == u % 3) & late)
            days = np.sort(rng.choice(60, size=10, replace=False))
            picks = list(rng.choice(own, size=8, replace=False)) + list(rng.choice(new, size=2, replace=False))
            for day, item in zip(days, picks, strict=True):
                writer.writerow(
                    [f"u{u:03d}", f"0{item:04d}", int(rng.integers(3, 6)), 1_600_000_000 + int(day) * 86_400]
                )


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import quality

    return quality


def test_benchmark_runs_on_a_tiny_dataset(tmp_path, quality, capsys):
    # given
    dataset = tmp_path / "tiny"
    make_dataset(dataset)
    out = tmp_path / "quality.md"
    argv = ["--dataset", str(dataset), "--split-per-user", "0.2", "--no-cornac", "--no-tune", "--bootstrap", "50"]
    # when
    line = quality.main([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    # then
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == line
    assert RESULT.match(line), line
    text = out.read_text()
    assert "## tiny" in text and "--split-per-user 0.2" in text
    for model in ("vbpr", "fusion_concat", "fusion_weighted", "fusion_attention", "implicit_als", "implicit_bpr"):
        assert f"| {model} |" in text
    assert "30 users, 60 items" in text
    # the image vectors are cached for the next run
    assert len(list((tmp_path / "cache").glob("tiny-*.npy"))) == 1


def test_ids_keep_leading_zeros_and_times_parse(tmp_path, quality):
    from _quality_data import load_dataset, parse_time

    make_dataset(tmp_path / "d", n_items=45, n_users=6)
    data = load_dataset(tmp_path / "d")
    assert data.item_ids[0] == "00000"
    assert parse_time("2020-06-01") == parse_time("1590969600") == 1590969600.0
    assert data.values.min() >= 3.0  # read from the `rating` column


def test_benchmark_runs_on_a_ratings_folder_with_the_awkward_cases(tmp_path, quality):
    # given the demo shop as explicit 1-5 ratings with unix times, some items without an image,
    # with a corrupt one, without metadata or missing from items.csv, and shoppers who rated once
    import make_ratings_dataset
    from _quality_data import load_dataset, strengths

    dataset = tmp_path / "ratings"
    make_ratings_dataset.build(dataset, n_products=80, n_users=40, seed=1)
    data = load_dataset(dataset)
    assert data.extra["value_column"] == "rating" and set(np.unique(data.values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert data.timestamps.min() > 1e9  # unix seconds
    weights = strengths(data)
    assert weights[data.values == 1.0].max() == pytest.approx(0.2) and weights[data.values == 5.0].min() == 1.0
    assert "" in data.image_paths  # no image, or not listed in items.csv
    # when
    out = tmp_path / "quality.md"
    argv = ["--dataset", str(dataset), "--no-cornac", "--no-tune", "--bootstrap", "20", "--out", str(out)]
    line = quality.main([*argv, "--cache-dir", str(tmp_path / "cache")])
    # then every model and its no-new-item-prior twin is reported, on the per-user split by default
    assert RESULT.match(line), line
    text = out.read_text()
    assert "each user's last 20%" in text and "explicit ratings" in text
    for model in ("image_cf", "image_cf_noprior", "vbpr_noprior", "fusion_attention_noprior", "item_knn", "sgd_mf"):
        assert f"| {model} |" in text
    assert "| popularity_noprior |" not in text
    assert "nan" not in line.split("peer=")[0]
