"""Complete the look: other categories only, co-purchases first, the compatibility model for a new product."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import DatabaseError
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from recommendations import serving, training
from recommendations.cockpit.merch import rule_preview
from recommendations.models import Interaction, Rule
from recommendations.rules import bump_merch_version, rules_for
from recommendations.serving import complements
from tests.serving.conftest import widget_ids

N, DIMS = 80, 16
PARTNER = {0: 1, 1: 0, 2: 3, 3: 2}  # category c goes with category PARTNER[c] (product i is in category i % 4)


def planted_vectors(seed: int = 5) -> np.ndarray:
    """One tight cluster of pictures per category, so a picture says its category."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, DIMS))
    vectors = centres[np.arange(N) % 4] + 0.3 * rng.normal(size=(N, DIMS))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def bought(product, shopper: str, ago: timedelta, kind: str = "purchase") -> None:
    Interaction.objects.create(product=product, kind=kind, session_key=shopper, created_at=timezone.now() - ago)


@pytest.fixture
def shop(vector_catalog, settings, tmp_path):
    """80 products in 4 categories, every one in stock, with pictures that cluster by category."""
    settings.VISREC = {
        **settings.VISREC,
        "CACHE_DIR": str(tmp_path),
        "COMPLEMENT_MODEL": {"rank": 8, "dims": 16, "epochs": 12, "lr": 0.02, "weight_decay": 1e-4},
    }
    products, _ = vector_catalog(N, in_stock_share=1.0, dims=DIMS, vectors=planted_vectors())
    return products


@pytest.fixture
def trained(shop):
    """A trained version whose shoppers bought products of partner categories together; 40-79 never bought."""
    rng = np.random.default_rng(0)
    for n in range(150):
        a = int(rng.integers(0, 40))
        b = int(rng.choice([i for i in range(40) if i % 4 == PARTNER[a % 4]]))
        bought(shop[a], f"s{n}", timedelta(days=3, minutes=n))
        bought(shop[b], f"s{n}", timedelta(days=3, minutes=n - 30))
    version = training.train(["popularity"])
    serving.forget_active()
    assert training.complements_path(training.artifacts_dir() / version.artifact).exists()
    return shop


def categories(rec_list) -> set[int]:
    return {r.product.category_id for r in rec_list}


def test_co_purchases_come_first_and_never_from_the_products_own_category(shop):
    anchor, partner, other, same = shop[0], shop[1], shop[2], shop[4]
    # given shoppers who bought the anchor with products of another category, and one of its own
    for n in range(3):
        bought(anchor, f"a{n}", timedelta(hours=5))
        bought(partner, f"a{n}", timedelta(hours=2))  # three shoppers, within a day
    bought(anchor, "b", timedelta(hours=5))
    bought(other, "b", timedelta(hours=1), kind="add_to_cart")  # one shopper, a basket addition
    bought(same, "b", timedelta(hours=1))  # the anchor's own category
    bought(anchor, "c", timedelta(days=5))
    bought(shop[3], "c", timedelta(days=1))  # four days later: not together
    # when the list is asked for
    found = serving.complete_the_look(anchor, 6)
    # then the co-purchases lead, by shoppers, and nothing is of the anchor's category
    assert found.product_ids[:2] == [partner.pk, other.pk]
    assert [r.reason for r in found.items[:2]] == ["co-purchase", "co-purchase"]
    assert found.source == "co-purchase" and len(found) == 6
    assert anchor.category_id not in categories(found)
    assert shop[3].pk not in found.product_ids[:2]


def test_a_product_with_no_history_gets_the_compatibility_models_partners(trained):
    # given a product nobody bought (its picture is like those of its category)
    anchor = trained[44]  # category 0, whose buyers bought category 1
    found = serving.complete_the_look(anchor, 8)
    # then its list comes from the model, of the partner category, which visual similarity would not give
    assert found.source == "compatibility"
    assert {r.reason for r in found} == {"compatibility"}
    assert categories(found) == {trained[1].category_id}
    looks_like = serving.similar_items(anchor, 8)
    assert categories(looks_like) == {anchor.category_id}


