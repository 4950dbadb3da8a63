"""Serving stays cheap per call: model neighbours over known items, one round trip per vector query, a lean page."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext

from catalog.models import Product
from recommendations import serving
from recommendations.ml.mf import ALS
from recommendations.models import ProductSnapshot
from recommendations.serving import versions
from recommendations.sync import sync_products

from .conftest import widget_ids


def _factor_model(items: int = 60, factors: int = 6, zero=(3, 17, 40)) -> ALS:
    model = ALS(factors=factors)
    rng = np.random.default_rng(4)
    model.item_factors = rng.standard_normal((items, factors)).astype(np.float32) * rng.uniform(0.1, 5.0, (items, 1))
    model.item_factors[list(zero)] = 0.0  # items nobody interacted with
    model.user_factors = np.zeros((0, factors), dtype=np.float32)
    return model


def test_factor_model_neighbours_are_the_models_own_over_the_items_it_knows():
    # given: a factor model whose items 3, 17 and 40 have no interactions (zero factors)
    model = _factor_model()
    neighbours, cols = serving._neighbour_model(model)
    index = versions.model_neighbour_index(model)
    loaded = serving.LoadedModel(1, model, np.arange(60), {}, {}, neighbours, cols, index)
    assert len(cols) == 57 and model.item_factors.shape == (60, 6)  # the model itself is untouched
    for col in range(60):
        # when
        ids, scores = loaded.similar_items(col, 10)
        # then: the model's answer (ids and cosines), or none for an item without factors
        if col in (3, 17, 40):
            assert len(ids) == 0
            continue
        want_ids, want_scores = model.similar_items(np.array([col]), N=10)
        assert ids.tolist() == want_ids[0].tolist()
        np.testing.assert_allclose(scores, want_scores[0], atol=1e-5)
        assert not {3, 17, 40, col} & set(ids.tolist())


def _settings_seen():
    """A query that reports the HNSW settings it runs under."""
    return Product.objects.annotate(
        ef=RawSQL("current_setting('hnsw.ef_search', true)", []),
        budget=RawSQL("current_setting('statement_timeout')", []),
    ).values_list("ef", "budget")[:1]


def _current(name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s, true)", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_vector_query_outside_a_transaction_is_one_round_trip_and_its_settings_end_with_it(settings):
    Product.objects.create(sku="P-1", title="One")
    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": 77, "WIDGET_TIME_BUDGET_MS": 150}
    assert not connection.in_atomic_block
    serving.search_rows(_settings_seen())  # the first search in a process also reads pgvector's version
    with CaptureQueriesContext(connection) as captured:
        rows = serving.search_rows(_settings_seen())
    assert rows == [("77", "150ms")]
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 2 and "set_config" in sql[0]  # settings + query, sent together (no BEGIN/COMMIT)
    assert _current("hnsw.ef_search") in (None, "", "40") and _current("statement_timeout") == "0"


@pytest.mark.django_db(transaction=True)
def test_a_prepared_query_whose_pipeline_loses_its_result_is_answered_unprepared(settings, monkeypatch, caplog):
    # a psycopg pipeline's exit raised IndexError (pop from an empty deque) once in the
    # million-product benchmark (cf. psycopg#604); the shopper still gets the rows
    from recommendations.serving import vectors

    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": 77, "WIDGET_TIME_BUDGET_MS": 150}
    query = ("SELECT current_setting('hnsw.ef_search', true), current_setting('statement_timeout')", [])

    def lost(*args):
        raise IndexError("pop from an empty deque")

    monkeypatch.setattr(vectors, "_prepared_rows", lost)
    assert serving.search_rows(query) == [("77", "150ms")]  # under the same settings
    assert "lost its result" in caplog.text
    assert _current("statement_timeout") == "0"  # and they ended with it


@pytest.mark.django_db(transaction=True)
def test_time_budget_stops_a_slow_vector_query_and_the_connection_stays_usable(settings):
    Product.objects.create(sku="P-1", title="One")
    settings.VISREC = {**settings.VISREC, "WIDGET_TIME_BUDGET_MS": 50}
    slow = Product.objects.annotate(nap=RawSQL("pg_sleep(1)", [])).values_list("pk", "nap")[:1]
    with pytest.raises(DatabaseError):
        serving.search_rows(slow)
    assert Product.objects.count() == 1 and _current("statement_timeout") == "0"


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_a_stopped_vector_query_leaves_the_transaction_usable(settings):
    settings.VISREC = {**settings.VISREC, "WIDGET_TIME_BUDGET_MS": 50, "HNSW_EF_SEARCH": 77}
    with transaction.atomic():
        Product.objects.create(sku="P-1", title="One")
        assert serving.search_rows(_settings_seen()) == [("77", "50ms")]
        slow = Product.objects.annotate(nap=RawSQL("pg_sleep(1)", [])).values_list("pk", "nap")[:1]
        with pytest.raises(DatabaseError):
            serving.search_rows(slow)
        assert Product.objects.count() == 1 and _current("statement_timeout") == "0"


@pytest.mark.django_db
def test_product_page_reads_the_shoppers_history_once_and_stays_under_a_query_cap(client, small_catalog):
    anchor, twin = small_catalog["anchor"], small_catalog["twin"]
    client.get(f"/product/{twin.pk}/")  # a session with a viewed product; warms per-process state
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/product/{anchor.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-visrec-widget="similar-items"' in html and 'data-visrec-widget="recently-viewed"' in html
    sql = [q["sql"] for q in captured.captured_queries]
    history = [s for s in sql if s.startswith("SELECT id, product_id, kind, created_at FROM")]
    assert len(history) == 1, history  # for_you and recently_viewed share it
    work = [
        s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE", "RESET")) and "recommendations_impression" not in s
    ]
    assert len(work) <= 15, "\n".join(work)  # (impressions are written inline in tests, asynchronously in the shop)


def test_product_pages_share_the_compiled_rules_sql(client, small_catalog):
    """The page's own product is excluded by a query parameter, not a per-product rule (no compile per page)."""
    anchor, twin, cousin = small_catalog["anchor"], small_catalog["twin"], small_catalog["cousin"]
    client.get(f"/product/{anchor.pk}/")
    compiled = set(serving._rules_sql)
    for product in (twin, cousin):
        html = client.get(f"/product/{product.pk}/").content.decode()
        assert product.pk not in widget_ids(html, "for-you")
    assert set(serving._rules_sql) == compiled
    shown = serving.for_you(session_key="someone", limit=6, exclude=[twin.pk])
    assert twin.pk not in shown.product_ids


