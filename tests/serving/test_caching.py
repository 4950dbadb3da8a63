"""Cached lists: hits skip the vector query; product edits, activations and events change them."""

from __future__ import annotations

import pytest

from recommendations import serving, training
from recommendations.models import Interaction, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def vector_queries(monkeypatch):
    """Counts the vector searches serving runs."""
    calls = []
    real = serving.nearest_products

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for module in (serving.similar, serving.for_you, serving.photo):  # where the package's modules look it up
        monkeypatch.setattr(module, "nearest_products", counting)
    return calls


def test_similar_items_is_cached(small_catalog, vector_queries):
    first = serving.similar_items(small_catalog["anchor"], 4)
    again = serving.similar_items(small_catalog["anchor"], 4)
    assert len(vector_queries) == 1
    assert again.product_ids == first.product_ids and again.source == "visual"


def test_saving_the_product_invalidates_its_lists(small_catalog, vector_queries):
    anchor = small_catalog["anchor"]
    serving.similar_items(anchor, 4)
    anchor.title = "Red stripes, renamed"
    anchor.save()
    serving.similar_items(anchor, 4)
    assert len(vector_queries) == 2


def test_a_product_that_sells_out_leaves_cached_lists_at_once(small_catalog, vector_queries):
    anchor, twin = small_catalog["anchor"], small_catalog["twin"]
    assert serving.similar_items(anchor, 4).product_ids[0] == twin.pk
    twin.stock = 0
    twin.save()
    ids = serving.similar_items(anchor, 4).product_ids
    assert twin.pk not in ids and len(ids) == 4
    assert len(vector_queries) == 1  # the anchor's cached candidates are re-filtered, not recomputed


def test_activating_a_model_version_changes_the_key(small_catalog, vector_queries):
    serving.similar_items(small_catalog["anchor"], 4)
    version = ModelVersion.objects.create(kind="popularity", artifact="missing.npz")
    training.activate(version)
    serving.forget_active()  # activation is seen by every process within a couple of seconds anyway
    rec = serving.similar_items(small_catalog["anchor"], 4)
    assert len(vector_queries) == 2
    assert rec.model_version_id == version.pk  # an unloadable artifact degrades to visual only
    assert rec.source == "visual"


def test_for_you_changes_with_every_event(small_catalog, vector_queries):
    Interaction.objects.create(product=small_catalog["anchor"], kind="view", session_key="s1")
    serving.for_you(session_key="s1", limit=4)
    serving.for_you(session_key="s1", limit=4)
    assert len(vector_queries) == 1
    Interaction.objects.create(product=small_catalog["other1"], kind="view", session_key="s1")
    serving.for_you(session_key="s1", limit=4)
    assert len(vector_queries) == 2


def test_a_cache_outage_only_costs_speed(small_catalog, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(serving.cache, "get_many", down)
    monkeypatch.setattr(serving.cache, "set", down)
    assert serving.similar_items(small_catalog["anchor"], 4).product_ids[0] == small_catalog["twin"].pk
