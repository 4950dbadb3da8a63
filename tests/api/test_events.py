"""POST /api/v1/events/: validation, atomic batches, idempotency and click tokens."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import OperationalError, connection

from recommendations import tracking
from recommendations.api import events as events_module
from recommendations.models import Click, Interaction

from .conftest import csrf_header

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/"


def post(client, events, **headers):
    return client.post(URL, {"events": events}, format="json", **headers)


def test_a_batch_of_each_kind_is_recorded(server_client, product_factory):
    p1, p2 = product_factory(), product_factory()
    batch = [
        {"type": "view", "product": p1.pk, "session": "s1"},
        {"type": "add_to_cart", "product": p1.pk, "session": "s1", "value": 2},
        {"type": "purchase", "product": p2.pk, "session": "s1"},
        {"type": "rating", "product": p2.pk, "session": "s1", "value": 4, "source": "reviews"},
    ]
    response = post(server_client, batch)
    assert response.status_code == 201
    body = response.json()
    assert body["accepted"] == 4 and [e["index"] for e in body["events"]] == [0, 1, 2, 3]
    rows = {i.kind: i for i in Interaction.objects.all()}
    assert rows["add_to_cart"].value == 2 and rows["rating"].value == 4 and rows["rating"].source == "reviews"
    assert rows["view"].source == "api"
    assert {e["interaction"] for e in body["events"]} == {i.pk for i in rows.values()}


def test_one_bad_event_rejects_the_whole_batch_and_lists_every_bad_index(server_client, product_factory):
    product = product_factory()
    batch = [
        {"type": "view", "product": product.pk, "session": "s"},
        {"type": "rating", "product": product.pk, "session": "s", "value": 7},
        {"type": "purchase", "product": 999999, "session": "s"},
        {"type": "teleport", "product": product.pk, "session": "s"},
        {"type": "rating", "product": product.pk, "session": "s"},
    ]
    response = post(server_client, batch)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert error["message"] == "4 of 5 events are invalid; nothing was recorded."
    assert [bad["index"] for bad in error["invalid"]] == [1, 2, 3, 4]
    assert "1 to 5" in error["invalid"][0]["fields"]["value"][0]
    assert error["invalid"][1]["fields"] == {"product": ["No product with id 999999."]}
    assert "type" in error["invalid"][2]["fields"]
    assert not Interaction.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": [{"type": "view", "product": 1}] * 101}, "events"),
        ({"events": "view"}, "events"),
        ({}, "events"),
    ],
)
def test_malformed_batches_are_validation_errors(server_client, body, field):
    response = server_client.post(URL, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]
    assert error["message"].startswith(f"{field}:")


def test_broken_json_and_wrong_content_type(server_client):
    broken = server_client.post(URL, "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed_request"
    form = server_client.post(URL, {"events": "x"})  # multipart
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"


def test_oversized_body_is_413_before_parsing(server_client):
    body = json.dumps({"events": [{"type": "view", "product": 1, "source": "x" * 60}] * 20_000})
    response = server_client.post(URL, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_same_batch_with_idempotency_key_is_recorded_once_with_the_same_response(server_client, product_factory):
    product = product_factory()
    batch = [{"type": "purchase", "product": product.pk, "session": "s"}]
    first = post(server_client, batch, HTTP_IDEMPOTENCY_KEY="order-1001")
    again = post(server_client, batch, HTTP_IDEMPOTENCY_KEY="order-1001")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert "Idempotent-Replayed" not in first and again["Idempotent-Replayed"] == "true"
    assert Interaction.objects.count() == 1
    other = post(server_client, batch, HTTP_IDEMPOTENCY_KEY="order-1002")
    assert other.status_code == 201 and Interaction.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_idempotency_key_record_once(server_client, product_factory, monkeypatch):
    product = product_factory()
    slow_record = events_module.record_interactions

    def slow(interactions):  # hold the first transaction open while the retry arrives
        rows = slow_record(interactions)
        time.sleep(0.5)
        return rows

    monkeypatch.setattr(events_module, "record_interactions", slow)
    batch = [{"type": "purchase", "product": product.pk, "session": "s"}]
    responses = []

    def send():
        try:
            responses.append(post(server_client, batch, HTTP_IDEMPOTENCY_KEY="order-7"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert Interaction.objects.count() == 1


def test_idempotency_key_with_another_body_is_422(server_client, product_factory):
    product = product_factory()
    post(server_client, [{"type": "view", "product": product.pk, "session": "s"}], HTTP_IDEMPOTENCY_KEY="k")
    response = post(
        server_client, [{"type": "purchase", "product": product.pk, "session": "s"}], HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Interaction.objects.count() == 1


def test_a_rejected_batch_does_not_use_up_its_idempotency_key(server_client, product_factory):
    product = product_factory()
    bad = post(server_client, [{"type": "view", "product": 999999, "session": "s"}], HTTP_IDEMPOTENCY_KEY="k")
    assert bad.status_code == 400
    fixed = post(server_client, [{"type": "view", "product": product.pk, "session": "s"}], HTTP_IDEMPOTENCY_KEY="k")
    assert fixed.status_code == 201 and Interaction.objects.count() == 1


def test_event_ids_make_a_retried_batch_record_nothing_twice(api_client, product_factory):
    product = product_factory()
    batch = [
        {"type": "view", "product": product.pk, "id": "ev-1"},
        {"type": "add_to_cart", "product": product.pk, "id": "ev-2"},
    ]
    first = post(api_client, batch)
    # the retry carries one new event too
    again = post(api_client, [*batch, {"type": "view", "product": product.pk, "id": "ev-3"}])
    assert first.status_code == again.status_code == 201
    assert again.json()["events"][:2] == first.json()["events"]
    assert Interaction.objects.count() == 3
    assert post(api_client, batch).json() == first.json()


def test_event_ids_belong_to_their_poster(server_client, api_client, product_factory):
    product = product_factory()
    post(api_client, [{"type": "view", "product": product.pk, "id": "1"}])
    post(server_client, [{"type": "view", "product": product.pk, "id": "1", "session": "s"}])
    assert Interaction.objects.count() == 2


def test_an_event_id_repeated_in_one_batch_is_invalid(api_client, product_factory):
    product = product_factory()
    response = post(api_client, [{"type": "view", "product": product.pk, "id": "x"}] * 2)
    assert response.status_code == 400
    assert [bad["index"] for bad in response.json()["error"]["invalid"]] == [1]


def test_shoppers_cannot_backdate_and_server_clients_must_name_the_shopper(api_client, server_client, product_factory):
    product = product_factory()
    backdated = post(api_client, [{"type": "view", "product": product.pk, "timestamp": "2020-01-01T00:00:00Z"}])
    assert backdated.json()["error"]["invalid"][0]["fields"] == {
        "timestamp": ["Only server clients may set the time of an event."]
    }
    anonymous = post(server_client, [{"type": "view", "product": product.pk}])
    assert anonymous.json()["error"]["invalid"][0]["fields"] == {"user": ["Name the shopper: user or session."]}
    future = post(
        server_client, [{"type": "view", "product": product.pk, "session": "s", "timestamp": "2999-01-01T00:00:00Z"}]
    )
    assert "future" in future.json()["error"]["invalid"][0]["fields"]["timestamp"][0]
    assert not Interaction.objects.exists()


def _served_token(client, product) -> tuple[int, str]:
    body = client.get(f"/api/v1/products/{product.pk}/similar/?limit=3").json()
    return body["results"][0]["id"], body["results"][0]["click_token"]


def test_click_with_a_served_token_counts_for_ctr(api_client, small_catalog):
    product_id, token = _served_token(api_client, small_catalog["anchor"])
    response = post(api_client, [{"type": "click", "product": product_id, "click_token": token}])
    assert response.status_code == 201, response.json()
    assert Click.objects.get().product_id == product_id
    assert Interaction.objects.get(kind="click").product_id == product_id
    assert tracking.ctr(widget="similar-items")["clicks"] == 1


def test_click_token_tampered_or_for_another_product_rejects_the_batch(api_client, small_catalog):
    product_id, token = _served_token(api_client, small_catalog["anchor"])
    other = small_catalog["other0"].pk
    batch = [
        {"type": "view", "product": product_id},
        {"type": "click", "product": product_id, "click_token": token[:-3] + "abc"},
        {"type": "click", "product": other, "click_token": token},
    ]
    response = post(api_client, batch)
    assert response.status_code == 400
    invalid = response.json()["error"]["invalid"]
    assert [bad["index"] for bad in invalid] == [1, 2]
    assert f"for product {product_id}" in invalid[1]["fields"]["click_token"][0]
    assert not Click.objects.exists() and not Interaction.objects.exists()


def test_database_failure_is_503_in_the_error_shape(api_client, product_factory, monkeypatch):
    product = product_factory()

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(events_module, "record_interactions", down)
    response = post(api_client, [{"type": "view", "product": product.pk}])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


def test_purchases_and_ratings_from_a_shoppers_own_client_are_403_and_nothing_is_recorded(
    api_client, shopper_client, staff_client, product_factory
):
    product = product_factory()
    batch = [
        {"type": "view", "product": product.pk},
        {"type": "purchase", "product": product.pk},
        {"type": "rating", "product": product.pk, "value": 5},
    ]
    response = post(api_client, batch, HTTP_IDEMPOTENCY_KEY="order-1")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "server_only_events" and "only from server clients" in error["message"]
    assert [bad["index"] for bad in error["invalid"]] == [1, 2]
    assert post(shopper_client, batch[1:2], **csrf_header(shopper_client)).status_code == 403
    assert post(staff_client, batch[1:2]).status_code == 403  # staff post them with a token too
    assert not Interaction.objects.exists()
    # the refused batch did not use up its key; the other events go in with it
    assert post(api_client, batch[:1], HTTP_IDEMPOTENCY_KEY="order-1").status_code == 201
    assert list(Interaction.objects.values_list("kind", flat=True)) == ["view"]


def test_a_click_token_counts_only_for_the_shopper_it_was_served_to_and_once(api_client, shopper_client, small_catalog):
    csrf = csrf_header(shopper_client)
    body = shopper_client.get(f"/api/v1/products/{small_catalog['anchor'].pk}/similar/?limit=3").json()
    (first, first_token), (second, second_token) = [(r["id"], r["click_token"]) for r in body["results"][:2]]
    stolen = post(api_client, [{"type": "click", "product": first, "click_token": first_token}])
    assert stolen.status_code == 400
    assert "another shopper" in stolen.json()["error"]["invalid"][0]["fields"]["click_token"][0]
    for product, token in [(first, first_token), (first, first_token), (second, second_token)]:
        response = post(shopper_client, [{"type": "click", "product": product, "click_token": token}], **csrf)
        assert response.status_code == 201, response.json()
    assert Click.objects.count() == 1 and Click.objects.get().product_id == first
    assert tracking.ctr(widget="similar-items") == {"impressions": 1, "clicks": 1, "ctr": 1.0}
