"""The product page answers 200 with a fallback when the vector index or the database fails."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection

from recommendations import serving
from recommendations.models import Interaction

from .conftest import widget_ids


def _raise_on(predicate):
    """An ``execute_wrapper`` that fails the queries ``predicate(sql)`` selects, like a broken server."""

    def wrapper(execute, sql, params, many, context):
        if predicate(sql):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.django_db
def test_broken_vector_index_gives_popular_in_category(client, small_catalog):
    # given: the HNSW index is gone and every vector query fails
    anchor = small_catalog["anchor"]
    Interaction.objects.create(product=small_catalog["cousin"], kind="purchase", session_key="crowd")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {serving.active().embedding.index_name}")
    # when
    with connection.execute_wrapper(_raise_on(lambda sql: "<=>" in sql)):
        response = client.get(f"/product/{anchor.pk}/")
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert anchor.title in html
    assert widget_ids(html, "similar-items")[0] == small_catalog["cousin"].pk
    assert 'data-visrec-source="popular"' in html


@pytest.mark.django_db
def test_slow_vector_query_is_cut_at_the_time_budget(client, small_catalog, settings):
    settings.VISREC = {**settings.VISREC, "WIDGET_TIME_BUDGET_MS": 100}

    def slow(execute, sql, params, many, context):
        if "<=>" in sql:
            execute("SELECT pg_sleep(2)", None, False, context)  # the server hangs on the vector query
        return execute(sql, params, many, context)

    assert client.get(f"/product/{small_catalog['twin'].pk}/").status_code == 200  # a good list is kept
    started = time.perf_counter()
    with connection.execute_wrapper(slow):
        response = client.get(f"/product/{small_catalog['anchor'].pk}/")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < 1.5  # statement_timeout cancelled both vector queries long before pg_sleep(2) ended
    html = response.content.decode()
    assert 'data-visrec-source="cache-fallback"' in html  # out of time: no further queries, the cached list
    assert widget_ids(html, "similar-items")


@pytest.mark.django_db(transaction=True)
def test_stopped_database_still_renders_the_product_page(client, small_catalog):
    # given: a shopper saw the page while the database was up
    anchor = small_catalog["anchor"]
    assert client.get(f"/product/{anchor.pk}/").status_code == 200
    # when: every query fails from now on (session, product, widgets, tracking)
    with connection.execute_wrapper(_raise_on(lambda sql: True)):
        response = client.get(f"/product/{anchor.pk}/")
        other = client.get(f"/product/{small_catalog['twin'].pk}/")
    # then: the page answers from cached data with the last good popular list
    assert response.status_code == 200
    html = response.content.decode()
    assert anchor.title in html
    assert 'data-visrec-source="cache-fallback"' in html
    assert widget_ids(html, "similar-items") and anchor.pk not in widget_ids(html, "similar-items")
    assert 'data-visrec-widget="recently-viewed"' not in html
    # a page never rendered before cannot be made up: a clear 503, not a crash
    assert other.status_code == 503
