"""The project's Redis cache backend: Django's, with one reused client per connection pool."""

from __future__ import annotations

import os
import threading

import pytest

from visrec_shop.cache import RedisCache

REDIS_URL = os.environ.get("VISREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15").rsplit("/", 1)[0] + "/14"


@pytest.fixture
def redis_cache():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("VISREC_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required (VISREC_REQUIRE_REDIS=1) but not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    cache = RedisCache(REDIS_URL, {"KEY_PREFIX": "visrec-cache-test"})
    cache.clear()
    yield cache
    cache.clear()


def test_reads_and_writes_like_djangos_backend_and_reuses_one_client(redis_cache):
    redis_cache.set("a", {"list": [1, 2]}, 60)
    redis_cache.set_many({"b": 2, "c": "three"}, 60)
    assert redis_cache.get("a") == {"list": [1, 2]}
    assert redis_cache.get_many(["a", "b", "c", "missing"]) == {"a": {"list": [1, 2]}, "b": 2, "c": "three"}
    assert redis_cache.incr("b") == 3
    redis_cache.delete("a")
    assert redis_cache.get("a", "gone") == "gone"
    client = redis_cache._cache.get_client(write=True)
    assert redis_cache._cache.get_client(write=False) is client  # one server: one pool, one client


def test_the_shared_client_serves_threads_at_once(redis_cache):
    errors = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                redis_cache.set(f"t{n}-{i}", i, 60)
                assert redis_cache.get(f"t{n}-{i}") == i
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_hung_redis_costs_one_short_timeout_then_calls_fail_at_once(hung_port):
    import time

    import redis

    # given: no timeouts configured, a Redis host that accepts and never answers
    cache = RedisCache(f"redis://127.0.0.1:{hung_port}/0", {})
    # when / then: the first call waits for the default socket timeout (a fraction of a second) ...
    start = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        cache.get("a")
    assert time.monotonic() - start < 1.0
    # ... and the next ones, in the retry window, fail without touching the network
    start = time.monotonic()
    for call in (lambda: cache.get("a"), lambda: cache.set("a", 1, 60), lambda: cache.get_many(["a", "b"])):
        with pytest.raises(redis.ConnectionError):
            call()
    assert time.monotonic() - start < 0.05
