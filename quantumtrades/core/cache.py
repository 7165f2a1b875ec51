"""The shared cache: Redis through django-redis, and this process's memory while Redis is down.

The cache holds only counters that guard the doors (API throttles, login lockout); losing
them for a while must not close the doors. So Redis is an accelerator here, never a single
point of failure (README, "When Redis or PostgreSQL goes away"):

- django-redis keeps one connection pool per process, shared by every request. Django's
  own RedisCache is built per request context under ASGI and opened a new connection (and
  read redis-py's package metadata) on every request: 13 % of a daphne process's time in
  the order benchmark (docs/BENCHMARKS.md, "REST API").
- When Redis does not answer, `ResilientRedisCache` says so once in the log and serves
  every call from a local-memory cache of this process until Redis answers again (tried
  again at most every `RETRY_SECONDS`), then says once that it is back. Meanwhile throttles
  and lockouts count per process: with P processes a client may get up to P times its
  limit, which is the documented, safe degradation (never a 500, never an open door for
  failed logins, since each process still locks on its own count).
"""

import hashlib
import logging
import os
import threading
import time

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# How long to serve from local memory after Redis failed, before trying Redis again.
RETRY_SECONDS = 2.0
REDIS_DOWN = (ConnectionInterrupted, RedisConnectionError, RedisTimeoutError, OSError)


class _Health:
    """Whether this process believes Redis is up; shared by every cache instance."""

    def __init__(self):
        self.lock = threading.Lock()
        self.down_since = None
        self.retry_at = 0.0

    def usable(self) -> bool:
        return self.down_since is None or time.monotonic() >= self.retry_at

    def failed(self, exc) -> None:
        with self.lock:
            self.retry_at = time.monotonic() + RETRY_SECONDS
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.warning("Redis cache unreachable (%s): counting in this process's memory until it answers", exc)

    def answered(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                log.warning("Redis cache is back after %.1f s", time.monotonic() - self.down_since)
                self.down_since = None


health = _Health()
_clients: dict = {}


_default = (None, None)  # (caches.settings it was built for, the backend)


def default_cache():
    """The default cache, built once per process and configuration, for code that asks for
    it on every request (the throttles, the read-your-writes check).

    `caches["default"]` builds a backend per request context, since Django makes no promise
    that a backend is safe across threads. This module's is (one client per process, its
    fallback storage shared by name), as is LocMemCache, and building it was 2 % of an
    order's time. A test that changes CACHES gets a new `caches.settings`, and so a new
    backend here."""
    global _default
    config, backend = _default
    if config is not caches.settings:
        config = caches.settings
        backend = caches.create_connection("default")
        _default = (config, backend)
    return backend


def _resilient(name):
    def method(self, *args, **kwargs):
        if health.usable():
            try:
                result = getattr(RedisCache, name)(self, *args, **kwargs)
            except REDIS_DOWN as exc:
                health.failed(exc)
            else:
                health.answered()
                return result
        return getattr(self.local, name)(*args, **kwargs)

    method.__name__ = name
    return method


class ResilientRedisCache(RedisCache):
    """django-redis, falling back to this process's memory while Redis is down."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._shared_key = (server, repr(sorted(params.get("OPTIONS", {}).items())))
        # LocMemCache instances with one name share their storage, so every request's
        # instance (Django builds one per request context) sees the same fallback counts.
        self.local = LocMemCache(f"fallback:{server}", {"TIMEOUT": params.get("TIMEOUT", 300)})

    @property
    def client(self):
        """One django-redis client per process: Django builds a cache backend per request
        context, and each would build its own client (and redis.Redis object) otherwise."""
        client = _clients.get(self._shared_key)
        if client is None:
            client = _clients.setdefault(self._shared_key, self._client_cls(self._server, self._params, self))
        return client

    # Every call the project (and Django) makes of a cache.
    add = _resilient("add")
    get = _resilient("get")
    set = _resilient("set")
    touch = _resilient("touch")
    delete = _resilient("delete")
    get_many = _resilient("get_many")
    set_many = _resilient("set_many")
    delete_many = _resilient("delete_many")
    has_key = _resilient("has_key")
    incr = _resilient("incr")
    decr = _resilient("decr")
    clear = _resilient("clear")

    def count(self, counters: list[tuple[str, int]]) -> list[int]:
        """Add one to each counter `(key, timeout)`; a counter expires `timeout` seconds
        after its first count. Answer the new counts, all in one round trip (one script
        call, where add and incr would cost two or three per counter)."""
        if health.usable():
            try:
                keys = [self.client.make_key(key) for key, _ in counters]
                values = self._count_on_redis(keys, [timeout for _, timeout in counters])
            except REDIS_DOWN as exc:
                health.failed(exc)
            else:
                health.answered()
                return [int(value) for value in values]
        return count_in(self.local, counters)

    def _count_on_redis(self, keys: list, timeouts: list) -> list:
        """The count script on this thread's own connection to Redis.

        Every API request counts, and through redis-py's client and pool the one script
        call cost 7 % of a server process's time under orders (docs/BENCHMARKS.md, "The
        throttle's round trip"): the pool's lock and its check that a lent connection has
        nothing left to read (a poll per call), the retry wrapper, the deprecation and
        metrics hooks. A thread here keeps one connection of the pool's settings for
        itself and speaks to it directly: a request thread counts one request at a time,
        and reads each answer whole, so nothing is ever left on it to check.
        """
        held = _held_connections.__dict__
        connection = held.get(self._shared_key)
        if connection is None or connection.pid != os.getpid():
            connection = held[self._shared_key] = self.client.get_client(write=True).connection_pool.make_connection()
        try:
            return _evaluate(connection, keys, timeouts)
        except (RedisConnectionError, OSError):
            # A Redis that restarted since this thread's last count closed its connection:
            # one try on a new one before calling it down (not after a timeout: a Redis
            # that does not answer would cost the request its timeout twice).
            connection.disconnect()
            return _evaluate(connection, keys, timeouts)


# INCR each key; a key's first count starts its window.
COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[i]) end
end
return counts
"""
COUNT_SHA = hashlib.sha1(COUNT_SCRIPT.encode()).hexdigest()
# Each thread's own connection to Redis for the counts, per cache configuration.
_held_connections = threading.local()


def _evaluate(connection, keys: list, timeouts: list) -> list:
    try:
        connection.send_command("EVALSHA", COUNT_SHA, len(keys), *keys, *timeouts)
        return connection.read_response()
    except NoScriptError:  # a Redis that has not seen the script yet (or was flushed)
        connection.send_command("EVAL", COUNT_SCRIPT, len(keys), *keys, *timeouts)
        return connection.read_response()


def count_in(cache, counters: list[tuple[str, int]]) -> list[int]:
    """`ResilientRedisCache.count` for any Django cache (local memory in development)."""
    counts = []
    for key, timeout in counters:
        if cache.add(key, 1, timeout=timeout):
            counts.append(1)
            continue
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=timeout)
            counts.append(1)
    return counts
