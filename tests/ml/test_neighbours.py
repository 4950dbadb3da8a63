"""A model's item neighbours with bounded work per query: exact up to a size, an inverted file past it."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.ml.knn import ItemKNN
from recommendations.ml.mf import ALS, BPR
from recommendations.ml.neighbours import inner_product_vectors, neighbour_index
from recommendations.ml.visual import ImageCF

N_ITEMS = 90


def _als(seed: int = 0) -> ALS:
    rng = np.random.default_rng(seed)
    model = ALS(factors=8, regularization=0.1, prior_weight=0.3)
    model.item_factors = rng.standard_normal((N_ITEMS, 8)).astype(np.float32)
    model.item_factors[::9] = 0.0  # never bought: no factors
    return model


def _bpr(seed: int = 1) -> BPR:
    rng = np.random.default_rng(seed)
    model = BPR(factors=6)
    model.item_factors = rng.standard_normal((N_ITEMS, 7)).astype(np.float32)
    model.item_factors[:, -1] *= 50  # a large item bias, which is no part of the similarity
    return model


def _image_cf(seed: int = 2) -> ImageCF:
    rng = np.random.default_rng(seed)
    model = ImageCF(whiten=0, popularity_weight=0.3)
    features = rng.standard_normal((N_ITEMS, 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    model.has_image = np.ones(N_ITEMS, dtype=bool)
    model.has_image[5::11] = False
    model.features = np.where(model.has_image[:, None], features, 0.0).astype(np.float32)
    return model


MODELS = pytest.mark.parametrize("make", [_als, _bpr, _image_cf], ids=["als", "bpr", "image_cf"])


def _assert_models_own(model, index) -> None:
    has_vector = np.linalg.norm(model.neighbour_vectors(), axis=1) > 0
    exact_ids, exact_scores = model.similar_items(np.arange(N_ITEMS), N=8)
    for col in range(N_ITEMS):
        ids, scores = index.nearest(col, 8)
        if not has_vector[col]:  # never bought, or no image: no neighbours of its own
            assert ids.tolist() == []
            continue
        assert ids.tolist() == exact_ids[col].tolist()
        np.testing.assert_allclose(scores, exact_scores[col], rtol=1e-5, atol=1e-6)


@MODELS
def test_up_to_the_exact_size_the_neighbours_are_the_models_own(make):
    model = make()
    index = neighbour_index(model.neighbour_vectors(), exact_max=N_ITEMS, probes=1)
    assert index.exact
    _assert_models_own(model, index)


@MODELS
def test_past_the_exact_size_probing_every_cell_still_gives_the_models_own(make):
    model = make()
    index = neighbour_index(model.neighbour_vectors(), exact_max=20, probes=1_000)
    assert len(index.offsets) - 1 == round(np.sqrt(len(index.cols))) and not index.exact
    _assert_models_own(model, index)


def test_probing_a_few_cells_scores_few_items_and_finds_nearly_all_true_neighbours():
    # given: 20,000 items in 200 styles (vectors near their style's centre)
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((200, 32)).astype(np.float32)
    style = rng.integers(0, 200, 20_000)
    vectors = centres[style] + 0.5 * rng.standard_normal((20_000, 32)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = neighbour_index(vectors, exact_max=1_000, probes=8)
    cells = len(index.offsets) - 1
    assert cells == 141 and not index.exact
    hits = []
    for col in rng.integers(0, 20_000, 40):
        ids, scores = index.nearest(int(col), 8)
        cosines = unit @ unit[col]
        cosines[col] = -np.inf
        exact = np.argsort(-cosines)[:8]
        # then: what it returns is ranked by true cosine, never the item itself ...
        assert col not in ids
        np.testing.assert_allclose(scores, cosines[ids], rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(scores) <= 0)
        hits.append(len(set(ids.tolist()) & set(exact.tolist())) / 8)
    # ... and nearly all of the exact top 8, from 8 of 141 cells (about 6% of the items scored)
    assert np.mean(hits) >= 0.9


def test_a_model_whose_neighbours_are_no_cosine_has_no_vectors():
    assert ItemKNN().neighbour_vectors() is None


def test_inner_product_made_cosine_ranks_as_the_inner_product_and_never_finds_zero_rows():
    rng = np.random.default_rng(4)
    codes = rng.standard_normal((500, 9)).astype(np.float32) * rng.uniform(0.1, 3.0, (500, 1)).astype(np.float32)
    codes[::50] = 0.0  # products without an image
    searched = inner_product_vectors(codes)
    longest = np.linalg.norm(codes, axis=1).max()
    np.testing.assert_allclose(np.linalg.norm(searched[codes.any(axis=1)], axis=1), longest, rtol=1e-5)
    index = neighbour_index(searched, exact_max=1_000, probes=1)
    for query in rng.standard_normal((20, 9)).astype(np.float32):
        ids, cosines = index.search(np.append(query, 0.0), 12, skip=7)
        products = np.where(codes.any(axis=1), codes @ query, -np.inf)
        products[7] = -np.inf
        assert ids.tolist() == np.argsort(-products, kind="stable")[:12].tolist()
        np.testing.assert_allclose(cosines * np.linalg.norm(query) * longest, products[ids], rtol=1e-4, atol=1e-4)


def test_inner_product_search_past_the_exact_size_reads_few_codes_and_finds_nearly_all_best():
    # given: 20,000 codes in 200 styles of different lengths (a prior that favours some styles)
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((200, 16)).astype(np.float32)
    style = rng.integers(0, 200, 20_000)
    codes = centres[style] + 0.4 * rng.standard_normal((20_000, 16)).astype(np.float32)
    codes *= rng.uniform(0.5, 1.5, 200)[style, None].astype(np.float32)
    index = neighbour_index(inner_product_vectors(codes), exact_max=1_000, probes=8)
    assert not index.exact
    hits = []
    for anchor in rng.integers(0, 200, 40):
        query = centres[anchor] + 0.4 * rng.standard_normal(16).astype(np.float32)
        ids, _ = index.search(np.append(query, 0.0), 12)
        best = np.argsort(-(codes @ query))[:12]
        hits.append(len(set(ids.tolist()) & set(best.tolist())) / 12)
    # then: 8 of 141 cells give nearly all of the best 12 by inner product
    assert np.mean(hits) >= 0.9
