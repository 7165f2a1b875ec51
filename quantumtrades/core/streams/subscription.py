"""The hub's own subscription to the stream group on Redis pub/sub (`marketdata.streams`).

Publishing stays on the channel layer (`group_send` to the group "streams"); only the one
subscription per process is held here, on the same Redis channel and read with the
layer's own serialisation.

Why not the layer's `receive()`: channels_redis keeps its subscriptions in a background
task that swallows connection errors (a traceback in the log every second while Redis
is down), subscribes again by itself once Redis is back, and never tells its caller.
Whatever was published between Redis's return and that new SUBSCRIBE is lost without a
sign, and `receive()` just goes on waiting: the hub could only guess from pings with
timeouts of seconds, and its books stayed a change behind the database until an audit
noticed.

Here the hub learns the two facts it needs, when they happen:
- subscribed: Redis confirmed the SUBSCRIBE, the first time and after every reconnect.
  From that moment every change published reaches this process, so reloading the books
  from the database then leaves no gap (`Hub._layer_back`).
- lost: a read or a ping failed, Redis no longer counts this subscription (a ping
  published to our own channel reached nobody), or a ping did not come back in time.
  The connection is dropped and made again, with a short backoff, quietly: the hub logs
  one line when the layer goes and one when it is back.
"""

import asyncio
import contextlib
import logging
import uuid

from channels_redis.utils import create_pool
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

# Backoff between two attempts to subscribe while Redis is away: short, because a stream
# should heal within a second or two of Redis's return, and a refused connection is cheap.
RETRY_MIN = 0.2
RETRY_MAX = 1.0
# How long get_message waits for something before the loop looks at its ping again.
READ_SLICE = 0.25


class SubscriptionLost(Exception):
    pass


def redis_target(layer, group: str) -> tuple[dict, str]:
    """(connection settings, Redis channel) that `layer.group_send(group, ...)` publishes to.

    Asked of channels_redis's per-loop layer (4.x: `_get_group_channel_name`, `_get_shard`)
    rather than rebuilt here, so that prefix, naming and sharding stay the publisher's.
    """
    loop_layer = layer._get_layer()
    channel = loop_layer._get_group_channel_name(group)
    return dict(loop_layer._get_shard(channel).host), channel


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Subscription:
    """One process's subscription to a group of a `RedisPubSubChannelLayer`.

    `on_message(message)` gets each deserialised group message, `on_subscribed()` is called
    each time Redis confirms the subscription, `on_lost(exc)` each time it is lost. All three
    run in the loop of `run()`, which runs until cancelled.
    """

    def __init__(self, layer, group, *, on_message, on_subscribed, on_lost, ping_interval, ping_timeout):
        self.layer = layer
        self.host, self.channel = redis_target(layer, group)
        self.ping_channel = f"{self.channel}.hub.{uuid.uuid4().hex}"
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_lost = on_lost
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.pubsub = None  # the live PubSub, while there is one (tests reach it)
        self.delay = RETRY_MIN
        self.stopping = False

    def stop(self):
        """Leave `run()` at the end of the current read (within READ_SLICE). Preferred to
        cancelling it: redis-py can hang closing a connection cancelled in mid-read."""
        self.stopping = True

    def _client(self):
        host = dict(self.host)
        # No retries inside redis-py: a failure must reach this loop, which subscribes
        # again and has the hub resync; a silent reconnect would hide a gap.
        host.setdefault("retry", Retry(NoBackoff(), 0))
        host.setdefault("socket_connect_timeout", self.ping_timeout)
        host.setdefault("socket_timeout", self.ping_timeout)
        return aioredis.Redis(connection_pool=create_pool(host))

    async def run(self):
        while not self.stopping:
            client = pubsub = None
            try:
                client = self._client()
                pubsub = client.pubsub()
                self.pubsub = pubsub
                await asyncio.wait_for(pubsub.subscribe(self.channel, self.ping_channel), self.ping_timeout)
                await self._receive(client, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.on_lost(exc)
            finally:
                self.pubsub = None
                for closing in (pubsub, client):
                    if closing is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(closing.aclose(), 1.0)
            if self.stopping:
                return
            await asyncio.sleep(self.delay)
            self.delay = min(self.delay * 2, RETRY_MAX)

    async def _receive(self, client, pubsub):
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_interval
        pong_due = None
        while not self.stopping:
            # Bounded by its own timeout (and the connection's socket_timeout), not by
            # asyncio.wait_for, which would cancel it in mid-read: see stop().
            message = await pubsub.get_message(timeout=READ_SLICE)
            if message is not None:
                kind, channel = message["type"], _text(message["channel"])
                if kind == "message" and channel == self.channel:
                    self.on_message(self.layer.deserialize(message["data"]))
                elif kind == "message" and channel == self.ping_channel:
                    pong_due = None
                elif kind == "subscribe" and channel == self.channel:
                    self.delay = RETRY_MIN
                    self.on_subscribed()
            now = loop.time()
            if pong_due is not None and now > pong_due:
                raise SubscriptionLost("no answer to the hub's ping")
            if now >= next_ping:
                next_ping = now + self.ping_interval
                receivers = await asyncio.wait_for(client.publish(self.ping_channel, b"ping"), self.ping_timeout)
                if not receivers:
                    raise SubscriptionLost("Redis no longer has this process's subscription")
                if pong_due is None:
                    pong_due = now + self.ping_timeout