def test_the_model_fills_up_below_a_short_co_purchase_list(trained):
    anchor, partner = trained[45], trained[46]  # categories 1 and 2
    bought(anchor, "x", timedelta(hours=3))
    bought(partner, "x", timedelta(hours=2))
    found = serving.complete_the_look(anchor, 8)
    assert found.product_ids[0] == partner.pk and found.items[0].reason == "co-purchase"
    assert {r.reason for r in found.items[1:]} == {"compatibility"}
    assert categories(found.items[1:]) == {trained[0].category_id}  # category 1 goes with category 0


def test_rules_apply(trained):
    anchor = trained[44]
    first = serving.complete_the_look(anchor, 4)
    blocked, pinned = first.product_ids[0], trained[2].pk  # pin a product of yet another category
    found = serving.complete_the_look(
        anchor, 4, rules=rules_for("complete-the-look", blocked=[blocked], pinned=[pinned])
    )
    assert blocked not in found.product_ids
    assert found.product_ids[0] == pinned and found.items[0].reason == "pinned"


def test_the_owners_rules_for_the_widget_apply_on_the_products_page(trained):
    anchor = trained[44]
    shown = serving.complete_the_look(anchor, 4).product_ids
    Rule.objects.create(kind=Rule.BLOCK, product_id=shown[0], widget="complete-the-look", scope_product=anchor)
    Rule.objects.create(kind=Rule.PIN, product=trained[3], widget="complete-the-look")
    bump_merch_version()
    found = serving.complete_the_look(anchor, 4)
    assert shown[0] not in found.product_ids and found.product_ids[0] == trained[3].pk
    assert shown[0] in serving.complete_the_look(trained[48], 8).product_ids  # scoped to the anchor's page
    preview = rule_preview(Rule(kind=Rule.PIN, product=trained[2], widget="complete-the-look"), product_id=anchor.pk)
    after = [a.product.pk for _, a in preview["rows"] if a is not None]
    assert preview["widget"] == "complete-the-look" and after[:2] == [trained[3].pk, trained[2].pk]


def test_a_product_without_history_or_model_gets_popular_products_of_other_categories(shop):
    bought(shop[5], "p", timedelta(days=2))
    found = serving.complete_the_look(shop[8], 4)  # category 0; no model version trained
    assert found.source == "popular" and found.product_ids[0] == shop[5].pk
    assert shop[8].category_id not in categories(found)


def test_the_list_is_cached_until_the_product_changes(shop):
    anchor = shop[0]
    serving.complete_the_look(anchor, 4)
    bought(anchor, "late", timedelta(hours=2))
    bought(shop[1], "late", timedelta(hours=1))
    assert serving.complete_the_look(anchor, 4).source == "popular"  # cached
    serving.bump_product_version(anchor.pk)
    assert serving.complete_the_look(anchor, 4).product_ids[0] == shop[1].pk


# -- the widget and the API --------------------------------------------------------------------------------
def render(product) -> str:
    request = RequestFactory().get("/")
    request.session = None
    return Template("{% load visrec %}{% complete_the_look product limit=4 %}").render(
        Context({"product": product, "request": request})
    )


def test_the_widget_renders_other_categories_with_tracked_links(trained):
    html = render(trained[44])
    ids = widget_ids(html, "complete-the-look")
    assert len(ids) == 4 and 'data-reason="compatibility"' in html and "/r/" in html
    assert {p.category_id for p in trained if p.pk in ids} == {trained[1].category_id}


def test_the_widget_falls_back_when_its_backend_fails(shop, monkeypatch):
    bought(shop[5], "p", timedelta(days=2))

    def broken(*args, **kwargs):
        raise DatabaseError("down")

    monkeypatch.setattr(serving, "complete_the_look", broken)
    html = render(shop[8])
    assert widget_ids(html, "complete-the-look")[0] == shop[5].pk  # popular, not of the product's category
    assert 'data-visrec-source="popular"' in html


