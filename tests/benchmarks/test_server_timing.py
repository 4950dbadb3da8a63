"""The Server-Timing middleware adds the application's time to every response."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpResponse
from django.test import RequestFactory

from visrec_shop.middleware import ServerTimingMiddleware


def test_adds_app_duration():
    response = ServerTimingMiddleware(lambda request: HttpResponse("ok"))(RequestFactory().get("/"))

    assert re.fullmatch(r"app;dur=\d+\.\d\d", response["Server-Timing"])


def test_keeps_an_existing_server_timing_entry():
    def view(request):
        response = HttpResponse("ok")
        response["Server-Timing"] = "db;dur=1.5"
        return response

    response = ServerTimingMiddleware(view)(RequestFactory().get("/"))

    assert re.fullmatch(r"db;dur=1\.5, app;dur=\d+\.\d\d", response["Server-Timing"])


def test_can_be_turned_off(settings):
    settings.SERVER_TIMING = False

    with pytest.raises(MiddlewareNotUsed):
        ServerTimingMiddleware(lambda request: HttpResponse("ok"))
