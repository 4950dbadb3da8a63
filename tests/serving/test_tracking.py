"""Impressions (asynchronous, never failing) and signed click tokens counted into CTR."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection
from django.utils import timezone

from recommendations import serving, tracking
from recommendations.models import Click, Impression, Interaction

from .conftest import widget_ids


def _list(products, widget="similar-items", model_version_id=7) -> serving.RecommendationList:
    items = [serving.Recommendation(p, 0.5, "visual") for p in products]
    return serving.RecommendationList(widget, items, model_version_id, "3", "visual")


@pytest.mark.django_db
def test_impression_records_widget_versions_positions_and_shopper(small_catalog):
    products = [small_catalog["twin"], small_catalog["cousin"]]
    impression_id = tracking.record_impression(_list(products), session_key="s1")
    row = Impression.objects.get(pk=impression_id)
    assert (row.widget, row.model_version_id, row.embedding_version, row.arm) == ("similar-items", 7, "3", "")
    assert row.items == [
        {"product": products[0].pk, "position": 0, "reason": "visual"},
        {"product": products[1].pk, "position": 1, "reason": "visual"},
    ]
    assert row.session_key == "s1" and row.user_id is None


@pytest.mark.django_db
def test_recording_never_raises(small_catalog):
    def down(execute, sql, params, many, context):
        raise OperationalError("database is down")

    with connection.execute_wrapper(down):
        impression_id = tracking.record_impression(_list([small_catalog["twin"]]), session_key="s1")
    uuid.UUID(impression_id)
    assert not Impression.objects.filter(pk=impression_id).exists()


@pytest.mark.django_db(transaction=True)
def test_threaded_writer_records_asynchronously(small_catalog, settings):
    settings.VISREC = {**settings.VISREC, "TRACKING_MODE": "thread"}
    ids = [tracking.record_impression(_list([small_catalog["twin"]]), session_key=f"s{n}") for n in range(25)]
    tracking.flush()
    assert Impression.objects.filter(pk__in=ids).count() == 25


@pytest.mark.django_db
def test_click_tokens_are_signed_and_counted_once(small_catalog):
    product = small_catalog["cousin"]
    impression_id = tracking.record_impression(_list([small_catalog["twin"], product]), session_key="s1")
    token = tracking.click_token(impression_id, product.pk, 1)
    click = tracking.record_click(token, session_key="s1")
    assert (click.widget, click.model_version_id) == ("similar-items", 7)
    assert (click.product_id, click.position) == (product.pk, 1)
    tracking.record_click(token, session_key="s1")  # a double click
    assert Click.objects.count() == 1
    with pytest.raises(tracking.InvalidClickToken):
        tracking.record_click(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    with pytest.raises(tracking.InvalidClickToken):
        tracking.record_click("not-a-token")


def test_click_tokens_expire_survive_key_rotation_and_reject_any_altered_byte(settings, monkeypatch):
    impression = str(uuid.uuid4())
    token = tracking.click_token(impression, 123_456, 3, widget="for-you", model_version_id=5)
    assert re.fullmatch(r"[-\w]+", token) and len(token) < 100  # URL-safe, short
    assert tracking.read_click_token(token) == {
        "impression_id": impression,
        "product_id": 123_456,
        "position": 3,
        "widget": "for-you",
        "model_version_id": 5,
        "shopper": None,  # shown to no one in particular
    }
    raw = bytearray(tracking.base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for at in range(len(raw)):  # every single flipped bit of the body or the tag is refused
        altered = bytearray(raw)
        altered[at] ^= 0x01
        text = tracking.base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        with pytest.raises(tracking.InvalidClickToken):
            tracking.read_click_token(text)
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-" * 4, [old_secret]
    assert tracking.read_click_token(token)["product_id"] == 123_456  # rotated: still valid
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(tracking.InvalidClickToken):
        tracking.read_click_token(token)
    settings.SECRET_KEY = old_secret
    later = tracking.time.time() + settings.VISREC.get("CLICK_TOKEN_MAX_AGE", 7 * 24 * 3600) + 5
    monkeypatch.setattr(tracking.time, "time", lambda: later)
    with pytest.raises(tracking.InvalidClickToken, match="expired"):
        tracking.read_click_token(token)


def test_click_tokens_of_the_earlier_signed_format_are_still_read():
    impression = str(uuid.uuid4())
    legacy = tracking.signing.dumps([impression, 42, 1, "similar-items", None], salt=tracking._SALT, compress=True)
    assert tracking.read_click_token(legacy)["product_id"] == 42
    with pytest.raises(tracking.InvalidClickToken):
        tracking.read_click_token(legacy[:-3] + "abc")


@pytest.mark.django_db
def test_ctr_per_widget_and_model_version(small_catalog):
    twin, since = small_catalog["twin"], timezone.now()
    widget = f"similar-items-{uuid.uuid4().hex[:8]}"  # counts are exact whatever else is in the table
    shown = [tracking.record_impression(_list([twin], widget, model_version_id=9001)) for _ in range(4)]
    tracking.record_impression(_list([twin], f"{widget}-b", model_version_id=9002))
    tracking.record_click(tracking.click_token(shown[0], twin.pk, 0))
    assert tracking.ctr(widget=widget) == {"impressions": 4, "clicks": 1, "ctr": 0.25}
    assert tracking.ctr(model_version_id=9002) == {"impressions": 1, "clicks": 0, "ctr": 0.0}
    assert tracking.ctr(since=since)["impressions"] == 5


@pytest.mark.django_db
def test_widget_click_redirects_records_and_counts(client, small_catalog):
    html = client.get(f"/product/{small_catalog['anchor'].pk}/").content.decode()
    section = html.split('data-visrec-widget="similar-items"', 1)[1]
    first_link = re.search(r'href="(/r/[^"]+/)"', section).group(1)
    target = widget_ids(html, "similar-items")[0]
    response = client.get(first_link)
    assert response.status_code == 302 and response["Location"] == f"/product/{target}/"
    assert tracking.ctr(widget="similar-items")["clicks"] == 1
    assert Interaction.objects.filter(product_id=target, kind="click", source="similar-items").exists()
    assert client.get("/r/forged-token/").status_code == 404


@pytest.mark.django_db
def test_a_click_counts_once_per_impression_and_only_from_the_shopper_it_was_shown_to(small_catalog):
    twin, cousin = small_catalog["twin"], small_catalog["cousin"]
    # given a list shown to session s1
    shown = tracking.record_impression(_list([twin, cousin]), session_key="s1")
    first, second = tracking.click_token(shown, twin.pk, 0), tracking.click_token(shown, cousin.pk, 1)
    # then another shopper's click on it is refused, and its shopper's first click counts
    with pytest.raises(tracking.InvalidClickToken, match="another shopper"):
        tracking.record_click(first, session_key="s2")
    with pytest.raises(tracking.InvalidClickToken, match="another shopper"):
        tracking.record_click(first)
    assert tracking.record_click(first, session_key="s1").product_id == twin.pk
    # and a replay, or a second item of the same list, counts nothing
    assert tracking.record_click(first, session_key="s1") is None
    assert tracking.record_click(second, session_key="s1") is None
    assert Click.objects.count() == 1
    # a signed-in shopper's list belongs to the user, whatever the session
    alice = get_user_model().objects.create_user("alice")
    hers = tracking.record_impression(_list([twin]), user=alice)
    token = tracking.click_token(hers, twin.pk, 0)
    with pytest.raises(tracking.InvalidClickToken, match="another shopper"):
        tracking.record_click(token, session_key="s1")
    assert tracking.record_click(token, user=alice, session_key="a-new-session") is not None


def test_a_click_token_names_its_shopper_only_by_a_keyed_tag():
    impression = str(uuid.uuid4())
    mine = tracking.read_click_token(tracking.click_token(impression, 1, 0, widget="w", session_key="s1"))
    assert len(mine["shopper"]) == 8 and b"s1" not in mine["shopper"]
    other = tracking.read_click_token(tracking.click_token(impression, 1, 0, widget="w", session_key="s2"))
    assert other["shopper"] != mine["shopper"]


@pytest.mark.django_db
def test_a_widget_link_followed_by_someone_else_or_again_counts_nothing(client, small_catalog):
    html = client.get(f"/product/{small_catalog['anchor'].pk}/").content.decode()
    links = re.findall(r'href="(/r/[^"]+/)"', html.split('data-visrec-widget="similar-items"', 1)[1])
    stranger = type(client)()
    assert stranger.get(links[0]).status_code == 302  # the product still opens for them
    assert tracking.ctr(widget="similar-items")["clicks"] == 0
    assert not Interaction.objects.filter(kind="click").exists()
    assert client.get(links[0]).status_code == 302
    assert client.get(links[0]).status_code == client.get(links[1]).status_code == 302  # a replay, a second item
    assert tracking.ctr(widget="similar-items")["clicks"] == 1
    assert Interaction.objects.filter(kind="click").count() == 1
