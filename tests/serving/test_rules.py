"""Business rules: SQL filters inside the vector query, diversity, pins, blocks, purchases."""

from __future__ import annotations

import pytest
from django.db import connection

from recommendations import rules as rules_mod
from recommendations import serving
from recommendations.models import Interaction
from recommendations.rules import Rules, rules_for

pytestmark = pytest.mark.django_db


def _hnsw_plan(query) -> str:
    sql, params = query
    with serving.vector_search(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("iterative, full", [("relaxed_order", True), ("off", False)])
def test_filtered_list_stays_full_with_iterative_index_scans(vector_catalog, settings, iterative, full):
    # given: 600 vectors, 90% out of stock, an HNSW scan that looks at only 10 candidates
    products, model = vector_catalog(n=600, in_stock_share=0.1)
    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": 10, "HNSW_ITERATIVE_SCAN": iterative}
    with connection.cursor() as cursor:  # a table this small would be scanned exactly otherwise
        cursor.execute("ANALYZE catalog_product, catalog_productimage, recommendations_imageembedding")
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
    anchor = products[0]
    vector = serving.anchor_vector(anchor.pk, model)  # the anchor's vector as a subquery, as similar_items does
    query = serving.neighbour_sql(vector, model, 10, exclude=[anchor.pk], rules=Rules())
    assert f"Index Scan using visrec_embedding_hnsw_{model.pk}" in _hnsw_plan(query)
    # when
    rows = serving.nearest_products(vector, model, 10, exclude=[anchor.pk], rules=Rules())
    # then: every row passes the filter; only iterative scans keep the list full
    in_stock = {p.pk for p in products if p.stock > 0}
    assert {pk for pk, _ in rows} <= in_stock
    assert (len(rows) == 10) is full


def test_category_rules_are_sql_filters(vector_catalog):
    products, model = vector_catalog(n=200, in_stock_share=1.0)
    anchor = products[0]
    cats = sorted({p.category_id for p in products})
    only = serving.similar_items(anchor, 10, rules=rules_for("similar-items", only_categories=[cats[1]]))
    assert len(only) == 10 and {r.product.category_id for r in only} == {cats[1]}
    excluded = serving.similar_items(anchor, 10, rules=rules_for("similar-items", exclude_categories=cats[:3]))
    assert len(excluded) == 10 and {r.product.category_id for r in excluded} == {cats[3]}


def test_diversity_caps_each_category_and_keeps_the_list_full(vector_catalog):
    products, _ = vector_catalog(n=200, in_stock_share=1.0)
    items = serving.similar_items(products[0], 8, rules=rules_for("similar-items", max_per_category=2))
    per_category = {}
    for r in items:
        per_category[r.product.category_id] = per_category.get(r.product.category_id, 0) + 1
    assert len(items) == 8 and max(per_category.values()) == 2


def test_pinned_first_blocked_never(small_catalog):
    anchor, pin, block = small_catalog["anchor"], small_catalog["other3"], small_catalog["twin"]
    rules = rules_for("similar-items", pinned=[pin.pk, small_catalog["sold_out"].pk], blocked=[block.pk])
    items = serving.similar_items(anchor, 4, rules=rules)
    assert items[0].product.pk == pin.pk and items[0].reason == "pinned"
    assert block.pk not in items.product_ids
    assert small_catalog["sold_out"].pk not in items.product_ids  # a pin never overrides stock
    assert len(items) == 4


def test_settings_defaults_and_widget_overrides(settings, small_catalog):
    block = small_catalog["twin"].pk
    settings.VISREC = {
        **settings.VISREC,
        "RULES": {**rules_mod.visrec_settings.RULES, "BLOCKED": [block]},
        "WIDGET_RULES": {"for-you": {"BLOCKED": []}},
    }
    assert rules_for("similar-items").blocked == (block,)
    assert rules_for("for-you").blocked == ()
    assert block not in serving.similar_items(small_catalog["anchor"], 8).product_ids
    with pytest.raises(ValueError, match="unknown"):
        rules_for("similar-items", colour="red")


def test_already_purchased_products_are_excluded_per_kind(small_catalog):
    anchor, twin = small_catalog["anchor"], small_catalog["twin"]
    Interaction.objects.create(product=twin, kind="purchase", session_key="buyer")
    Interaction.objects.create(product=small_catalog["cousin"], kind="add_to_cart", session_key="buyer")
    bought = serving.similar_items(anchor, 8, session_key="buyer")
    assert twin.pk not in bought.product_ids
    assert small_catalog["cousin"].pk in bought.product_ids
    assert twin.pk in serving.similar_items(anchor, 8, session_key="someone-else").product_ids
    carted = rules_for("similar-items", exclude_interacted_kinds=["purchase", "add_to_cart"])
    ids = serving.similar_items(anchor, 8, rules=carted, session_key="buyer").product_ids
    assert twin.pk not in ids and small_catalog["cousin"].pk not in ids


def test_similar_items_takes_few_queries_and_fewer_when_cached(small_catalog, django_assert_max_num_queries):
    anchor = small_catalog["anchor"]
    serving.similar_items(small_catalog["twin"], 8)  # warm per-process state (pgvector version)
    with django_assert_max_num_queries(8):  # active versions 2, search settings 1, vector 1, products 2, savepoint 2
        first = serving.similar_items(anchor, 8)
    with django_assert_max_num_queries(2):  # products (rules and "already bought" in SQL) + their images
        again = serving.similar_items(anchor, 8, session_key="shopper")
    assert again.product_ids == first.product_ids
