"""benchmarks/quality.py end to end on a tiny generated dataset folder (no Cornac)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
RESULT = re.compile(
    r"^RESULT best=\S+ recall50=\d+\.\d+ ndcg12=\d+\.\d+ cold_recall50=(nan|\d+\.\d+) "
    r"peer=\S+ peer_recall50=\d+\.\d+ peer_ndcg12=\d+\.\d+ diff_lo=-?\d+\.\d+$"
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


# -- contract version 2 -------------------------------------------------------------------
def _outcome(quality, name, kind, val, test, per_user):
    metrics = {"recall@50": test, "ndcg@12": test / 3, "cold_recall@50": 0.0}
    return quality.Outcome(name, kind, metrics, 1.0, {}, val_recall50=val, per_user_recall50=np.asarray(per_user))


def test_best_is_chosen_by_validation_and_the_peer_by_the_test_period(quality):
    # given two of our models, the better on validation being the worse on test, and two peers
    rng = np.random.default_rng(0)
    users = rng.uniform(0.0, 0.2, 300)
    outcomes = [
        _outcome(quality, "steady", "visrec", val=0.05, test=0.030, per_user=users + 0.01),
        _outcome(quality, "lucky", "visrec", val=0.04, test=0.060, per_user=users + 0.04),
        _outcome(quality, "lucky_noprior", "ablation", val=0.09, test=0.090, per_user=users + 0.07),
        _outcome(quality, "weak_peer", "peer", val=0.08, test=0.010, per_user=users - 0.01),
        _outcome(quality, "strong_peer", "peer", val=0.01, test=0.020, per_user=users),
    ]
    # when
    line = quality.result_line(outcomes, n_bootstrap=200)
    # then best is what validation picks (never an ablation), the peer the strongest on test
    assert line.startswith("RESULT best=steady recall50=0.0300 ")
    assert " peer=strong_peer peer_recall50=0.0200 " in line
    assert RESULT.match(line), line
    # and diff_lo is the paired interval's lower end: +0.01 for every user, so exactly 0.01
    assert line.endswith(" diff_lo=0.0100")


def _split(quality, user_items, context, relevant):
    from recommendations.ml.blend import prior_options

    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(user_items.indptr) > 0))
    return quality.Split(user_items, context, relevant, users, "", prior_options(user_items, context))


def test_the_popularity_prior_is_offered_to_peers_and_kept_only_where_it_helps(quality):
    from _quality_runners import implicit_runner

    from .synthetic import clustered

    # given taste data (users buy within their group) ...
    data = clustered(seed=3)
    taste = _split(quality, data.train, data.context, data.test)
    # ... and the same interactions where every held-out purchase is a best-seller
    counts = np.asarray(data.train.getnnz(axis=0))
    top = np.argsort(-counts)[:5]
    rows = np.repeat(np.arange(data.train.shape[0]), 5)
    best_sellers = sp.csr_matrix(
        (np.ones(len(rows)), (rows, np.tile(top, data.train.shape[0]))), shape=data.train.shape
    )
    best_sellers = (best_sellers - best_sellers.multiply(data.train != 0)).tocsr()
    best_sellers.eliminate_zeros()
    popular = _split(quality, data.train, data.context, best_sellers)
    grid = [{"factors": 8, "regularization": 0.1, "iterations": 10, "random_state": 0}]
    # when implicit's ALS is tuned on each
    _, taste_weight, _, _ = quality.choose("implicit_als", grid, implicit_runner("als"), taste)
    _, popular_weight, popular_key, popular_recall = quality.choose(
        "implicit_als", grid, implicit_runner("als"), popular
    )
    # then the blend stays off where taste is all, and is used where popularity is all
    assert taste_weight == 0.0
    assert popular_weight > 0.0 and popular_key is not None and popular_recall > 0.9


def test_our_als_grid_holds_the_plain_implicit_configuration_so_it_cannot_validate_below_it(quality):
    from _quality_runners import implicit_runner, visrec_runner

    from recommendations.ml.mf import ALS

    from .synthetic import clustered

    assert all(c in quality.GRIDS["als"] for c in quality.PEER_GRIDS["implicit_als"])
    data = clustered(seed=5)
    split = _split(quality, data.train, data.context, data.test)
    grid = [{"factors": 8, "regularization": r, "alpha": 1.0, "iterations": 10, "random_state": 0} for r in (0.01, 1.0)]
    *_, ours = quality.choose("als", grid, visrec_runner(ALS, None), split)
    *_, peer = quality.choose("implicit_als", grid, implicit_runner("als"), split)
    assert ours >= peer - 1e-9


def test_hybrids_and_image_models_can_fall_back_to_their_plain_part(quality):
    """Validation can only pick what the grid offers: a configuration without the visual part, weight 0 first."""
    from recommendations.ml.blend import PRIOR_WEIGHTS

    assert PRIOR_WEIGHTS[0] == 0.0
    assert any(c.get("visual_factors") == 0 for c in quality.GRIDS["vbpr"])
    for mode in ("concat", "weighted", "attention"):
        assert any(c.get("sim_dims") == 0 for c in quality.GRIDS[f"fusion_{mode}"])
    assert all(len(g) <= quality.BUDGET for g in [*quality.GRIDS.values(), *quality.PEER_GRIDS.values()])
