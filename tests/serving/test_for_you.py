"""For you: live session taste, the active model's user scores, trending for cold shoppers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from recommendations import serving, training
from recommendations.models import Interaction

pytestmark = pytest.mark.django_db


def _event(product, kind="view", ago_minutes=0, **shopper):
    return Interaction.objects.create(
        product=product, kind=kind, created_at=timezone.now() - timedelta(minutes=ago_minutes), **shopper
    )


def test_cold_shopper_gets_trending_in_category_then_overall(small_catalog):
    mugs, shirts = small_catalog["other0"].category, small_catalog["anchor"].category
    _event(small_catalog["other2"], "purchase", session_key="crowd")
    _event(small_catalog["cousin"], "view", session_key="crowd")
    _event(small_catalog["other3"], "view", ago_minutes=60 * 24 * 30, session_key="crowd")  # outside the window
    rec = serving.for_you(session_key="new-visitor", limit=4, category=shirts)
    assert rec.product_ids[:2] == [small_catalog["cousin"].pk, small_catalog["other2"].pk]
    assert rec.items[0].reason == "trending" and rec.source == "trending"
    assert len(rec) == 4  # topped up with popular products
    in_mugs = serving.for_you(session_key="new-visitor", limit=4, category=mugs)
    assert in_mugs.product_ids[0] == small_catalog["other2"].pk


def test_session_taste_follows_the_latest_events(small_catalog):
    _event(small_catalog["anchor"], "view", ago_minutes=5, session_key="s1")
    first = serving.for_you(session_key="s1", limit=3)
    assert first.source == "session"
    assert first.product_ids[0] in {small_catalog["twin"].pk, small_catalog["cousin"].pk}
    assert small_catalog["anchor"].pk not in first.product_ids  # already seen
    # when: the shopper puts a yellow square mug in the cart
    _event(small_catalog["other2"], "add_to_cart", session_key="s1")
    second = serving.for_you(session_key="s1", limit=3)
    # then: the list moves towards mugs at once (a cart weighs more than a view)
    assert second.items[0].product.category_id == small_catalog["other2"].category_id
    assert second.product_ids != first.product_ids


def test_signed_in_user_history_is_theirs_not_the_sessions(small_catalog):
    user = get_user_model().objects.create_user("ann", password="x" * 12)
    _event(small_catalog["other1"], "purchase", user=user)
    _event(small_catalog["anchor"], "view", session_key="shared-session")
    rec = serving.for_you(user=user, session_key="shared-session", limit=3)
    assert small_catalog["other1"].pk not in rec.product_ids  # bought: excluded
    assert rec.source == "session"
    assert {r.product.category_id for r in rec} != {small_catalog["anchor"].category_id}


@pytest.fixture
def trained(small_catalog, settings, tmp_path):
    settings.VISREC = {
        **settings.VISREC,
        "CACHE_DIR": str(tmp_path),
        "TRAIN_HOLDOUT_FRACTION": 0.25,
        "TRAIN_METRIC": "recall@12",
    }
    shirts = [small_catalog[k] for k in ("anchor", "twin", "cousin")]
    mugs = [small_catalog[f"other{i}"] for i in range(4)]
    for n in range(12):
        for i, product in enumerate(shirts if n % 2 else mugs):
            _event(product, "view", ago_minutes=100 - i, session_key=f"shopper{n}")
    return training.train(["item_knn"])


def test_known_shopper_blends_the_model_with_the_session(trained, small_catalog):
    serving.forget_active()
    rec = serving.for_you(session_key="shopper1", limit=4)
    assert rec.model_version_id == trained.pk
    assert rec.source == "model+session"
    assert "model" in {r.reason for r in rec}


def test_similar_items_blends_the_models_item_neighbours(trained, small_catalog):
    serving.forget_active()
    rec = serving.similar_items(small_catalog["anchor"], 4)
    assert rec.model_version_id == trained.pk
    assert rec.product_ids[0] == small_catalog["twin"].pk


def test_recently_viewed_newest_first_active_only(small_catalog):
    for n, key in enumerate(["other0", "inactive", "twin", "other0"]):
        _event(small_catalog[key], "view", ago_minutes=10 - n, session_key="s2")
    rec = serving.recently_viewed(session_key="s2", limit=5)
    assert rec.product_ids == [small_catalog["other0"].pk, small_catalog["twin"].pk]
    assert serving.recently_viewed(session_key="nobody").source == "empty"


@pytest.mark.django_db(transaction=True)
def test_session_taste_search_uses_its_own_search_breadth(small_catalog, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": 41, "FOR_YOU_EF_SEARCH": 17}
    _event(small_catalog["anchor"], "view", session_key="breadth")
    with CaptureQueriesContext(connection) as captured:
        serving.for_you(session_key="breadth", limit=3)
        serving.similar_items(small_catalog["anchor"], 3, cached=False)
    settings_sql = [q["sql"] for q in captured.captured_queries if "hnsw.ef_search" in q["sql"]]
    assert len(settings_sql) == 2
    assert "'17'" in settings_sql[0] and "'41'" in settings_sql[1]


def test_a_search_is_never_narrower_than_its_list_and_the_products_it_leaves_out(small_catalog, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given: a narrow configured breadth and a shopper who viewed four products
    settings.VISREC = {**settings.VISREC, "FOR_YOU_EF_SEARCH": 5}
    viewed = [small_catalog[name] for name in ("twin", "cousin", "other0", "other1")]
    for product in viewed:
        _event(product, "view", session_key="wide")
    act = serving.active()
    taste = serving.taste_expression(serving.history(session_key="wide"), act.embedding)
    # when: the taste's 6 nearest products are asked for, leaving the 4 viewed ones out
    with CaptureQueriesContext(connection) as captured:
        serving.nearest_products(taste, act.embedding, 6, exclude=[p.pk for p in viewed], ef_search=5)
    # then: one pass wide enough for the list and the left-out products (6 + 4), not 5
    settings_sql = [q["sql"] for q in captured.captured_queries if "set_config('hnsw.ef_search'" in q["sql"]]
    assert len(settings_sql) == 1 and "'hnsw.ef_search', '10'" in settings_sql[0]
    # and the taste (a sum over the shopper's vectors) is computed once per query, not once per use
    vector_sql = [q["sql"] for q in captured.captured_queries if "<=>" in q["sql"]]
    assert len(vector_sql) == 1 and vector_sql[0].count("sum(") == 1


def test_a_long_history_widens_the_search_by_a_few_products_only(small_catalog, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.VISREC = {**settings.VISREC, "FOR_YOU_EF_SEARCH": 5}
    act = serving.active()
    taste = serving.taste_expression(serving.history(session_key="nobody"), act.embedding)
    assert taste is None  # no history: no taste
    anchor = serving.anchor_vector(small_catalog["anchor"].pk, act.embedding)
    with CaptureQueriesContext(connection) as captured:
        serving.nearest_products(anchor, act.embedding, 6, exclude=list(range(10_000, 10_050)), ef_search=5)
    settings_sql = [q["sql"] for q in captured.captured_queries if "set_config('hnsw.ef_search'" in q["sql"]]
    assert "'hnsw.ef_search', '14'" in settings_sql[0]  # 6 + 8, not 6 + 50
