""" "Why this?": the history product behind each "for you" item, the fillers' reasons, what similar items share."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pgvector import HalfVector

from recommendations import serving
from recommendations.models import ImageEmbedding, Interaction

pytestmark = pytest.mark.django_db


def _event(product, kind="view", ago_minutes=0, **shopper):
    return Interaction.objects.create(
        product=product, kind=kind, created_at=timezone.now() - timedelta(minutes=ago_minutes), **shopper
    )


def _vectors(model) -> dict[int, np.ndarray]:
    """Every product's stored (primary) vector, as the database holds it (half precision)."""
    rows = ImageEmbedding.objects.filter(model=model).values_list("image__product_id", "vector")
    return {pk: np.asarray(vector, dtype=np.float64) for pk, vector in rows}


def _nearest_by_brute_force(vectors: dict[int, np.ndarray], item: int, history: list[int]) -> tuple[int, np.ndarray]:
    """The history product whose vector has the highest cosine with ``item``'s, and every history cosine."""
    target = vectors[item] / np.linalg.norm(vectors[item])
    matrix = np.stack([vectors[pk] / np.linalg.norm(vectors[pk]) for pk in history])
    cosines = matrix @ target
    return history[int(np.argmax(cosines))], cosines


@pytest.mark.parametrize("seed", [3, 11])
def test_because_is_the_history_product_nearest_each_item(vector_catalog, seed):
    # given: a shopper who viewed, carted and bought products of a catalogue of random vectors
    products, model = vector_catalog(n=80, in_stock_share=1.0, dims=16, seed=seed)
    viewed, carted, bought = products[:4], products[4:6], products[6:7]
    for n, product in enumerate(viewed):
        _event(product, "view", ago_minutes=30 - n, session_key="s1")
    for product in carted:
        _event(product, "view", ago_minutes=20, session_key="s1")
        _event(product, "add_to_cart", ago_minutes=10, session_key="s1")
    _event(bought[0], "purchase", ago_minutes=5, session_key="s1")
    history = [p.pk for p in (*viewed, *carted, *bought)]
    kinds = {**{p.pk: "view" for p in viewed}, **{p.pk: "add_to_cart" for p in carted}, bought[0].pk: "purchase"}
    # when
    listed = serving.for_you(session_key="s1", limit=12)
    # then: every item was drawn in by the shopper's history, and says by which product
    assert listed.source == "session" and len(listed) == 12
    vectors = _vectors(model)
    for rec in listed:
        assert rec.reason == "session" and rec.because is not None
        assert rec.because.product_id in history
        expected, cosines = _nearest_by_brute_force(vectors, rec.product.pk, history)
        chosen = cosines[history.index(rec.because.product_id)]
        assert chosen == pytest.approx(cosines.max(), abs=1e-4)  # the nearest (ties within half precision)
        if np.sort(cosines)[-1] - np.sort(cosines)[-2] > 1e-3:
            assert rec.because.product_id == expected
        assert rec.because.event == kinds[rec.because.product_id]  # the strongest event: carted, not viewed
        assert serving.why("for-you", rec) == "history"
    assert {rec.because.product_id for rec in listed} - set(history) == set()
    assert len({rec.because.product_id for rec in listed}) > 1  # not one product for every item


def test_a_cached_for_you_list_carries_its_reasons(vector_catalog):
    products, _ = vector_catalog(n=60, in_stock_share=1.0, dims=16)
    for n, product in enumerate(products[:5]):
        _event(product, "view", ago_minutes=10 - n, session_key="s2")
    first = serving.for_you(session_key="s2", limit=8)
    with CaptureQueriesContext(connection) as captured:
        again = serving.for_you(session_key="s2", limit=8)
    assert [r.because for r in again] == [r.because for r in first] and all(r.because for r in again)
    assert not [q["sql"] for q in captured.captured_queries if "<=>" in q["sql"]]  # no vector query on a cached read


def test_a_cold_shopper_gets_the_trending_reason(small_catalog):
    _event(small_catalog["other2"], "purchase", session_key="crowd")
    _event(small_catalog["cousin"], "view", session_key="crowd")
    listed = serving.for_you(session_key="new-visitor", limit=4)
    first = listed.items[0]
    assert first.reason == "trending" and first.because is None
    assert serving.why("for-you", first) == "trending" and serving.why_text("for-you", first) == "Trending now"
    fillers = [r for r in listed if r.reason == "popular"]  # topped up past the trending products
    assert fillers and all(r.because is None and serving.why_text("for-you", r) == "Popular" for r in fillers)


