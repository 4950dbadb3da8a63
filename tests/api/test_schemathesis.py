"""Property-based tests of the whole API from its OpenAPI schema: no input gives a 5xx.

Schemathesis generates requests for every operation of ``/api/schema/`` (valid ones and,
in negative mode, invalid ones) and calls the WSGI application in-process. The number
of examples is bounded so the run takes well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from recommendations import serving
from visrec_shop.wsgi import application

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25
# No 5xx, and every answer is one the schema documents (status, content type, body shape).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calling the WSGI app directly fires request signals that close the test's DB connection.

    Django's test client disconnects ``close_old_connections`` the same way.
    """
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def no_throttling(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"recommendations": None, "search": None, "events": None},
    }


def fuzz(mode: schemathesis.GenerationMode) -> list[str]:
    """Run every operation; the failures found, one per failing operation."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except (Failure, FailureGroup) as e:  # report every failing operation, not only the first
            failures.append(f"{operation.label}: {e}")
    return failures


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_request_gives_a_server_error(small_catalog, no_throttling, mode):
    assert fuzz(mode) == []


def test_the_fuzzer_does_find_a_server_error(product_factory, no_throttling, monkeypatch):
    product_factory()

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(serving, "popular", bug)
    failures = fuzz(schemathesis.GenerationMode.POSITIVE)
    assert [f for f in failures if f.startswith("GET /api/v1/products/popular/")], failures
