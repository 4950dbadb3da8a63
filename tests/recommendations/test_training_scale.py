"""Training at catalogue scale: snapshot streamed into arrays, vectors read only when needed, batched ranking."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pgvector import HalfVector

from recommendations import training
from recommendations.data import build_snapshot, item_vectors
from recommendations.ml import evaluation
from recommendations.ml.base import Recommender
from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState, Interaction, ProductSnapshot

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def small_shop(product_factory, settings, tmp_path):
    """6 products (one inactive, one not recommendable), a signed-in user and two sessions, every kind."""
    weights = {
        "view": 1.0,
        "click": 2.0,
        "add_to_cart": 4.0,
        "purchase": 8.0,
        "rating": 3.0,
    }  # a rating is not weighted
    settings.VISREC = {"CACHE_DIR": str(tmp_path), "TRAIN_HOLDOUT_FRACTION": 0.25, "INTERACTION_WEIGHTS": weights}
    products = [product_factory() for _ in range(6)]
    products[4].is_active = False
    products[4].save()
    ProductSnapshot.objects.filter(product=products[5]).update(recommendable=False)
    user = get_user_model().objects.create(username="ann")
    rows = [  # (user, session, product, kind, value, seconds after T0)
        (None, "s-b", 1, "view", 1.0, 5.25),
        (user, "", 0, "purchase", 2.0, 0.0),
        (None, "s-a", 2, "rating", 4.5, 3.0),
        (user, "", 1, "click", 0.0, 3.0),  # a tie in time: the row written first comes first
        (None, "s-a", 4, "purchase", 1.0, 4.0),  # inactive product
        (None, "s-c", 5, "purchase", 1.0, 4.5),  # not recommendable
        (None, "s-a", 3, "add_to_cart", 1.0, 7.000001),
        (user, "", 1, "view", 1.0, 9.0),
    ]
    for u, session, p, kind, value, seconds in rows:
        Interaction.objects.create(
            user=u, session_key=session, product=products[p], kind=kind, value=value,
            created_at=T0 + timedelta(seconds=seconds),
        )  # fmt: skip
    return products, user


def test_snapshot_arrays(small_shop):
    products, user = small_shop
    snapshot = build_snapshot(item_features=False)
    assert snapshot.items.tolist() == sorted(p.pk for p in products[:4])
    col = {int(pk): i for i, pk in enumerate(snapshot.items)}
    # shoppers numbered by first interaction; inactive / not recommendable products left out
    assert snapshot.users.tolist() == [f"u{user.pk}", "ss-a", "ss-b"]  # shopper_key: "s" + session key
    assert snapshot.rows.tolist() == [0, 1, 0, 2, 1, 0]
    assert snapshot.cols.tolist() == [col[products[i].pk] for i in (0, 2, 1, 1, 3, 1)]
    # purchase 8 x 2; rating 4.5 as is; click 2 x (0 -> 1); views 1; add to cart 4
    assert snapshot.values.tolist() == [16.0, 4.5, 2.0, 1.0, 4.0, 1.0]
    assert snapshot.values.dtype == np.float32 and snapshot.rows.dtype == np.int64
    expected = [(T0 + timedelta(seconds=s)).timestamp() for s in (0.0, 3.0, 3.0, 5.25, 7.000001, 9.0)]
    assert snapshot.times.tolist() == expected  # exact to the microsecond
    assert snapshot.item_features is None


def test_snapshot_of_a_shop_without_interactions(product_factory):
    product_factory()
    snapshot = build_snapshot(item_features=False)
    assert len(snapshot.items) == 1 and snapshot.shape == (0, 1) and len(snapshot.rows) == 0
    assert snapshot.times.dtype == np.float64 and snapshot.values.dtype == np.float32


def test_interactions_are_read_with_a_join_not_a_list_of_every_product(small_shop):
    with CaptureQueriesContext(connection) as queries:
        build_snapshot(item_features=False)
    sql = next(q["sql"] for q in queries.captured_queries if "recommendations_interaction" in q["sql"])
    assert "recommendations_productsnapshot" in sql  # a semi-join on visrec's snapshots
    pks = [str(p.pk) for p in small_shop[0][:4]]
    assert f"({', '.join(pks)})" not in sql  # not IN (<every live pk>)


@pytest.fixture
def vectors(small_shop):
    """Primary-image vectors of products 0, 2, 4 (4 inactive); a secondary image of product 1."""
    products, _ = small_shop
    model = EmbeddingModel.objects.create(key="t", backbone="t", weights_sha256="0", dimensions=5, is_active=True)
    rng = np.random.default_rng(0)
    stored = {}
    for i, primary in ((0, True), (2, True), (4, True), (1, False)):
        image = ImageState.objects.create(product=products[i], key=f"k{i}", is_primary=primary, status="ready")
        v = rng.normal(size=5).astype(np.float16)
        ImageEmbedding.objects.create(image=image, model=model, vector=HalfVector(v))
        stored[i] = v.astype(np.float32)
    return model, stored


def test_item_vectors_are_the_stored_halfvecs_in_column_order(small_shop, vectors):
    products, _ = small_shop
    model, stored = vectors
    snapshot = build_snapshot()
    col = {int(pk): i for i, pk in enumerate(snapshot.items)}
    assert snapshot.item_features.shape == (4, 5) and snapshot.item_features.dtype == np.float32
    np.testing.assert_array_equal(snapshot.item_features[col[products[0].pk]], stored[0])
    np.testing.assert_array_equal(snapshot.item_features[col[products[2].pk]], stored[2])
    assert not snapshot.item_features[col[products[1].pk]].any()  # only a secondary image
    assert not snapshot.item_features[col[products[3].pk]].any()  # no image
    # a subset of the live products, in its own column order
    subset = np.array(sorted([products[2].pk, products[3].pk]), dtype=np.int64)
    got = item_vectors(subset, model)
    np.testing.assert_array_equal(got[list(subset).index(products[2].pk)], stored[2])


def test_a_model_without_item_features_trains_without_reading_vectors(small_shop, vectors):
    assert not training.registry()["als"].needs_item_features
    with CaptureQueriesContext(connection) as queries:
        version = training.train(["popularity"])
    assert version.kind == "popularity"
    assert not [q for q in queries.captured_queries if "recommendations_imageembedding" in q["sql"]]


def test_a_visual_model_gets_the_vectors(small_shop, vectors, monkeypatch):
    seen = []
    fit = training.fit_model

    def spy(kind, params, snapshot, mask):
        seen.append(snapshot.item_features)
        return fit(kind, params, snapshot, mask)

    monkeypatch.setattr(training, "fit_model", spy)
    training.train(["visual_similarity"])
    assert seen and all(f is not None and f.shape == (4, 5) for f in seen)


@pytest.mark.parametrize("kind", [k for k, cls in sorted(training.registry().items()) if not cls.needs_item_features])
def test_models_that_say_they_need_no_item_features_ignore_them(kind):
    """The flag must be true: fitted with and without image vectors, such a model scores alike."""
    rng = np.random.default_rng(0)
    user_items = sp.random(30, 12, density=0.3, format="csr", random_state=1, dtype=np.float32)
    user_items.data[:] = 1.0
    features = rng.normal(size=(12, 4)).astype(np.float32)
    users = np.arange(30)
    with_features = training.registry()[kind]().fit(user_items, features)
    without = training.registry()[kind]().fit(user_items, None)
    np.testing.assert_array_equal(with_features.score(users, user_items), without.score(users, user_items))


class _Recorder(Recommender):
    """Scores ``-(user + item)``; records each ``recommend`` batch's size."""

    name = "_recorder"

    def __init__(self) -> None:
        self.batches = []

    def fit(self, user_items, item_features=None, context=None, show_progress=False):
        return self

    def score(self, userids, user_items):
        return -(np.asarray(userids)[:, None] + np.arange(user_items.shape[1])[None, :]).astype(np.float32)

    def recommend(self, userids, user_items, N=10, filter_already_liked_items=True, items=None):
        self.batches.append(len(userids))
        return super().recommend(userids, user_items, N, filter_already_liked_items, items)


def test_evaluation_ranks_in_batches_of_bounded_size(monkeypatch):
    train = sp.csr_matrix(np.eye(40, 100, dtype=np.float32))
    users = np.arange(40)
    whole = evaluation.recommend_all(_Recorder(), users, train, 5)
    monkeypatch.setattr(evaluation, "MAX_SCORES", 1000)  # 10 users x 100 items at once
    model = _Recorder()
    batched = evaluation.recommend_all(model, users, train, 5)
    assert model.batches == [10, 10, 10, 10]
    np.testing.assert_array_equal(batched, whole)


def test_judgement_agreement_asks_for_anchors_in_bounded_batches(monkeypatch):
    monkeypatch.setattr(evaluation, "MAX_SCORES", 300)  # 3 anchors x 100 items
    calls = []

    def similar(itemids, n):
        calls.append(len(itemids))
        return (np.asarray(itemids)[:, None] + np.arange(1, n + 1)[None, :]) % 100, np.zeros((len(itemids), n))

    pairs = np.array([[i, i + 1] for i in range(7)])
    got = evaluation.judgement_agreement(similar, pairs, np.ones(7), k=2, n_items=100)
    assert calls == [3, 3, 1] and got["judged_good_in_top@2"] == 1.0