def test_similar_items_share_the_category_and_a_close_colour(vector_catalog):
    # given: a descriptor version whose vectors end in a 4-bin colour histogram (weight 0.3)
    products, model = vector_catalog(n=24, in_stock_share=1.0, dims=16, seed=5)
    model.preprocessing = {"colour": {"lightness_bins": 1, "chroma_bins": 2, "threshold": 24, "weight": 0.3}}
    model.save()
    serving.forget_active()
    shape = np.zeros(12)
    shape[0] = 1.0

    def vector(colour) -> np.ndarray:
        colour = np.asarray(colour, dtype=np.float64) / np.linalg.norm(colour)
        return np.concatenate([np.sqrt(0.7) * shape, np.sqrt(0.3) * colour])

    anchor, same_colour, other_colour, other_category = products[0], products[4], products[8], products[1]
    set_to = {
        anchor: vector([1, 0.1, 0, 0]),
        same_colour: vector([1, 0.2, 0, 0]),  # cosine 0.99 with the anchor's colour
        other_colour: vector([0, 0.1, 1, 0]),  # cosine ~0.01
        other_category: vector([1, 0.1, 0, 0]),
    }
    for product, v in set_to.items():
        ImageEmbedding.objects.filter(model=model, image__product=product).update(vector=HalfVector(v))
    assert anchor.category_id == same_colour.category_id == other_colour.category_id != other_category.category_id
    # when
    listed = {r.product.pk: r for r in serving.similar_items(anchor, 3, cached=False)}
    # then
    assert set(listed) == {same_colour.pk, other_colour.pk, other_category.pk}
    assert listed[same_colour.pk].shares == ("category", "colour")
    assert listed[other_colour.pk].shares == ("category",)
    assert listed[other_category.pk].shares == ("colour",)
    assert serving.why_text("similar-items", listed[same_colour.pk]) == "Same category, close colour"
    assert serving.why_text("similar-items", listed[other_category.pk]) == "Close colour"


def test_without_a_colour_histogram_similar_items_share_only_the_category(small_catalog):
    listed = {r.product.pk: r for r in serving.similar_items(small_catalog["anchor"], 6)}
    assert listed[small_catalog["twin"].pk].shares == ("category",)
    assert listed[small_catalog["other0"].pk].shares == ()


def test_a_failed_reasons_query_leaves_the_list_without_reasons(vector_catalog, monkeypatch, caplog):
    from django.db import DatabaseError

    from recommendations.serving import reasons

    def times_out(*args, **kwargs):
        raise DatabaseError("canceling statement due to statement timeout")

    products, _ = vector_catalog(n=40, in_stock_share=1.0, dims=16)
    _event(products[0], "view", session_key="slow-one")
    monkeypatch.setattr(reasons, "fetch_rows", times_out)
    listed = serving.for_you(session_key="slow-one", limit=6)
    assert len(listed) == 6 and all(r.because is None for r in listed)
    assert "shown without them" in caplog.text
    # and the list without its reasons is not cached: the next read has them
    monkeypatch.undo()
    assert all(r.because is not None for r in serving.for_you(session_key="slow-one", limit=6))


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_reasons_query_runs_under_the_widgets_time_budget(vector_catalog, settings):
    settings.VISREC = {**settings.VISREC, "WIDGET_TIME_BUDGET_MS": 123}
    products, _ = vector_catalog(n=40, in_stock_share=1.0, dims=16)
    _event(products[0], "view", session_key="budgeted")
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as captured:
        listed = serving.for_you(session_key="budgeted", limit=6)
    assert all(r.because is not None and r.because.product_id == products[0].pk for r in listed)
    sql = [q["sql"] for q in captured.captured_queries]
    at = next(n for n, s in enumerate(sql) if "CROSS JOIN h" in s)  # the reasons query
    assert "statement_timeout" in sql[at - 1] and "123ms" in sql[at - 1]  # sent with it
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone()[0] == "0"  # and it ended with it


def test_close_colour_is_read_from_the_descriptor_backbones_stored_vectors(
    settings, product_with_image, category_factory
):
    # given: a catalogue embedded by the colour descriptor backbone (a CNN vector joined with a colour histogram)
    from recommendations import embedding
    from recommendations.models import ImageState
    from tests.fixtures.images import make_image

    settings.VISREC = {**settings.VISREC, "BACKBONE": "efficientnet_lite0_colour"}
    shirts, mugs = category_factory("Shirts"), category_factory("Mugs")
    red, blue = (200, 30, 35), (30, 50, 190)

    def item(colour, shape, category):
        return product_with_image(image=make_image(color=colour, shape=shape, size=(224, 224)), category=category)

    anchor, red_shirt, blue_shirt, red_mug = (
        item(red, "circle", shirts),
        item(red, "triangle", shirts),
        item(blue, "circle", shirts),
        item(red, "square", mugs),
    )
    assert embedding.embed_images(ImageState.objects.values_list("pk", flat=True)).failed == 0
    serving.forget_active()
    assert serving.colour_similarities(anchor.pk, [red_shirt.pk], serving.active().embedding)  # a colour tail
    # when
    listed = {r.product.pk: r.shares for r in serving.similar_items(anchor, 3, cached=False)}
    # then
    assert listed == {red_shirt.pk: ("category", "colour"), blue_shirt.pk: ("category",), red_mug.pk: ("colour",)}
