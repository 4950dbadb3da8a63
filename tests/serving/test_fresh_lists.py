"""A product that gets its vector shows in its neighbours' cached similar-items lists at once."""

from __future__ import annotations

import pytest
from django.db import connection

from catalog import services
from recommendations import embedding, serving
from recommendations.models import EmbeddingModel, ImageState
from recommendations.serving.fresh import products_near
from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db


def _embed_new_twin(product_factory, small_catalog, capture, flagged: bool | None = None) -> object:
    """A new product whose photo is the anchor's, a shade lighter; embedded with its on-commit work run.

    ``flagged``: the image's "primary" flag (None: the service's default, primary when the first).
    """
    twin = product_factory(category=small_catalog["anchor"].category)
    photo = make_image(color=(210, 40, 40), shape="stripes", size=(224, 224))
    with capture(execute=True):
        services.add_product_image(twin, photo, "twin.jpg", is_primary=flagged)
        embedding.embed_images(ImageState.objects.filter(product=twin).values_list("pk", flat=True))
    return twin


def test_a_new_product_appears_in_its_neighbours_cached_list(
    small_catalog, product_factory, django_capture_on_commit_callbacks
):
    # given the anchor's similar items, served once and so cached
    anchor = small_catalog["anchor"]
    before = serving.similar_items(anchor, 6)
    assert serving.similar_items(anchor, 6).product_ids == before.product_ids
    # when a lookalike product is uploaded and embedded
    twin = _embed_new_twin(product_factory, small_catalog, django_capture_on_commit_callbacks)
    # then the anchor's next list has it near the top, and so does the cousin's
    assert twin.pk in serving.similar_items(anchor, 6).product_ids[:3]
    assert twin.pk in serving.similar_items(small_catalog["cousin"], 6).product_ids


def test_a_product_whose_only_image_is_not_flagged_primary_is_a_neighbour_too(
    small_catalog, product_factory, django_capture_on_commit_callbacks
):
    # the admin's image form leaves "primary" unticked: the first image by position is the product's primary
    twin = _embed_new_twin(product_factory, small_catalog, django_capture_on_commit_callbacks, flagged=False)
    assert ImageState.objects.get(product=twin).is_primary
    assert twin.pk in serving.similar_items(small_catalog["anchor"], 6).product_ids[:3]


def test_only_the_neighbourhood_is_refreshed(
    small_catalog, product_factory, django_capture_on_commit_callbacks, settings
):
    # given the five red-striped products' lists refreshed per new vector (the anchor and its four
    # lookalikes are nearer than any mug), and two cached lists: the anchor's and a far mug's
    settings.VISREC = {**settings.VISREC, "FRESH_NEIGHBOURS": 5}
    anchor, mug = small_catalog["anchor"], small_catalog["other1"]
    serving.similar_items(anchor, 8)
    far = serving.similar_items(mug, 8)
    # when a lookalike of the anchor is embedded
    twin = _embed_new_twin(product_factory, small_catalog, django_capture_on_commit_callbacks)
    # then the anchor's list changes (its nearest product), the mug's stays cached until it expires
    assert twin.pk in serving.similar_items(anchor, 8).product_ids
    assert serving.similar_items(mug, 8).product_ids == far.product_ids
    assert twin.pk in serving.similar_items(mug, 8, cached=False).product_ids  # what the cache still hides


def test_neighbours_are_found_through_the_hnsw_index(vector_catalog):
    products, model = vector_catalog(n=3000, in_stock_share=1.0, dims=16)
    near = products_near([products[0].pk, products[1].pk], model, 10)
    assert {products[0].pk, products[1].pk} <= near and 10 <= len(near) <= 20
    with connection.cursor() as cursor:  # the plan a large catalogue gets: one index scan per new product
        cursor.execute("ANALYZE recommendations_imageembedding, recommendations_imagestate")
        cursor.execute("EXPLAIN " + _last_sql(model, [products[0].pk]))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert model.index_name in plan, plan


def _last_sql(model: EmbeddingModel, ids: list[int]) -> str:
    """The neighbour query of :func:`products_near` with its parameter written in."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        products_near(ids, model, 10)
    return next(q["sql"] for q in captured.captured_queries if "LATERAL" in q["sql"])
