"""Hostile uploads: throttled per trustworthy client address, bodies refused before they are read, decodes capped."""

from __future__ import annotations

import pytest
from django.core.files import uploadhandler
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from recommendations import serving
from tests.fixtures.images import HOSTILE_IMAGES, make_image

pytestmark = pytest.mark.django_db

API = "/api/v1/search/by-image/"
PAGE = "/search/photo/"


@pytest.fixture
def one_search_a_minute(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"recommendations": "100/min", "search": "1/min", "events": "100/min"},
    }


@pytest.fixture
def temp_files(monkeypatch) -> list[str]:
    """The names of the uploads Django spools to a temporary file during the test."""
    spooled: list[str] = []
    original = uploadhandler.TemporaryFileUploadHandler.new_file

    def new_file(self, field_name, file_name, *args, **kwargs):
        spooled.append(file_name)
        return original(self, field_name, file_name, *args, **kwargs)

    monkeypatch.setattr(uploadhandler.TemporaryFileUploadHandler, "new_file", new_file)
    return spooled


def _upload(client, url: str, data: bytes = b"not a photo", **extra):
    field = "image" if url == API else "photo"
    return client.post(url, {field: SimpleUploadedFile("p.jpg", data, content_type="image/jpeg")}, **extra)


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(api_client, one_search_a_minute):
    assert _upload(api_client, API, HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 400  # a bad file, counted
    again = _upload(api_client, API, HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert again.status_code == 429 and again.json()["error"]["code"] == "throttled"


def test_behind_trusted_proxies_the_address_the_last_proxy_saw_counts(api_client, one_search_a_minute, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    first = _upload(api_client, API, HTTP_X_FORWARDED_FOR="203.0.113.1, 198.51.100.7")
    forged = _upload(api_client, API, HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7")
    other_client = _upload(api_client, API, HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert (first.status_code, forged.status_code, other_client.status_code) == (400, 429, 400)


def test_an_ipv6_client_is_one_client_across_its_64_network(api_client, one_search_a_minute):
    assert _upload(api_client, API, REMOTE_ADDR="2001:db8:1:2::1").status_code == 400
    assert _upload(api_client, API, REMOTE_ADDR="2001:db8:1:2:ffff::9").status_code == 429
    assert _upload(api_client, API, REMOTE_ADDR="2001:db8:1:3::1").status_code == 400


def test_the_photo_page_is_throttled_and_shares_the_apis_budget(one_search_a_minute):
    client = Client()
    assert _upload(client, PAGE).status_code == 400
    page = _upload(client, PAGE)
    assert page.status_code == 429 and int(page["Retry-After"]) > 0
    assert "Too many uploads" in page.content.decode() and b"data-drop-zone" in page.content
    assert _upload(Client(), API).status_code == 429  # the same address, the same "search" budget
    assert Client().get(PAGE).status_code == 200  # showing the page is not an upload


def test_the_photo_page_lets_uploads_through_when_the_throttles_cache_fails(one_search_a_minute, monkeypatch):
    from recommendations.api.throttling import ShopperRateThrottle

    class Down:
        def get(self, *args, **kwargs):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(ShopperRateThrottle, "cache", Down())
    assert [_upload(Client(), PAGE).status_code for _ in range(2)] == [400, 400]  # a bad file, not a 500


def test_an_oversized_photo_is_refused_before_a_temporary_file_is_written(settings, temp_files):
    settings.VISREC = {**settings.VISREC, "MAX_IMAGE_BYTES": 1_000_000}
    big = b"\xff\xd8" + bytes(3_000_000)  # over FILE_UPLOAD_MAX_MEMORY_SIZE: Django would spool it
    page = _upload(Client(), PAGE, big)
    assert page.status_code == 413 and "at most 1,065,536" in page.content.decode()
    api = _upload(Client(), API, big)
    assert api.status_code == 413 and api.json()["error"]["code"] == "payload_too_large"
    assert temp_files == []


def test_the_photo_page_still_checks_csrf_after_its_own_checks(temp_files):
    client = Client(enforce_csrf_checks=True)
    client.get(PAGE)
    token = client.cookies["csrftoken"].value
    assert _upload(client, PAGE).status_code == 403
    photo = make_image(size=(64, 64))
    assert _upload(client, PAGE, photo, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_other_pages_refuse_a_strangers_body_that_would_be_spooled(temp_files, admin_client):
    # given a stranger with a CSRF cookie (Django's CSRF check reads the body of any POST)
    stranger = Client(enforce_csrf_checks=True)
    stranger.get(PAGE)
    # when they post a large file to the admin's import page or the home page
    for url in ("/admin/catalog/product/import/", "/"):
        response = _upload(stranger, url, bytes(3_000_000))
        # then it is refused from Content-Length, before the body is read
        assert response.status_code == 413 and b"at most 2,621,440" in response.content
    assert temp_files == []
    # staff keep their own (larger) limits: the import page reads their upload (a form error here)
    assert _upload(admin_client, "/admin/catalog/product/import/", bytes(3_000_000)).status_code == 400
    assert temp_files == ["p.jpg"]


def test_a_full_process_answers_429_search_busy_rather_than_queueing(settings):
    settings.VISREC = {**settings.VISREC, "SEARCH_MAX_CONCURRENT_DECODES": 1, "SEARCH_DECODE_WAIT_SECONDS": 0.05}
    photo = make_image(size=(64, 64))
    with serving.decode_slot():  # another request is decoding
        api = _upload(Client(), API, photo)
        page = _upload(Client(), PAGE, photo)
        bomb = _upload(Client(), API, HOSTILE_IMAGES["decompression_bomb_png"][0]())
    assert bomb.status_code == 400  # refused from its header: it never waits for a slot
    assert api.status_code == 429 and api["Retry-After"] == "1"
    assert api.json()["error"]["code"] == "search_busy"
    assert page.status_code == 429 and "Too many photos" in page.content.decode()
    assert _upload(Client(), API, photo).status_code == 200  # the slot is free again