def test_the_api_lists_complements_and_answers_errors_in_its_shape(trained, client):
    anchor = trained[44]
    body = client.get(f"/api/v1/products/{anchor.pk}/complements/?limit=3").json()
    assert body["widget"] == "complete-the-look" and body["product"] == anchor.pk and body["count"] == 3
    assert body["source"] == "compatibility" and {r["reason"] for r in body["results"]} == {"compatibility"}
    missing = client.get("/api/v1/products/999999999/complements/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "product_not_found"
    bad = client.get(f"/api/v1/products/{anchor.pk}/complements/?limit=0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"


def test_the_api_answers_503_not_500_when_the_backend_is_down(shop, client, monkeypatch):
    def broken(*args, **kwargs):
        raise DatabaseError("down")

    monkeypatch.setattr(serving, "complete_the_look", broken)
    response = client.get(f"/api/v1/products/{shop[0].pk}/complements/")
    assert response.status_code == 503


def test_an_unreadable_compatibility_model_leaves_the_version_serving(trained):
    version = serving.active().version
    path = training.complements_path(training.artifacts_dir() / version.artifact)
    path.write_bytes(b"not an npz")
    assert training.load_complements(path.with_name(version.artifact)) is None
    assert training.load_version(version).model is not None


def test_only_the_anchors_latest_events_are_read(shop, monkeypatch):
    anchor = shop[0]
    bought(anchor, "old", timedelta(days=9))
    bought(shop[1], "old", timedelta(days=9))
    bought(anchor, "new", timedelta(hours=3))
    bought(shop[2], "new", timedelta(hours=2))
    assert {pk for pk, _ in serving.copurchased(anchor.pk, 10)} == {shop[1].pk, shop[2].pk}
    monkeypatch.setattr(complements, "ANCHOR_EVENTS", 1)
    assert serving.copurchased(anchor.pk, 10) == [(shop[2].pk, 1.0)]


def stored_model():
    return training.load_complements(training.artifacts_dir() / serving.active().version.artifact)[0]


def test_training_chooses_the_prior_on_the_shops_own_baskets_and_records_it(shop, caplog):
    # given 150 baskets of partner categories, an hour apart (the newest fifth held out)
    rng = np.random.default_rng(0)
    for n in range(150):
        a = int(rng.integers(0, 40))
        b = int(rng.choice([i for i in range(40) if i % 4 == PARTNER[a % 4]]))
        bought(shop[a], f"s{n}", timedelta(hours=n + 1))
        bought(shop[b], f"s{n}", timedelta(hours=n + 0.5))
    # when a version is trained
    with caplog.at_level("INFO", logger="recommendations"):
        training.train(["popularity"])
    serving.forget_active()
    # then the prior was chosen on those baskets, saved with the model, served with its weight and logged
    model = stored_model()
    choice = model.validation
    assert choice["reason"] == "validated" and choice["baskets"] == 30
    assert model.prior_weight == choice["prior_weight"]
    assert choice["hit_rate"] == max(v for _, _, v in choice["hit_rates"])
    assert f"prior weight {model.prior_weight}" in caplog.text and "validated on 30 held-out baskets" in caplog.text


def test_a_shop_with_too_few_baskets_keeps_the_configured_prior(shop, settings, caplog):
    # given a shop with five baskets and a configured prior
    settings.VISREC = {**settings.VISREC, "COMPLEMENT_MODEL": {"rank": 8, "dims": 16, "prior_weight": 1.5}}
    for n in range(5):
        bought(shop[n], f"s{n}", timedelta(days=2, minutes=n))
        bought(shop[n + 1], f"s{n}", timedelta(days=2, minutes=n - 30))
    # when a version is trained
    with caplog.at_level("INFO", logger="recommendations"):
        training.train(["popularity"])
    serving.forget_active()
    # then the configured weight stays, and the metadata and the log say why
    model = stored_model()
    assert model.prior_weight == 1.5
    assert model.validation["reason"] == "too few baskets" and model.validation["baskets"] < 20
    assert "prior weight 1.5" in caplog.text and "too few baskets" in caplog.text
