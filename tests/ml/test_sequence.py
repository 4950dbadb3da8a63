"""The sequence models (SASRec, GRU4Rec): order matters, pictures carry never-bought items, numpy = torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.ml.base import FitContext, Recommender
from recommendations.ml.evaluation import recall_at_k
from recommendations.ml.popularity import Popularity
from recommendations.ml.sequence import GRU4Rec, SASRec, ordered_histories, training_windows

from .synthetic import tiny

N_GROUPS = 8
PER_GROUP = 30


def sequential(n_users: int = 300, seed: int = 0):
    """Shoppers walk the groups in order: an item of group g is followed by one of group g + 1.

    (or, one time in five, by one of a random group: a new errand)
    Which group a shopper starts in is random, so every group is equally popular and
    popularity alone cannot tell what comes next; the last event of each shopper is
    held out. Image vectors cluster by group. The last item of each group is never
    bought (a new product with a picture like its group's).
    """
    rng = np.random.default_rng(seed)
    n_items = N_GROUPS * PER_GROUP
    group = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    centres = rng.normal(size=(N_GROUPS, 16))
    features = centres[group] + 0.3 * rng.normal(size=(n_items, 16))
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    popular = rng.pareto(1.5, PER_GROUP - 1) + 0.1  # within a group some items sell more
    rows, held = [], []
    for user in range(n_users):
        g = rng.integers(N_GROUPS)
        length = rng.integers(4, 12)
        for t in range(length):
            item = g * PER_GROUP + rng.choice(PER_GROUP - 1, p=popular / popular.sum())
            (held if t == length - 1 else rows).append((user, item, float(t)))
            g = rng.integers(N_GROUPS) if rng.random() < 0.2 else (g + 1) % N_GROUPS
    users, items, stamps = (np.array(c) for c in zip(*rows, strict=True))
    shape = (n_users, n_items)
    train = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    train.data[:] = 1.0
    context = FitContext(timestamps=sp.csr_matrix((stamps + 1.6e9, (users, items)), shape=shape))
    test_users, test_items, _ = (np.array(c) for c in zip(*held, strict=True))
    test = sp.csr_matrix((np.ones(len(test_users)), (test_users, test_items)), shape=shape)
    test = (test - test.multiply(train != 0)).tocsr()
    test.eliminate_zeros()
    return train, features, context, test, group


@pytest.fixture(scope="module")
def data():
    return sequential()


FAST = {"epochs": 20, "batch_size": 32, "lr": 3e-3, "dim": 32, "negatives": 128, "prior_weight": 0.0, "device": "cpu"}


@pytest.fixture(scope="module", params=[SASRec, GRU4Rec], ids=lambda c: c.name)
def fitted(request, data):
    train, features, context, _, _ = data
    return request.param(**FAST).fit(train, features, context)


def recall(model: Recommender, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10) -> float:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, train[users], N=k)
    return float(recall_at_k(ids, test[users], k).mean())


def test_histories_follow_time_and_windows_cover_every_transition():
    user_items = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 0, 1]], dtype=np.float32))
    stamps = sp.csr_matrix(np.array([[30, 10, 20, 0], [0, 5, 0, 1]], dtype=np.float64))
    histories = ordered_histories(user_items, FitContext(timestamps=stamps))
    assert [h.tolist() for h in histories] == [[1, 2, 0], [3, 1]]
    windows, _ = training_windows([np.arange(7)], max_len=3)  # 6 transitions, windows of 4 items
    transitions = {(a, b) for w in windows for a, b in zip(w[:-1], w[1:], strict=True) if b >= 0}
    assert transitions == {(i, i + 1) for i in range(6)}
    assert sum(int((w[1:] >= 0).sum()) for w in windows) == 6


def test_beats_popularity_when_order_is_the_signal(fitted, data):
    train, features, context, test, _ = data
    baseline = recall(Popularity().fit(train, features, context), train, test)
    ours = recall(fitted, train, test)
    assert ours > 1.5 * baseline and ours > 0.5, (ours, baseline)


def test_the_latest_event_decides_what_comes_next(fitted, data):
    _, _, _, _, group = data
    # the same items, in two orders: the recommendations follow the one that came last
    a, b = 2 * PER_GROUP + 1, 5 * PER_GROUP + 1
    ids, _ = fitted.recommend_sequences([np.array([a, b]), np.array([b, a])], N=10)
    assert np.mean(group[ids[0]] == 6) >= 0.6
    assert np.mean(group[ids[1]] == 3) >= 0.6


def test_never_bought_item_is_scored_by_its_picture(fitted, data):
    train, _, _, _, group = data
    new = np.arange(N_GROUPS) * PER_GROUP + PER_GROUP - 1  # the last item of each group
    assert train[:, new].nnz == 0
    after_group_3 = np.array([3 * PER_GROUP + 2])
    scores = fitted.score_sequences([after_group_3])[0]
    new_in_4 = new[group[new] == 4][0]
    others = new[group[new] != 4]
    assert scores[new_in_4] > scores[others].max()
    # and it ranks above most items of the wrong groups
    wrong = np.flatnonzero(group != 4)
    assert (scores[new_in_4] > scores[wrong]).mean() > 0.9


def test_never_bought_item_in_the_session_carries_the_sequence(fitted, data):
    train, _, _, _, group = data
    new = np.arange(N_GROUPS) * PER_GROUP + PER_GROUP - 1
    new_in_1 = new[group[new] == 1][0]
    ids, _ = fitted.recommend_sequences([np.array([new_in_1])], N=10)
    assert np.mean(group[ids[0]] == 2) >= 0.5


def torch_twin(fitted, data):
    """The torch module of ``fitted`` with its learned weights (the reference the numpy pass must match)."""
    import torch

    from recommendations.ml.sequence import _torch_net

    train, features, _, _, _ = data
    net = _torch_net(fitted.encoder, train.shape[1], features.shape[1], fitted._net_params())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in fitted.net_.items()})
    return net.eval()


def test_numpy_forward_matches_torch(fitted, data):
    import torch

    net = torch_twin(fitted, data)
    seqs = [np.array([3, 40, 77, 120]), np.array([5]), np.arange(0, 200, 3)[:50]]
    with torch.no_grad():
        expected = []
        for seq in seqs:
            x = torch.from_numpy(fitted.item_vectors_[seq][None])
            expected.append(net.encode(x)[0, -1].numpy())
    np.testing.assert_allclose(fitted.encode_sequences(seqs), np.stack(expected), rtol=1e-4, atol=1e-4)


def test_session_scores_match_torch_when_the_session_is_longer_than_the_model_reads(fitted, data):
    import torch

    # given a session of 70 events: the model reads the newest max_len (50) of them
    net = torch_twin(fitted, data)
    session = np.random.default_rng(3).permutation(len(fitted.item_vectors_))[:70]
    with torch.no_grad():
        h = net.encode(torch.from_numpy(fitted.item_vectors_[session[-fitted.max_len :]][None]))[0, -1].numpy()
    expected = fitted.item_vectors_ @ h + fitted.item_bias_
    # when
    scores = fitted.sequence_scores([session])[0]
    ids, _ = fitted.recommend_sequences([session], N=20, filter_seen=False)
    # then
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ids[0], np.argsort(-expected, kind="stable")[:20])


def test_a_model_reloaded_in_place_serves_the_new_artifact(fitted, data, tmp_path):
    # given a serving model that has already answered a request (its forward matrices prepared) ...
    train, features, context, _, _ = data
    other = type(fitted)(**{**FAST, "epochs": 2, "seed": 7}).fit(train, features, context)
    serving = Recommender.load(other.save(tmp_path / "old.npz"))
    session = [np.array([3, 40, 77, 120, 5])]
    serving.recommend_sequences(session, N=10)
    # when another artifact is loaded into it
    serving.set_state(fitted.get_state())
    # then it ranks exactly as the model that was fitted
    ids, scores = serving.recommend_sequences(session, N=10)
    expected_ids, expected_scores = fitted.recommend_sequences(session, N=10)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


def test_training_is_deterministic(data):
    train, features, context, _, _ = data
    one = SASRec(**{**FAST, "epochs": 2}).fit(train, features, context)
    two = SASRec(**{**FAST, "epochs": 2}).fit(train, features, context)
    np.testing.assert_array_equal(one.item_vectors_, two.item_vectors_)


def test_validated_prior_weight_is_one_of_the_candidates():
    user_items, features, context = tiny()
    model = GRU4Rec(epochs=2, dim=16, negatives=32, device="cpu").fit(user_items, features, context)
    assert model.weight in model.prior_weights


def test_serving_a_loaded_artifact_never_imports_torch(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.npz")
    code = (
        "import sys, numpy as np\n"
        "from recommendations.ml.base import Recommender\n"
        "import recommendations.ml.sequence\n"
        f"m = Recommender.load({str(path)!r})\n"
        "ids, _ = m.recommend_sequences([np.arange(50)], N=5)\n"
        "assert (ids >= 0).all()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
