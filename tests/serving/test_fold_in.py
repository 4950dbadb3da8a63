"""Fold-in: a shopper the active model never saw gets its ranking from their first events, without a retrain."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import scipy.sparse as sp
from django.contrib.auth import get_user_model
from django.utils import timezone

from recommendations import serving, training
from recommendations.models import Interaction, ModelVersion

pytestmark = pytest.mark.django_db

GROUPS, PER_GROUP = 4, 5


def _event(product, kind="view", ago_minutes=0.0, **shopper):
    created = timezone.now() - timedelta(minutes=ago_minutes)
    return Interaction.objects.create(product=product, kind=kind, created_at=created, **shopper)


@pytest.fixture
def groups(product_factory, category_factory, settings, tmp_path):
    """Four groups of five products (no images: no session taste, the model alone ranks) and an ALS
    trained on shoppers who each view all of one group; group 0 is by far the most popular."""
    settings.VISREC = {**settings.VISREC, "CACHE_DIR": str(tmp_path), "TRAIN_HOLDOUT_FRACTION": 0.2}
    category = category_factory("Everything")
    products = [[product_factory(category=category) for _ in range(PER_GROUP)] for _ in range(GROUPS)]
    shoppers = [0] * 36 + [g for g in range(1, GROUPS) for _ in range(12)]
    for n, group in enumerate(shoppers):
        for i, product in enumerate(products[group]):
            _event(product, "view", ago_minutes=2000 - n * 10 - i, session_key=f"trained{n}")
    version = training.train(["als"])
    assert version.is_active and version.kind == "als"
    serving.forget_active()
    return products, version


@pytest.mark.parametrize("signed_in", [False, True])
def test_a_new_shoppers_first_events_steer_the_active_als(groups, signed_in):
    products, version = groups
    cold = serving.for_you(session_key="someone-else", limit=4)
    assert {p.pk for p in products[0]} >= set(cold.product_ids)  # cold: the popular group
    # given a shopper unknown at training time
    shopper = (
        {"user": get_user_model().objects.create_user("newcomer", password="x" * 12)}
        if signed_in
        else {"session_key": "newcomer"}
    )
    versions = ModelVersion.objects.count()
    # when they make three events in group 2
    seen = products[2][:3]
    for n, (product, kind) in enumerate(zip(seen, ["view", "view", "add_to_cart"], strict=True)):
        _event(product, kind, ago_minutes=3 - n, **shopper)
    rec = serving.for_you(limit=4, **shopper)
    # then, with no retrain, the active ALS ranks the rest of group 2 first, not the popular group
    assert ModelVersion.objects.count() == versions and ModelVersion.objects.active().pk == version.pk
    assert rec.model_version_id == version.pk and rec.source == "model"
    assert set(rec.product_ids[:2]) == {p.pk for p in products[2][3:]}
    assert {r.reason for r in rec.items[:2]} == {"model"}
    assert rec.product_ids != cold.product_ids
    assert not {p.pk for p in seen} & set(rec.product_ids)


def test_the_next_event_moves_the_folded_in_list(groups):
    products, _ = groups
    _event(products[1][0], "view", ago_minutes=2, session_key="mover")
    first = serving.for_you(session_key="mover", limit=3)
    assert set(first.product_ids[:3]) <= {p.pk for p in products[1]}
    # a purchase in group 3 weighs more than the view (training's weights): the list follows it
    _event(products[3][0], "purchase", ago_minutes=1, session_key="mover")
    second = serving.for_you(session_key="mover", limit=3)
    assert set(second.product_ids[:3]) <= {p.pk for p in products[3]}


def test_als_fold_in_is_implicits_recalculate_user():
    from implicit.cpu.als import AlternatingLeastSquares

    from recommendations.ml.mf import ALS

    rng = np.random.default_rng(0)
    matrix = sp.random(120, 200, density=0.04, random_state=1, format="csr", dtype=np.float32)
    matrix.data[:] = rng.integers(1, 5, len(matrix.data))
    ours = ALS(factors=16, regularization=0.5, iterations=4, prior_weight=0.0).fit(matrix)
    theirs = AlternatingLeastSquares(factors=16, regularization=0.5, alpha=ours.alpha)
    theirs.user_factors, theirs.item_factors = ours.user_factors.copy(), ours.item_factors.copy()
    for user in (0, 7, 42):
        expected = theirs.recalculate_user(user, matrix[user])
        np.testing.assert_allclose(ours._fold_in(matrix[user])[0], expected, rtol=1e-4, atol=1e-5)
