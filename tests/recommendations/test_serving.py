"""Similar items through pgvector: order, filters, fallbacks."""

import pytest

from recommendations import serving
from recommendations.models import Interaction

pytestmark = pytest.mark.django_db


def test_nearest_first_and_filters_applied(small_catalog):
    items = serving.similar_items(small_catalog["anchor"], limit=8)
    ids = [r.product.pk for r in items]
    assert ids[0] == small_catalog["twin"].pk
    assert small_catalog["cousin"].pk in ids[:3]
    assert small_catalog["anchor"].pk not in ids
    assert small_catalog["inactive"].pk not in ids
    assert small_catalog["sold_out"].pk not in ids
    scores = [r.score for r in items]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_limit_is_respected_and_list_is_full_despite_filters(small_catalog):
    # 9 products, 2 filtered out, the anchor excluded: 6 remain.
    assert len(serving.similar_items(small_catalog["anchor"], limit=3)) == 3
    assert len(serving.similar_items(small_catalog["anchor"], limit=50)) == 6


def test_product_without_vector_falls_back_to_popular_in_category(small_catalog, product_factory):
    new = product_factory(category=small_catalog["anchor"].category)
    shopper = small_catalog["cousin"]
    Interaction.objects.create(product=shopper, kind="purchase", session_key="s1")
    items = serving.similar_items_or_fallback(new, limit=4)
    assert items[0].product.pk == shopper.pk
    assert {r.reason for r in items} == {"popular"}
    assert all(r.product.category_id == new.category_id for r in items)


def test_popular_orders_by_weighted_interactions(small_catalog):
    a, b = small_catalog["other0"], small_catalog["other1"]
    Interaction.objects.create(product=a, kind="view", session_key="s1")
    Interaction.objects.create(product=a, kind="view", session_key="s2")
    Interaction.objects.create(product=b, kind="purchase", session_key="s3")
    ids = [r.product.pk for r in serving.popular(limit=2)]
    assert ids == [b.pk, a.pk]


def test_lists_say_what_produced_them(small_catalog):
    rec = serving.similar_items(small_catalog["anchor"], limit=3)
    assert isinstance(rec, serving.RecommendationList)
    assert (rec.widget, rec.source, rec.arm, rec.model_version_id) == ("similar-items", "visual", "", None)
    assert rec.embedding_version == str(serving.active().embedding.pk)
    assert {r.reason for r in rec} == {"visual"}
