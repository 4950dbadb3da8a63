"""Read replicas: serving reads on a real streaming replica of the embedded PostgreSQL, writes on the primary.

The replica is made with the embedded server's own ``pg_basebackup -R`` and runs as a hot
standby on another port (``visrec_shop.dbserver.create_replica``); it is stopped and its
folder removed at the end, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache.backends.dummy import DummyCache
from django.core.checks import run_checks
from django.db import connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from recommendations import replicas, serving
from recommendations.models import Interaction
from recommendations.serving import keys
from tests.recommendations.conftest import small_catalog  # noqa: F401  (shared fixture)
from visrec_shop import dbserver

ALIAS = "replica_test"
NEIGHBOURS = "<=>"  # in every vector query, in no other


# -- the replica -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica_dir(django_db_setup, django_db_blocker):
    """A streaming replica of the embedded server: a hot standby on port 5433, its socket in its own folder.

    Its test database is the database alias ``replica_test`` (a test mirror of ``default``:
    nothing is created, flushed or migrated there), added before any test's database set-up.
    """
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the replica is made from the embedded PostgreSQL (DATABASE_URL points elsewhere)")
    primary = Path(django_settings.VAR_DIR) / "pgdata"
    folder = Path(tempfile.mkdtemp(prefix="visrec-replica-"))  # short: a socket path has ~100 characters
    test_db = connections["default"].settings_dict
    try:
        dbserver.create_replica(primary, folder)
        dbserver.start_replica(primary, folder, port=5433)
        mirror = {**test_db["TEST"], "MIRROR": "default"}
        connections.settings[ALIAS] = {**test_db, "HOST": str(folder), "PORT": "5433", "TEST": mirror}
        yield folder
    finally:
        if hasattr(connections._connections, ALIAS):
            connections[ALIAS].close()
            del connections[ALIAS]
        connections.settings.pop(ALIAS, None)
        try:
            dbserver.stop_replica(primary, folder, mode="immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def replica(replica_dir, settings, monkeypatch):
    """The replica serving reads (its lag checked on every call).

    Lists are not cached here, so every call runs its vector query somewhere.
    """
    monkeypatch.setattr(keys, "cache", DummyCache("none", {}))
    settings.DATABASE_ROUTERS = ["recommendations.replicas.ReplicaRouter"]
    configure(settings, REPLICA_CHECK_SECONDS=0, REPLICA_MAX_LAG_SECONDS=30)
    replicas.forget()
    yield replica_dir
    replicas.forget()


def configure(settings, **values) -> None:
    settings.VISREC = {**settings.VISREC, "READ_REPLICAS": [ALIAS], **values}


def caught_up(timeout: float = 15.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    position, deadline = replicas.primary_position(), time.monotonic() + timeout
    while replicas.replica_lag(ALIAS, position) > 0:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.05)


def on_replica(sql: str, params=()):
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def vector_queries(captured: CaptureQueriesContext) -> int:
    return sum(NEIGHBOURS in q["sql"] for q in captured.captured_queries)


def get(client, url: str, alias: str = ALIAS):
    """GET ``url``; the response and how many vector queries ran on the primary and on ``alias``."""
    with CaptureQueriesContext(connections["default"]) as on_primary:
        if alias == "none":
            response = client.get(url)
            return response, vector_queries(on_primary), 0
        with CaptureQueriesContext(connections[alias]) as elsewhere:
            response = client.get(url)
    return response, vector_queries(on_primary), vector_queries(elsewhere)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


# -- serving from the replica -----------------------------------------------------------------

on_a_replica = pytest.mark.django_db(transaction=True, databases=["default", ALIAS])


@on_a_replica

def test_similar_items_are_read_on_the_replica_with_prepared_statements(replica, small_catalog):  # noqa: F811
    caught_up()
    anchor = small_catalog["anchor"]
    with replicas.on_primary():
        expected = serving.similar_items(anchor, 4, cached=False).product_ids

    response, primary_queries, replica_queries = get(APIClient(), f"/api/v1/products/{anchor.pk}/similar/?limit=4")

    assert ids(response) == expected  # the same list as the primary's
    assert (primary_queries, replica_queries) == (0, 1)
    assert on_replica("SELECT pg_is_in_recovery()") == (True,)  # the connection the query ran on is a standby
    # PREPARED_QUERIES: the neighbour query was prepared on the replica's own connection
    prepared = on_replica("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{NEIGHBOURS}%"])
    assert prepared[0] >= 1
    # popular and for you are serving reads too
    assert get(APIClient(), "/api/v1/products/popular/")[0].status_code == 200
    assert replicas.state(ALIAS).lag == 0.0


@on_a_replica
def test_a_shoppers_click_shows_at_once_while_the_replica_lags_until_lag_sends_reads_to_the_primary(
    replica,
    small_catalog,  # noqa: F811
    settings,
):
    anchor, twin, cousin = small_catalog["anchor"], small_catalog["twin"], small_catalog["cousin"]
    shopper = APIClient()
    cold, _, _ = get(shopper, "/api/v1/recommendations/for-you/?limit=3")
    assert cold.json()["source"] != "session"  # no events yet
    caught_up()
    on_replica("SELECT pg_wal_replay_pause()")
    try:
        while on_replica("SELECT pg_get_wal_replay_pause_state()")[0] != "paused":
            time.sleep(0.02)
        # when: the shopper clicks the red striped shirt (an event POST, written on the primary)
        posted = shopper.post("/api/v1/events/", {"events": [{"type": "click", "product": anchor.pk}]}, format="json")
        assert posted.status_code in (200, 201), posted.content
        session = shopper.cookies[django_settings.SESSION_COOKIE_NAME].value
        assert Interaction.objects.filter(session_key=session).count() == 1
        sql = f"SELECT count(*) FROM {Interaction._meta.db_table} WHERE session_key = %s"
        assert on_replica(sql, [session]) == (0,)  # the replica has not replayed it
        # then: "for you" follows the click at once (the shopper's events are read on the primary) ...
        response, primary_queries, replica_queries = get(shopper, "/api/v1/recommendations/for-you/?limit=3")
        assert response.json()["source"] == "session"
        assert ids(response)[0] in {twin.pk, cousin.pk} and anchor.pk not in ids(response)
        # ... while the neighbours and their reasons (the history product nearest each item) still
        # come from the replica, which lags less than the bound
        assert (primary_queries, replica_queries) == (0, 2)

        # when: the replica falls further behind than REPLICA_MAX_LAG_SECONDS
        configure(settings, REPLICA_CHECK_SECONDS=0, REPLICA_MAX_LAG_SECONDS=0.3)
        time.sleep(0.4)
        # then: the lag check sends serving reads to the primary, the shopper's list unchanged
        again, primary_queries, replica_queries = get(shopper, "/api/v1/recommendations/for-you/?limit=3")
        assert ids(again) == ids(response) and again.json()["source"] == "session"
        assert (primary_queries, replica_queries) == (2, 0)  # (the neighbours and their reasons)
        assert replicas.state(ALIAS).lag > 0.3
        similar, primary_queries, replica_queries = get(APIClient(), f"/api/v1/products/{anchor.pk}/similar/")
        assert similar.status_code == 200 and (primary_queries, replica_queries) == (1, 0)
    finally:
        on_replica("SELECT pg_wal_replay_resume()")
    # once it has caught up it serves again
    caught_up()
    _, primary_queries, replica_queries = get(APIClient(), f"/api/v1/products/{anchor.pk}/similar/")
    assert (primary_queries, replica_queries) == (0, 1) and replicas.state(ALIAS).lag == 0.0
    assert on_replica(sql, [session]) == (1,)


@on_a_replica
def test_a_stopped_replica_sends_reads_to_the_primary_without_an_error_and_serves_again_when_back(
    replica,
    small_catalog,  # noqa: F811
    settings,
):
    primary = Path(django_settings.VAR_DIR) / "pgdata"
    anchor = small_catalog["anchor"]
    caught_up()
    url = f"/api/v1/products/{anchor.pk}/similar/"
    served, primary_queries, replica_queries = get(APIClient(), url)
    assert (primary_queries, replica_queries) == (0, 1)  # on the replica, its connection kept
    configure(settings, REPLICA_CHECK_SECONDS=3600, REPLICA_RETRY_SECONDS=0.5)  # no lag check: the query meets it

    # when: the replica stops under an open connection
    dbserver.stop_replica(primary, replica, mode="fast")
    try:
        # then: the read that meets the dead connection runs again on the primary: 200, the same list
        response, primary_queries, _ = get(APIClient(), url, alias="none")
        assert ids(response) == ids(served) and primary_queries == 1
        found = replicas.state(ALIAS)
        assert found.failures == 1 and found.down_until > time.monotonic()
        # and for a while the replica is not even tried (no connection to it)
        for path in (url, "/api/v1/recommendations/for-you/", "/api/v1/products/popular/"):
            assert get(APIClient(), path, alias="none")[0].status_code == 200
        assert connections[ALIAS].connection is None
        # after the retry window a new connect fails at once: down again, for twice as long
        time.sleep(0.6)
        response, primary_queries, _ = get(APIClient(), url, alias="none")
        assert response.status_code == 200 and primary_queries == 1
        assert replicas.state(ALIAS).failures == 2
        assert 0.6 < replicas.state(ALIAS).down_until - time.monotonic() <= 1.0
    finally:
        dbserver.start_replica(primary, replica, port=5433)
    # when it is back and the window has passed, it serves again
    time.sleep(1.1)
    caught_up()
    _, primary_queries, replica_queries = get(APIClient(), url)
    assert (primary_queries, replica_queries) == (0, 1) and replicas.state(ALIAS).failures == 0


# -- configuration (no replica server needed) ------------------------------------------------------


@pytest.mark.django_db
def test_without_replicas_serving_reads_use_the_primary_as_before(small_catalog):  # noqa: F811
    assert replicas.replica_aliases() == [] and replicas.choose() == "default"
    with CaptureQueriesContext(connections["default"]) as captured:
        listed = serving.similar_items(small_catalog["anchor"], 3)
    assert vector_queries(captured) == 1 and len(listed) == 3


def test_the_router_never_writes_or_migrates_a_replica(settings):
    configure(settings)
    router = replicas.ReplicaRouter()
    read_there = Interaction(pk=1)
    read_there._state.db = ALIAS
    assert router.db_for_write(Interaction, instance=read_there) == "default"
    assert router.db_for_write(Interaction) is None and router.db_for_read(Interaction) is None
    assert router.allow_migrate(ALIAS, "recommendations") is False and router.allow_migrate("default", "x") is None
    read_here = Interaction(pk=2)
    read_here._state.db = "default"
    assert router.allow_relation(read_there, read_here) is True


def test_a_replica_setting_without_its_database_or_router_fails_the_checks(settings):
    settings.VISREC = {**settings.VISREC, "READ_REPLICAS": ["elsewhere"]}
    settings.DATABASE_ROUTERS = []
    messages = [m.msg for m in run_checks() if m.id == "visrec.E020"]
    assert len(messages) == 2
    assert "'elsewhere', which is not in DATABASES" in messages[0] and "DATABASE_ROUTERS" in messages[1]
