"""One contract every registered recommender honours (after implicit's recommender_base_test)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.conf import DEFAULTS
from recommendations.ml import mapped
from recommendations.ml.base import REGISTRY, Recommender

from .conftest import MODEL_NAMES
from .synthetic import tiny

N = 5


def make(name: str) -> Recommender:
    try:
        return REGISTRY[name]()
    except TypeError as e:
        pytest.skip(f"{name} is not default-constructible: {e}")


@pytest.fixture(scope="module")
def data():
    return tiny()


@pytest.fixture(scope="module", params=MODEL_NAMES)
def fitted(request, data):
    user_items, features, context = data
    model = make(request.param)
    assert model.fit(user_items, features, context) is model
    return model


def assert_valid(ids, scores, n_rows, n, n_items, liked: sp.csr_matrix | None = None):
    assert ids.shape == scores.shape == (n_rows, n)
    assert np.issubdtype(ids.dtype, np.integer)
    assert np.issubdtype(scores.dtype, np.floating)
    assert ((ids >= -1) & (ids < n_items)).all()
    assert (np.isneginf(scores) == (ids == -1)).all()
    for row in range(n_rows):
        finite = scores[row][np.isfinite(scores[row])]
        assert (np.diff(finite) <= 1e-6).all(), "scores must be best first"
        assert np.isfinite(scores[row, : len(finite)]).all(), "padding only at the end"
        real = ids[row][ids[row] >= 0]
        assert len(set(real.tolist())) == len(real), "no duplicates"
        if liked is not None:
            assert not set(real.tolist()) & set(liked[row].indices.tolist()), "already-liked item recommended"


def test_registered_names_are_unique():
    assert len({cls.name for cls in REGISTRY.values()}) == len(REGISTRY)
    assert all(name == cls.name for name, cls in REGISTRY.items())


def test_recommend_shapes_order_and_filtering(fitted, data):
    user_items = data[0]
    users = np.arange(user_items.shape[0])
    ids, scores = fitted.recommend(users, user_items[users], N=N)
    assert_valid(ids, scores, len(users), N, user_items.shape[1], liked=user_items[users])
    assert (ids[:, 0] >= 0).all()


def test_items_restriction_and_padding(fitted, data):
    user_items = data[0]
    users = np.array([0, 3])
    allowed = np.array([2, 5, 11, 16])
    ids, scores = fitted.recommend(users, user_items[users], N=8, items=allowed)
    assert_valid(ids, scores, 2, 8, user_items.shape[1], liked=user_items[users])
    assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())
    assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()


def test_more_than_catalogue_is_padded(fitted, data):
    user_items = data[0]
    n_items = user_items.shape[1]
    ids, scores = fitted.recommend(np.array([1]), user_items[[1]], N=n_items + 5, filter_already_liked_items=False)
    assert_valid(ids, scores, 1, n_items + 5, n_items)
    assert (ids[0, n_items:] == -1).all()


def test_batch_equals_one_by_one(fitted, data):
    user_items = data[0]
    users = np.array([4, 0, 7, 2])
    ids, scores = fitted.recommend(users, user_items[users], N=N)
    for row, user in enumerate(users):
        one_ids, one_scores = fitted.recommend(np.array([user]), user_items[[user]], N=N)
        np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5, atol=1e-6)
        finite = np.isfinite(one_scores[0])
        # ties may order differently only between equal scores
        assert set(one_ids[0][finite].tolist()) == set(ids[row][finite].tolist()) or np.allclose(
            np.diff(scores[row][finite]), 0
        )


def test_save_load_round_trip(fitted, data, tmp_path):
    user_items = data[0]
    users = np.arange(user_items.shape[0])
    path = fitted.save(tmp_path / "model.npz")
    ids, scores = fitted.recommend(users, user_items[users], N=N)
    for loaded in (Recommender.load(path), type(fitted).load(path)):
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        new_ids, new_scores = loaded.recommend(users, user_items[users], N=N)
        np.testing.assert_array_equal(new_ids, ids)
        np.testing.assert_allclose(new_scores, scores, rtol=1e-6)


#: Models whose learned arrays are used as stored (the others derive tensors or transposes at load).
SERVED_AS_STORED = {*DEFAULTS["TRAIN_MODELS"], "bpr", "sgd_mf", "visual_similarity"}


def test_mapped_load_shares_the_arrays_and_scores_alike(fitted, data, tmp_path, monkeypatch):
    # given: a saved model, loaded with every array memory-mapped (none too small to map)
    monkeypatch.setattr(mapped, "MMAP_MIN_BYTES", 0)
    user_items = data[0]
    users = np.arange(user_items.shape[0])
    path = fitted.save(tmp_path / "model.npz")
    loaded = Recommender.load(path, mapped=True)
    # then: the arrays of the models serving keeps as stored live in the read-only .npy copies
    if fitted.name in SERVED_AS_STORED:
        arrays = [v for v in vars(loaded).values() if isinstance(v, np.ndarray) and v.size]
        arrays += [m.data for m in vars(loaded).values() if sp.issparse(m) and m.nnz]
        assert arrays and all(mapped.is_mapped(a) and not a.flags.writeable for a in arrays)
    # and: it scores, recommends (also for a new shopper) and finds neighbours as the artifact does
    np.testing.assert_array_equal(
        loaded.score(users, user_items[users]), Recommender.load(path).score(users, user_items[users])
    )
    ids, scores = loaded.recommend(users, user_items[users], N=N)
    want_ids, want_scores = fitted.recommend(users, user_items[users], N=N)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    session = sp.csr_matrix(([4.0, 1.0], ([0, 0], [3, 9])), shape=(1, user_items.shape[1]), dtype=np.float32)
    new_user = np.array([user_items.shape[0] + 10])
    np.testing.assert_allclose(loaded.score(new_user, session), fitted.score(new_user, session), rtol=1e-5, atol=1e-6)
    if fitted.name not in NO_ITEM_SIMILARITY:
        items = np.array([0, 5, 12])
        np.testing.assert_array_equal(loaded.similar_items(items, N=N)[0], fitted.similar_items(items, N=N)[0])


def test_artifact_is_pickle_free(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as arrays:
        for key in arrays.files:
            assert arrays[key].dtype != object


def test_new_user_row_scores(fitted, data):
    user_items = data[0]
    n_users, n_items = user_items.shape
    session = sp.csr_matrix(([4.0, 1.0], ([0, 0], [3, 9])), shape=(1, n_items), dtype=np.float32)
    scores = fitted.score(np.array([n_users + 10]), session)
    assert scores.shape == (1, n_items)
    assert np.isfinite(scores).any()
    ids, _ = fitted.recommend(np.array([n_users + 10]), session, N=N)
    assert ids.shape == (1, N) and not {3, 9} & set(ids[0].tolist())


NO_ITEM_SIMILARITY = {"popularity", "recent_popularity", "user_knn"}


def test_similar_items_contract(fitted, data):
    n_items = data[0].shape[1]
    items = np.array([0, 5, 12])
    if fitted.name in NO_ITEM_SIMILARITY:  # these models rank items for users only, and say so
        with pytest.raises(NotImplementedError):
            fitted.similar_items(items, N=N)
        return
    ids, scores = fitted.similar_items(items, N=N)
    assert_valid(ids, scores, len(items), N, n_items)
    for row, item in enumerate(items):
        assert item not in ids[row]


def test_served_neighbours_of_a_cosine_model_are_its_own(fitted, data):
    """What serving's neighbour index answers (every cell probed) is the model's ``similar_items`` (up to ties)."""
    from recommendations.ml.neighbours import neighbour_index

    vectors = fitted.neighbour_vectors()
    if vectors is None:  # neighbours that are no cosine of vectors: serving asks the model itself
        return
    n_items = data[0].shape[1]
    assert vectors.shape[0] == n_items
    has_vector = np.linalg.norm(vectors, axis=1) > 1e-12
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    exact_ids, exact_scores = fitted.similar_items(np.arange(n_items), N=N)
    for index in (neighbour_index(vectors, n_items, 1), neighbour_index(vectors, 3, 10_000)):
        for item in np.flatnonzero(has_vector):
            ids, scores = index.nearest(int(item), N)
            wanted = exact_scores[item][(exact_ids[item] >= 0) & has_vector[np.maximum(exact_ids[item], 0)]]
            assert item not in ids and len(set(ids.tolist())) == len(ids)
            np.testing.assert_allclose(scores, wanted[: len(scores)], atol=1e-5)  # the model's cosines, best first
            np.testing.assert_allclose(unit[ids] @ unit[item], scores, atol=1e-5)  # each of the listed items