@pytest.mark.django_db(transaction=True)
def test_rankings_are_computed_once_per_process_even_after_the_shared_cache_empties(small_catalog, monkeypatch):
    import threading

    from django.core.cache import cache
    from django.db import connections

    def rank_in_thread():
        try:
            serving._ranked_ids("popular")
        finally:
            connections.close_all()

    calls = []
    real = serving._rank

    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(serving.fallbacks, "_rank", counted)
    threads = [threading.Thread(target=rank_in_thread) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # six threads, one query
    cache.delete(serving._key("ranked", "popular", None, serving._RANKED_DEPTH))
    assert serving._ranked_ids("popular") == real("popular", None, serving._RANKED_DEPTH)
    assert len(calls) == 1  # the process's copy answered


def test_web_processes_run_numeric_libraries_single_threaded():
    # given: a web process started without thread settings (as gunicorn starts visrec_shop.wsgi)
    import json
    import os
    import subprocess
    import sys

    unset = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VISREC_WEB_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["DATABASE_URL"] = "postgresql://127.0.0.1:1/not-connected"  # loading the app opens no connection
    code = (
        "import json, visrec_shop.wsgi, numpy, threadpoolctl; "
        "print(json.dumps(sorted({i['user_api']: i['num_threads'] for i in threadpoolctl.threadpool_info()}.items())))"
    )
    # when
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    # then: BLAS (and OpenMP, where loaded) use one thread: their spinning helpers would take the other requests' CPU
    assert out.returncode == 0, out.stderr
    limits = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    assert limits.get("blas") == 1, limits
    assert all(n == 1 for n in limits.values()), limits


@pytest.mark.django_db(transaction=True)
def test_a_page_view_is_one_round_trip_committed_asynchronously_and_the_setting_ends_with_it():
    from catalog import services
    from recommendations.models import Interaction

    product = Product.objects.create(sku="P-V", title="Viewed")
    assert not connection.in_atomic_block
    # when: a view is recorded outside a transaction (as the product page does)
    with CaptureQueriesContext(connection) as captured:
        view = services.record_interaction(product, "view", session_key="s-1", source="product-page")
    # then: the setting and the insert went out together (no BEGIN / SET / COMMIT exchanges)
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 2 and "set_config('synchronous_commit', 'off', true)" in sql[0] and sql[1].startswith("INSERT")
    # the row is committed (a fresh connection sees it) and the connection is back to durable commits
    assert _current("synchronous_commit") == "on"
    connection.close()
    assert Interaction.objects.get(pk=view.pk).session_key == "s-1"
    # and a purchase stays durable: its own transaction, without the setting
    with CaptureQueriesContext(connection) as captured:
        services.record_interaction(product, "purchase", session_key="s-1")
    assert not any("synchronous_commit" in q["sql"] for q in captured.captured_queries)


@pytest.mark.django_db
def test_a_view_inside_a_transaction_turns_async_commit_on_only_for_it():
    from catalog import services

    product = Product.objects.create(sku="P-W", title="Viewed")
    with transaction.atomic():
        services.record_interaction(product, "view", session_key="s-2")
        assert _current("synchronous_commit") == "off"  # SET LOCAL: this transaction only
    assert connection.in_atomic_block  # the test's own transaction is untouched


@pytest.mark.django_db(transaction=True)
def test_vector_queries_are_planned_once_per_connection_and_answer_as_planned_each_time(small_catalog, settings):
    # given: the neighbour query of one anchor, answered with the plan made for each call
    anchor = small_catalog["anchor"]
    act = serving.active()

    def neighbours():
        vector = serving.anchor_vector(anchor.pk, act.embedding)
        return serving.nearest_products(vector, act.embedding, 5, exclude=[anchor.pk])

    settings.VISREC = {**settings.VISREC, "PREPARED_QUERIES": False}
    planned_each_time = neighbours()
    assert planned_each_time
    # when: prepared statements are on (the default) and the query runs three times
    settings.VISREC = {**settings.VISREC, "PREPARED_QUERIES": True}
    with CaptureQueriesContext(connection) as captured:
        answers = [neighbours() for _ in range(3)]
    # then: the same neighbours and distances
    for answer in answers:
        assert [pk for pk, _ in answer] == [pk for pk, _ in planned_each_time]
        np.testing.assert_allclose([d for _, d in answer], [d for _, d in planned_each_time], atol=1e-6)
    # one round trip each (settings + query, logged with their values), the statement prepared once and run
    # with its generic plan every time (no planning per call)
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 6 and "force_generic_plan" in sql[0] and f"= {anchor.pk} " in sql[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%%<=>%%'")
        assert cursor.fetchall() == [(3, 0)]
    # and the connection is left as Django uses it: values bound on the client, plans chosen per query
    assert connection.connection.prepare_threshold is None
    assert _current("plan_cache_mode") == "auto" and _current("hnsw.ef_search") in (None, "", "40")


@pytest.mark.django_db(transaction=True)
def test_product_lists_and_history_are_prepared_and_load_as_the_orm_would(small_catalog, settings):
    # given: a shopper who bought one product and viewed another, and the page's product
    anchor, twin = small_catalog["anchor"], small_catalog["twin"]
    from catalog import services

    services.record_interaction(twin, "purchase", session_key="prep")
    services.record_interaction(small_catalog["cousin"], "view", session_key="prep")
    rules = serving.rules_for("similar-items", None)
    sql, params = serving.products_sql([anchor.pk, twin.pk, small_catalog["sold_out"].pk], rules, None, "prep")
    # when: loaded prepared (the default) and by the ORM's raw query
    prepared = {p.pk: p for p in serving.raw_products(sql, params)}
    by_orm = {p.pk: p for p in ProductSnapshot.objects.raw(sql, params)}
    events = serving.history(session_key="prep")
    # then: the same products, fields, deferred fields and primary image, and the history newest first
    assert set(prepared) == set(by_orm) == {anchor.pk}  # sold out: filtered; bought: not shown again
    mine, theirs = prepared[anchor.pk], by_orm[anchor.pk]
    assert mine.get_deferred_fields() == theirs.get_deferred_fields() and "category_path" in mine.get_deferred_fields()
    for field in ("title", "price", "currency", "category_id", "in_stock", "active"):
        assert getattr(mine, field) == getattr(theirs, field)
    assert mine.primary_image_url == theirs.primary_image_url and mine.primary_image_url
    assert mine._state.db == "default" and not mine._state.adding
    assert [pk for _, pk, _, _ in events.events] == [small_catalog["cousin"].pk, twin.pk]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] >= 2  # the list and the history


@pytest.mark.django_db
def test_remembered_image_urls_follow_the_media_url(small_catalog, settings):
    anchor = small_catalog["anchor"]

    def listed_url() -> str:
        return serving.raw_products(*serving.products_sql([anchor.pk], None))[0].primary_image_url

    old_media = settings.MEDIA_URL
    first = listed_url()
    assert first.startswith(old_media) and listed_url() == first
    settings.MEDIA_URL = "/cdn-media/"  # e.g. a shop moving its media behind a CDN path
    sync_products([anchor.pk])  # visrec's copy of the shop's URLs is refreshed (visrec_sync does all)
    assert listed_url() == "/cdn-media/" + first.removeprefix(old_media)


@pytest.mark.django_db
def test_a_list_without_a_shopper_takes_its_products_from_the_neighbour_query(small_catalog):
    anchor = small_catalog["anchor"]
    # when: similar items are computed for a caller without a shopper (a server-to-server API call)
    with CaptureQueriesContext(connection) as captured:
        listed = serving.similar_items(anchor, 3, cached=False)
    # then: no second query loads the shown products: the neighbour query brought their cards
    sql = [q["sql"] for q in captured.captured_queries]
    assert sum("<=>" in s for s in sql) == 1
    assert not [s for s in sql if '"recommendations_productsnapshot"."title"' in s and "<=>" not in s], sql
    # and they are loaded as the product list query loads them
    assert len(listed) == 3 and small_catalog["twin"].pk in listed.product_ids
    by_query = {p.pk: p for p in serving.raw_products(*serving.products_sql(listed.product_ids, None))}
    for rec in listed:
        mine, theirs = rec.product, by_query[rec.product.pk]
        assert mine.get_deferred_fields() == theirs.get_deferred_fields()
        assert (mine.title, mine.price, mine.category_id, mine.in_stock) == (
            theirs.title,
            theirs.price,
            theirs.category_id,
            theirs.in_stock,
        )
        assert mine.primary_image_url == theirs.primary_image_url


@pytest.mark.django_db
def test_a_shoppers_bought_products_stay_out_of_lists_built_from_the_neighbour_query(small_catalog):
    from catalog import services

    anchor, twin = small_catalog["anchor"], small_catalog["twin"]
    assert twin.pk in serving.similar_items(anchor, 3, cached=False).product_ids
    services.record_interaction(twin, "purchase", session_key="buyer")
    listed = serving.similar_items(anchor, 3, cached=False, session_key="buyer")
    assert twin.pk not in listed.product_ids and len(listed) == 3


@pytest.mark.django_db(transaction=True)
def test_a_written_out_view_stores_what_the_orm_would_and_refuses_what_full_clean_refuses():
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    from catalog import services
    from recommendations.models import Interaction

    product = Product.objects.create(sku="P-X", title="Viewed")
    user = get_user_model().objects.create_user("viewer")
    view = services.record_interaction(product, "click", user=user, session_key="s-9", source="similar-items")
    stored = Interaction.objects.get(pk=view.pk)
    assert (stored.product_id, stored.user_id, stored.session_key, stored.kind, stored.value, stored.source) == (
        product.pk,
        user.pk,
        "s-9",
        "click",
        1.0,
        "similar-items",
    )
    assert stored.created_at == view.created_at and stored.event_key is None and not view._state.adding
    with pytest.raises(ValidationError) as refused:
        services.record_interaction(product, "view", session_key="s-9", source="x" * 65)
    assert "source" in refused.value.message_dict
    assert Interaction.objects.count() == 1


@pytest.mark.django_db
def test_array_literals_read_back_as_the_values_they_were_made_of():
    texts = ["purchase", 'a"b', "c\\d", "x,y", "{z}", " spaced ", ""]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::bigint[]", [serving.text_array(texts), serving.int_array([3, 2**40, -1])]
        )
        assert cursor.fetchone() == (texts, [3, 2**40, -1])
