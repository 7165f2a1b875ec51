"""A server process reuses its connections: requests through the real ASGI application (each
in a context of its own, as daphne runs them) share one Redis connection pool and the
database's connection pool instead of opening connections of their own. Counted, not timed."""

import asyncio
import json

import pytest
from django.conf import settings
from django.db import connection

from quantumtrades.asgi import application

from .e2e.servers import RedisServer


async def request(method, path, *, token=None, body=None):
    """One HTTP request through the ASGI application, in a task of its own; (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    delivered, sent = False, []

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": data, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the request runs

    async def send(message):
        sent.append(message)

    await asyncio.create_task(application(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]) or b"null")


def run_requests(count, *args, **kwargs):
    async def main():
        return [await request(*args, **kwargs) for _ in range(count)]

    return asyncio.run(main())


def every_request_thread_keeps_a_connection():
    """Requests at once, as many as the application has request threads, a few times: each
    thread serves some, and keeps the connection it took."""

    async def at_once():
        for _ in range(3):
            await asyncio.gather(*(request("GET", "/api/markets") for _ in range(settings.REQUEST_THREADS)))

    asyncio.run(at_once())


@pytest.fixture
def own_redis(tmp_path, settings):
    """The cache on a redis-server of this test's own, which counts the connections it accepts."""
    server = RedisServer(tmp_path).start()
    settings.CACHES = {
        "default": {"BACKEND": "quantumtrades.core.cache.ResilientRedisCache", "LOCATION": server.url, "OPTIONS": {}}
    }
    yield server
    server.stop()


def connections_accepted(server) -> int:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_throttled_requests_count_over_one_redis_connection_per_request_thread(own_redis, settings):
    before = connections_accepted(own_redis)

    answers = run_requests(20, "GET", "/api/markets")

    assert [status for status, _ in answers] == [200] * 20
    # Every request counted its throttle in Redis, over the connection its request thread
    # keeps for it (one more is this count's own), never a connection per request.
    assert 1 <= connections_accepted(own_redis) - before - 1 <= settings.REQUEST_THREADS
    import redis

    keys = redis.Redis.from_url(own_redis.url).keys("*throttle:anon:*")
    assert len(keys) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the connection pool is PostgreSQL's (psycopg)")
def test_requests_share_the_database_connection_pool(own_redis):
    from django.db import connections

    from tests.factories import fee_account, qtx_usd_market

    fee_account()
    qtx_usd_market()
    pool = connections["default"].pool
    every_request_thread_keeps_a_connection()
    opened, borrowed = pool.get_stats()["connections_num"], pool.get_stats().get("requests_num", 0)

    answers = run_requests(30, "GET", "/api/markets")

    assert [status for status, _ in answers] == [200] * 30
    stats = pool.get_stats()
    assert stats["connections_num"] == opened  # no connection opened for them
    # A request thread keeps the connection it borrowed (quantumtrades.core.handlers): at
    # most one borrowing per thread, where each request used to borrow one.
    assert stats.get("requests_num", 0) - borrowed <= settings.REQUEST_THREADS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the connection pool is PostgreSQL's (psycopg)")
def test_when_the_database_drops_every_connection_only_the_request_that_found_out_answers_503(own_redis):
    """Every request thread keeps a connection; the database then ends them all. The first
    request after that fails (503: it could not know) and tells the process; each other
    thread tests its kept connection before its next request instead of failing it too."""
    from tests.factories import fee_account, qtx_usd_market

    fee_account()
    qtx_usd_market()
    threads = settings.REQUEST_THREADS
    every_request_thread_keeps_a_connection()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= threads
    # One after another: an idle thread takes each in turn, so every thread serves some.
    statuses = [status for status, _ in run_requests(4 * threads, "GET", "/api/markets")]

    assert statuses.count(503) <= 1, statuses
    assert statuses[1:] == [200] * (len(statuses) - 1), statuses


def commands_that_waited() -> int:
    """Commands that queued behind another on their market, so far in this process: each
    group of N commands sharing a transaction had N - 1 of them (orders.engine.transactions)."""
    from quantumtrades.core import metrics

    samples = {sample.name: sample.value for sample in metrics.ENGINE_GROUP.collect()[0].samples}
    return int(samples["qt_engine_group_size_sum"] - samples["qt_engine_group_size_count"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the connection pool is PostgreSQL's (psycopg)")
def test_request_threads_waiting_for_their_market_keep_their_connections(own_redis):
    """Orders on one market from every request thread at once: a command that queues
    behind the one in the book is run in that one's transaction, and its request thread
    keeps its own connection while it waits, as it does between requests. It used to give
    it back to the pool and borrow one again for its next request."""
    from django.db import connections

    from tests.api_support import access_token, funded_trader
    from tests.factories import fee_account, qtx_usd_market

    fee_account()
    qtx_usd_market()
    threads = settings.REQUEST_THREADS
    tokens = [access_token(funded_trader(f"trader{number}")) for number in range(threads)]
    pool = connections["default"].pool
    every_request_thread_keeps_a_connection()
    borrowed, waited = pool.get_stats().get("requests_num", 0), commands_that_waited()
    bid = {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"}

    async def at_once():
        answers = []
        # Until more commands have waited than there are threads (or 40 rounds).
        for _ in range(40):
            answers += await asyncio.gather(
                *(request("POST", "/api/orders", token=token, body=bid) for token in tokens)
            )
            if commands_that_waited() - waited > threads:
                break
        return answers

    answers = asyncio.run(at_once())
    every_request_thread_keeps_a_connection()  # a thread that gave its connection back borrows one

    assert {status for status, _ in answers} == {201}
    assert commands_that_waited() - waited > threads
    assert pool.get_stats().get("requests_num", 0) - borrowed <= threads
