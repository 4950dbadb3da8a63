"""VBPR and the fusion recommenders: training, structure recovery, cold items, persistence."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.ml.base import REGISTRY, Recommender
from recommendations.ml.evaluation import evaluate
from recommendations.ml.fusion import Fusion
from recommendations.ml.popularity import Popularity
from recommendations.ml.vbpr import VBPR

FUSION_NAMES = ("fusion_concat", "fusion_weighted", "fusion_attention")
FAST = {"vbpr": {"epochs": 12, "lr": 0.02}, **{n: {"epochs": 10, "lr": 0.01} for n in FUSION_NAMES}}


def grouped_data(seed: int = 0, n_groups: int = 4, per_group: int = 30, cold_per_group: int = 5, n_users: int = 160):
    """Users of group g buy items of group g; image vectors cluster by group.

    Popularity is skewed *across* groups (group 0 sells most), so a popularity
    baseline recommends group-0 items to everybody. The last ``cold_per_group``
    items of each group are bought in the test rows only.
    """
    rng = np.random.default_rng(seed)
    n_items = n_groups * per_group
    item_group = np.repeat(np.arange(n_groups), per_group)
    centres = rng.normal(size=(n_groups, 16))
    features = centres[item_group] + 0.3 * rng.normal(size=(n_items, 16))
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    cold = np.zeros(n_items, dtype=bool)
    for g in range(n_groups):
        cold[np.flatnonzero(item_group == g)[-cold_per_group:]] = True
    user_group = rng.choice(n_groups, size=n_users, p=[0.4, 0.2, 0.2, 0.2][:n_groups])
    train, test = np.zeros((n_users, n_items), np.float32), np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        own = np.flatnonzero(item_group == user_group[u])
        warm, new = own[~cold[own]], own[cold[own]]
        picks = rng.choice(warm, size=8, replace=False)
        train[u, picks[:6]] = 1.0
        test[u, picks[6:]] = 1.0
        test[u, rng.choice(new, size=2, replace=False)] = 1.0
    return sp.csr_matrix(train), sp.csr_matrix(test), features, np.flatnonzero(cold), item_group, user_group


@pytest.fixture(scope="module")
def data():
    return grouped_data()


@pytest.fixture(scope="module")
def fitted(data):
    train, _, features, *_ = data
    return {name: REGISTRY[name](**FAST[name]).fit(train, features) for name in ("vbpr", *FUSION_NAMES)}


def test_importing_the_modules_does_not_load_torch():
    import subprocess

    code = "import sys, recommendations.ml.vbpr, recommendations.ml.fusion; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fusion_modes_are_registered():
    assert {"vbpr", "fusion", *FUSION_NAMES} <= set(REGISTRY)
    assert [REGISTRY[n]().mode for n in FUSION_NAMES] == ["concat", "weighted", "attention"]
    with pytest.raises(ValueError):
        Fusion(mode="sum")


@pytest.mark.parametrize("name", ["vbpr", *FUSION_NAMES])
def test_training_reduces_the_loss(data, fitted, name):
    train, _, features, *_ = data
    assert fitted[name].loss_history_[-1] < 0.5  # BPR at chance is log 2 = 0.69
    # without the (already well-ranking) similarity channel, all of it is learned
    model = REGISTRY[name](**FAST[name], **({} if name == "vbpr" else {"sim_dims": 0})).fit(train, features)
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]


def test_softmax_loss_trains_too(data):
    train, _, features, *_ = data
    model = Fusion(mode="weighted", loss="softmax", epochs=4, lr=0.01).fit(train, features)
    assert model.loss_history_[-1] < model.loss_history_[0]


@pytest.mark.parametrize("name", ["vbpr", *FUSION_NAMES])
def test_beats_popularity_on_held_out_interactions(data, fitted, name):
    train, test, features, *_ = data
    baseline = evaluate(Popularity().fit(train, features), train, test, k_list=(10,), n_bootstrap=0)
    result = evaluate(fitted[name], train, test, k_list=(10,), n_bootstrap=0)
    assert result["recall@10"] > baseline["recall@10"] + 0.1
    assert result["cold_recall@10"] > 0.05 and baseline["cold_recall@10"] == 0.0


@pytest.mark.parametrize("name", ["vbpr", *FUSION_NAMES])
def test_cold_items_are_recommended_by_image(data, fitted, name):
    # given: a user of each group; cold items have no training interactions
    train, _, features, cold, item_group, user_group = data
    model = fitted[name]
    users = np.array([np.flatnonzero(user_group == g)[0] for g in range(4)])
    # when: ranking only the cold items
    ids, scores = model.recommend(users, train[users], N=5, items=cold)
    # then: the top cold items come from the user's own group, with finite scores
    assert np.isfinite(scores).all()
    assert (item_group[ids] == user_group[users][:, None]).mean() >= 0.8


@pytest.mark.parametrize("name", ["vbpr", *FUSION_NAMES])
def test_new_user_is_folded_in_from_history(data, fitted, name):
    train, _, _, _, item_group, user_group = data
    model = fitted[name]
    donor = np.flatnonzero(user_group == 2)[0]
    history = train[donor]
    ids, _ = model.recommend(np.array([train.shape[0] + 5]), history, N=5)
    assert (item_group[ids[0]] == 2).mean() >= 0.8


@pytest.mark.parametrize("name", ["vbpr", *FUSION_NAMES])
def test_save_load_gives_identical_scores(tmp_path, data, fitted, name):
    train, *_ = data
    model = fitted[name]
    loaded = Recommender.load(model.save(tmp_path / f"{name}.npz"))
    assert type(loaded) is type(model)
    users = np.array([0, 3, 7, train.shape[0] + 1])
    rows = sp.vstack([train[:3][[0, 1, 2]], train[10]]).tocsr()
    np.testing.assert_array_equal(loaded.score(users, rows), model.score(users, rows))
    np.testing.assert_array_equal(loaded.similar_items(np.array([0, 1]), N=4)[0], model.similar_items([0, 1], 4)[0])


def test_fusion_modes_differ(data, fitted):
    train, *_ = data
    scores = [fitted[n].score(np.arange(20), train[:20]) for n in FUSION_NAMES]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.allclose(scores[a], scores[b], atol=1e-3)


def test_fit_is_deterministic(data):
    train, _, features, *_ = data
    a = VBPR(epochs=2).fit(train, features).score(np.arange(5), train[:5])
    b = VBPR(epochs=2).fit(train, features).score(np.arange(5), train[:5])
    np.testing.assert_array_equal(a, b)


def test_vbpr_without_images_is_bpr(data):
    train, test, *_ = data
    model = VBPR(epochs=3).fit(train)
    assert model.score(np.arange(3), train[:3]).shape == (3, train.shape[1])


def test_recency_weighting_uses_timestamps(data):
    from recommendations.ml.base import FitContext
    from recommendations.ml.pairwise import positives

    train, *_ = data
    stamps = train.copy()
    stamps.data = 1.6e9 + np.linspace(0, 100 * 86_400, stamps.nnz)
    pos = positives(train, FitContext(timestamps=stamps), half_life_days=10.0)
    assert pos.weights[-1] > 100 * pos.weights[0]
    assert pos.weights.sum() == pytest.approx(1.0)
