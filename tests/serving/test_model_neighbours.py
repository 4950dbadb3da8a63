"""A model's item neighbours are searched among a bounded pool of items: exact when the model has no more."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.ml.knn import ItemKNN
from recommendations.ml.mf import ALS, BPR
from recommendations.ml.visual import ImageCF
from recommendations.serving.versions import KeyIndex, LoadedModel, neighbour_pool

N_ITEMS = 90


def _als(seed: int = 0) -> ALS:
    rng = np.random.default_rng(seed)
    model = ALS(factors=8, regularization=0.1, prior_weight=0.3)
    model.item_factors = rng.standard_normal((N_ITEMS, 8)).astype(np.float32)
    model.item_factors[::9] = 0.0  # never bought: no factors
    model.prior = rng.standard_normal(N_ITEMS).astype(np.float32)
    return model


def _bpr(seed: int = 1) -> BPR:
    rng = np.random.default_rng(seed)
    model = BPR(factors=6)
    model.item_factors = rng.standard_normal((N_ITEMS, 7)).astype(np.float32)
    model.item_factors[:, -1] *= 50  # a large item bias, which is no part of the similarity
    model.prior = rng.standard_normal(N_ITEMS).astype(np.float32)
    return model


def _image_cf(seed: int = 2) -> ImageCF:
    rng = np.random.default_rng(seed)
    model = ImageCF(whiten=0, popularity_weight=0.3)
    features = rng.standard_normal((N_ITEMS, 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    model.has_image = np.ones(N_ITEMS, dtype=bool)
    model.has_image[5::11] = False
    model.features = np.where(model.has_image[:, None], features, 0.0).astype(np.float32)
    model.prior = rng.standard_normal(N_ITEMS).astype(np.float32)
    return model


def _serving(model) -> LoadedModel:
    items = np.arange(1000, 1000 + N_ITEMS, dtype=np.int64)
    return LoadedModel(1, model, items, KeyIndex(items), KeyIndex(np.array([], dtype=str)))


MODELS = [_als, _bpr, _image_cf]


@pytest.mark.parametrize("make", MODELS, ids=["als", "bpr", "image_cf"])
def test_with_no_more_items_than_the_pool_the_neighbours_are_the_models_own(make):
    model = make()
    served = _serving(model)
    served.pool = neighbour_pool(model, size=N_ITEMS)
    has_vector = np.linalg.norm(model.neighbour_vectors(), axis=1) > 0
    exact_ids, exact_scores = model.similar_items(np.arange(N_ITEMS), N=8)
    for col in range(N_ITEMS):
        ids, scores = served.similar_items(col, 8)
        if not has_vector[col]:  # never bought, or no image: no neighbours of its own
            assert ids.tolist() == []
            continue
        assert ids.tolist() == exact_ids[col].tolist()
        np.testing.assert_allclose(scores, exact_scores[col], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", MODELS, ids=["als", "bpr", "image_cf"])
def test_a_smaller_pool_holds_the_most_popular_items_and_answers_exactly_within_them(make):
    model = make()
    pool = neighbour_pool(model, size=25)
    vectors = model.neighbour_vectors()
    has_vector = np.linalg.norm(vectors, axis=1) > 0
    # the pool: the 25 items with a vector the model saw most often in training
    popular = np.argsort(-np.where(has_vector, model.prior, -np.inf), kind="stable")[:25]
    assert pool.cols.tolist() == sorted(popular.tolist())
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    inside = set(pool.cols.tolist())
    for col in np.flatnonzero(has_vector):  # anchors inside and outside the pool alike
        ids, scores = pool.nearest(int(col), 8)
        assert set(ids.tolist()) <= inside - {int(col)}
        cosines = unit[pool.cols] @ unit[col]
        cosines[pool.cols == col] = -np.inf
        expected = pool.cols[np.argsort(-cosines, kind="stable")[:8]]
        assert ids.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, np.sort(cosines)[::-1][:8], rtol=1e-5, atol=1e-6)


def test_a_model_whose_neighbours_are_no_cosine_answers_itself():
    model = ItemKNN()
    assert model.neighbour_vectors() is None
    assert neighbour_pool(model, size=10) is None
