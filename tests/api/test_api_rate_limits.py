"""Rate-limit headers (docs/API.md, "Rate limits"): every answer a throttle counted says the
tightest limit, what is left of it and when it starts again; a 429 says when to retry too.
Browser integrators may read them (CORS), and the API still answers with Redis stopped."""

import copy
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from quantumtrades.core.cache import health
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, client_for
from tests.e2e.servers import RedisServer

pytestmark = pytest.mark.django_db

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
BID = {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"}


def limits(response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in HEADERS)


def rates(settings, **changed):
    throttles = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **changed}
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": throttles})


def test_reads_and_orders_say_their_tightest_limit_and_it_moves(alice, settings):
    client = client_for(alice)
    with rates(settings, user="100/minute", orders="10/minute"):
        reads = [client.get("/api/user/balances") for _ in range(2)]
        placed = [client.post("/api/orders", BID, format="json") for _ in range(2)]
        anonymous = APIClient().get("/api/markets")

    assert [limits(read)[:2] for read in reads] == [(100, 99), (100, 98)]  # "user" is the only limit of a read
    assert [limits(order)[:2] for order in placed] == [(10, 9), (10, 8)]  # "orders" is tighter than "user"
    assert all(1 <= limits(answer)[2] <= 60 for answer in reads + placed)
    assert limits(anonymous)[0] == int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["anon"].split("/")[0])


def test_remaining_reaches_zero_then_429_says_when_to_retry(alice, settings):
    client = client_for(alice)
    with rates(settings, user="3/minute"):
        answers = [client.get("/api/orders") for _ in range(4)]

    assert [answer.status_code for answer in answers[:3]] == [200, 200, 200]
    assert [limits(answer)[1] for answer in answers] == [2, 1, 0, 0]
    throttled = assert_error(answers[3], 429, code="THROTTLED")
    assert throttled["message"].startswith("Too many requests")
    assert int(answers[3].headers["Retry-After"]) == limits(answers[3])[2]


def test_answers_no_throttle_counted_say_nothing(alice):
    # Refused before it was counted (no credentials), and a path the API does not have.
    for response in (APIClient().get("/api/orders"), APIClient().get("/api/nowhere")):
        assert response.status_code in (401, 404)
        assert not any(name in response.headers for name in HEADERS), response.status_code


def test_browsers_may_read_the_headers(alice, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://desk.example"]
    client = client_for(alice)

    response = client.get("/api/user/balances", HTTP_ORIGIN="https://desk.example")

    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed >= {name.lower() for name in (*HEADERS, "Retry-After")}


@pytest.fixture
def private_redis(settings):
    """The cache on a redis-server of this test's own, which the test stops."""
    workdir = Path(tempfile.mkdtemp(prefix="qt-ratelimit-redis-"))
    server = RedisServer(workdir).start()
    caches = copy.deepcopy(settings.CACHES)
    caches["default"] = {
        "BACKEND": "quantumtrades.core.cache.ResilientRedisCache",
        "LOCATION": server.url,
        "KEY_PREFIX": "rate-limits",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.5},
    }
    settings.CACHES = caches
    yield server
    server.stop()
    # This process believes Redis is down until its next try: the other tests' Redis is up.
    health.down_since, health.retry_at = None, 0.0
    for child in workdir.iterdir():
        child.unlink()
    workdir.rmdir()


def test_with_redis_stopped_the_api_answers_counting_in_this_process(alice, private_redis, settings):
    client = client_for(alice)
    with rates(settings, user="100/minute", orders="10/minute"):
        before = client.post("/api/orders", BID, format="json")
        private_redis.stop()
        during = [client.post("/api/orders", BID, format="json"), client.get("/api/orders")]

    assert limits(before)[:2] == (10, 9)
    assert [answer.status_code for answer in during] == [201, 200]
    # Counted in this process's memory meanwhile: from zero again, never a 500 (docs/API.md).
    assert limits(during[0])[:2] == (10, 9)
    assert limits(during[1])[:2] == (100, 98)


def test_after_redis_restarts_the_next_request_counts_in_redis_again(alice, private_redis, settings):
    """A request thread keeps its own connection to Redis for the counts
    (quantumtrades/core/cache.py): a restart closes it, and the next request opens a new
    one and counts in the restarted Redis, not in this process's memory."""
    client = client_for(alice)
    with rates(settings, user="100/minute"):
        client.get("/api/orders")
        private_redis.stop()
        private_redis.start()  # the same port, and empty: nothing is saved
        after = client.get("/api/orders")

    assert after.status_code == 200
    # Counted afresh by the restarted Redis, which holds the count now.
    assert limits(after)[:2] == (100, 99)
    assert health.down_since is None
    import redis

    assert len(redis.Redis.from_url(private_redis.url).keys("rate-limits:*throttle:user:*")) == 1
