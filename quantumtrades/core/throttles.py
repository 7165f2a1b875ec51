"""Rate limits: the throttles every API door counts against, and the headers that say where
a client stands (docs/API.md, "Rate limits").

One atomic counter per scope, client and window in the shared cache (Redis when set, this
process's memory while it is down: quantumtrades/core/cache.py). REST counts through DRF's
throttle hook; `/ws` and FIX count the same counters through `ApiRateThrottle` directly, so
a client has one budget whichever door it uses.
"""

import itertools
import math
import time
from dataclasses import dataclass

from django.utils.deprecation import MiddlewareMixin
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from quantumtrades.core.cache import ResilientRedisCache, count_in, default_cache


@dataclass(frozen=True)
class RateLimit:
    """One limit as a client sees it: how many requests the window takes, how many are
    left, and the seconds until it starts again."""

    limit: int
    remaining: int
    reset: float

    def payload(self) -> dict:
        """As /ws answers carry it: whole numbers, the reset in seconds (at least 1)."""
        return {"limit": self.limit, "remaining": self.remaining, "reset": max(1, math.ceil(self.reset))}

    def headers(self) -> dict:
        return {f"X-RateLimit-{name.capitalize()}": str(value) for name, value in self.payload().items()}


def window_counts(counters: list[tuple[str, int]]) -> list[int]:
    """Add one to each counter `(key, timeout)` in the default cache (it expires `timeout`
    seconds after it was created); answer the new counts. One round trip on Redis, counted
    in this process while Redis is down (quantumtrades/core/cache.py)."""
    backend = default_cache()
    if isinstance(backend, ResilientRedisCache):
        return backend.count(counters)
    return count_in(backend, counters)


class WindowRateThrottle(BaseThrottle):
    """At most N requests per fixed window for each of a request's counters.

    One atomic counter per scope, client and window (INCR in Redis), so the cost stays
    constant however high the rate is set, and all server processes share the count. All of
    a request's counters go to the cache in one round trip. The rate of each scope comes
    from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], read on every request.

    The counts answered are the rate-limit headers' figures, at no further cost: the
    tightest limit is kept as `rate_limit` (a RateLimit), and on the request for its answer
    (`RateLimitHeaders`).
    """

    rate_limit = None

    def counters(self, request, view) -> list[tuple]:
        """(scope, client) pairs that this request counts against, or (scope, client, n)
        for one that counts n."""
        raise NotImplementedError

    @staticmethod
    def rate(scope):
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        if not rate:
            return None
        count, period = rate.split("/")
        return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]

    def allow_request(self, request, view):
        now = time.time()
        windows = []
        for scope, ident, *times in self.counters(request, view):
            rate = self.rate(scope)
            if rate is None or ident is None:
                continue
            limit, period = rate
            window = int(now // period)
            key = f"throttle:{scope}:{ident}:{window}"
            windows.append((key, period + 1, limit, (window + 1) * period - now, times[0] if times else 1))
        if not windows:
            return True
        # A counter that counts several (a batch of N orders) goes N times in the one round trip.
        counts = window_counts([(key, timeout) for key, timeout, _, _, times in windows for _ in range(times)])
        ends = list(itertools.accumulate(times for *_, times in windows))
        limits = [
            RateLimit(limit, max(0, limit - counts[end - 1]), wait)
            for (_, _, limit, wait, _), end in zip(windows, ends, strict=True)
        ]
        # The limit that holds the client back the most: the fewest requests left, then the
        # latest reset (the one a 429's Retry-After names).
        self.rate_limit = min(limits, key=lambda limit: (limit.remaining, -limit.reset))
        http_request = getattr(request, "_request", None)
        if http_request is not None:  # a DRF request: its answer carries the headers (RateLimitHeaders)
            http_request.rate_limit = self.rate_limit
        waits = [limit.reset for limit, end in zip(limits, ends, strict=True) if counts[end - 1] > limit.limit]
        if waits:
            self.retry_after = max(waits)
            return False
        return True

    def wait(self):
        return getattr(self, "retry_after", None)


class ApiRateThrottle(WindowRateThrottle):
    """Every API request: per user with a token (scope "user"), per API key with a key (at the
    same rates), per client address without either ("anon"). Views with `order_commands = True`
    also count what changes orders (place, amend, cancel) per user against "orders", a view's
    `orders_in(request)` saying how many orders a request changes (a batch's)."""

    def counters(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return [("anon", self.get_ident(request))]
        # A request made with an API key counts against the key, at the user's rates.
        ident = getattr(request.auth, "throttle_ident", None) or user.pk
        found = [("user", ident)]
        if getattr(view, "order_commands", False) and request.method not in ("GET", "HEAD", "OPTIONS"):
            # A batch of N orders counts N (`orders_in`).
            orders_in = getattr(view, "orders_in", None)
            found.append(("orders", ident, orders_in(request) if orders_in is not None else 1))
        return found


class AuthRateThrottle(WindowRateThrottle):
    """Register, login, refresh and logout, per client address."""

    def counters(self, request, view):
        return [("auth", self.get_ident(request))]


class RateLimitHeaders(MiddlewareMixin):
    """Every API answer whose request a throttle counted says where its client stands:
    `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds), for the
    tightest limit that applies, from the counts the throttle already had (no cache round
    trip of its own). Answers no throttle counted say nothing: the schema and docs pages,
    an unknown path, a request refused before it was counted (401, 403)."""

    def process_response(self, request, response):
        rate_limit = getattr(request, "rate_limit", None)
        if rate_limit is not None:
            for name, value in rate_limit.headers().items():
                response[name] = value
        return response
