"""End-to-end fixtures: daphne subprocesses over the test database, a websocket client,
the REST API. Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL); skipped otherwise."""

import asyncio
import json
import os
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import connection

from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
)

from .servers import Servers

# Every end-to-end module's marks: real servers need PostgreSQL and Redis, and are bounded.
NEEDS_SERVERS = [
    pytest.mark.postgres,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="end-to-end tests need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)",
    ),
]


def server_env() -> dict:
    """The environment of a daphne that shares this test's database and streams."""
    database = connection.settings_dict
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    url = f"postgresql://{database['USER']}{password}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantumtrades.settings",
        "DATABASE_URL": url,
        "CHANNEL_LAYER_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    env.pop("QT_FAIL_ON_SKIP", None)
    return env


@pytest.fixture
def servers(transactional_db, market):
    """Start daphne (and redis-server) processes; every one is stopped by PID at the end."""
    started = Servers(server_env())
    yield started
    started.stop()


def api(method, url, *, token=None, body=None, headers=None, timeout=10):
    """(status, JSON) of one REST call."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def api_async(*args, **kwargs):
    return await asyncio.to_thread(api, *args, **kwargs)
