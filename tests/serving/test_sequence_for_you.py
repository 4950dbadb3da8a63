"""For you with an active sequence model (SASRec): ranked from the shopper's own events, in order."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from recommendations import serving, training
from recommendations.data import build_snapshot
from recommendations.models import Interaction

pytestmark = pytest.mark.django_db

N_CATEGORIES = 4
PARAMS = {"epochs": 40, "batch_size": 16, "lr": 3e-3, "dim": 32, "negatives": 32, "prior_weight": 0.0, "device": "cpu"}


def _event(product, kind="view", ago_minutes=0.0, **shopper):
    return Interaction.objects.create(
        product=product, kind=kind, created_at=timezone.now() - timedelta(minutes=ago_minutes), **shopper
    )


@pytest.fixture
def walk_shop(vector_catalog, settings, tmp_path):
    """Shoppers walk the categories in order (C0 -> C1 -> C2 -> C3 -> C0 ...); a SASRec learns it and is active.

    The product pictures are random: only the order of the events tells what comes next.
    """
    settings.VISREC = {**settings.VISREC, "CACHE_DIR": str(tmp_path), "FOR_YOU_BLEND": {"model": 1.0, "session": 0.0}}
    products, _ = vector_catalog(n=40, in_stock_share=1.0, dims=16, seed=5)
    by_category = [[p for p in products if p.category.name == f"C{c}"] for c in range(N_CATEGORIES)]
    rng = np.random.default_rng(0)
    events = []
    for n in range(80):
        category = int(rng.integers(N_CATEGORIES))
        for step in range(6):
            product = by_category[category][int(rng.integers(len(by_category[category])))]
            created = timezone.now() - timedelta(days=2, minutes=60 - step)
            events.append(Interaction(product=product, kind="view", session_key=f"walker{n}", created_at=created))
            category = (category + 1) % N_CATEGORIES
    Interaction.objects.bulk_create(events)
    version = training._store(training.Candidate("sasrec", PARAMS, {}, 0.0), build_snapshot())
    training.activate(version)
    serving.forget_active()
    return by_category, version


def _categories(rec) -> list[int]:
    return [int(r.product.category_name[1:]) for r in rec if r.reason == "model"]


def test_signed_in_shopper_gets_the_models_next_items_without_what_they_bought(walk_shop):
    by_category, version = walk_shop
    user = get_user_model().objects.create_user("walker", password="x" * 12)
    bought = by_category[1][:3]
    for n, product in enumerate([by_category[0][0], *bought]):
        _event(product, "purchase" if product in bought else "view", ago_minutes=10 - n, user=user)
    rec = serving.for_you(user=user, limit=6)
    assert rec.model_version_id == version.pk
    assert len(rec) == 6 and rec.source.startswith("model")
    assert not {p.pk for p in bought} & set(rec.product_ids)  # bought: never offered again
    assert np.mean(np.array(_categories(rec)) == 2) >= 0.5  # after C1 comes C2


def test_the_list_follows_the_sessions_latest_event(walk_shop):
    by_category, _ = walk_shop
    _event(by_category[0][1], ago_minutes=3, session_key="visit")
    _event(by_category[2][1], ago_minutes=2, session_key="visit")
    first = serving.for_you(session_key="visit", limit=6)  # a new visitor: no row in the model
    assert np.mean(np.array(_categories(first)) == 3) >= 0.5
    # when: the shopper goes on to a C0 product
    _event(by_category[0][2], ago_minutes=1, session_key="visit")
    second = serving.for_you(session_key="visit", limit=6)
    # then: the list moves to what follows C0 at once
    assert np.mean(np.array(_categories(second)) == 1) >= 0.5
    assert by_category[0][2].pk not in second.product_ids
