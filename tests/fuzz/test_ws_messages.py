"""Generated frames on /ws: every answer is a message the protocol knows or an error with a
code and a message, the socket stays open, nothing is logged at ERROR or with a traceback,
and a refused command writes nothing.

Through the whole ASGI application (Origin check, session, routing to the trading
consumer) with channels' WebsocketCommunicator, on three sockets: an anonymous one, one
authenticated with alice's access token, one with bob's API key (read and trade). The frames
are drawn over the protocol (docs/API.md, section 7): every known `type` (subscribe,
unsubscribe, ping, auth, order.place, order.amend, order.cancel, order.cancel_all,
order.cancel_after, order.batch, order.cancel_batch) with its fields' real names and plausible or junk values (decimals with exponents, NaN, too many
places; ids past every column; text with NUL or lone surrogates), unknown types, JSON that is
no object, text that is no JSON, frames past the 4 KiB limit, binary frames. The socket's
message rate and the API's throttles are raised, so that the frames meet the parsers and the
engine rather than the rate limit (tests/e2e/test_socket_floods.py covers the limit).

Frames are sent one at a time, each answered before the next (the answer to a frame is the
first pong, subscribed, unsubscribed, authenticated, order.result, order.cancel_after,
order.batch_result or error after it; stream messages in between are checked too).

Examples (hypothesis, derandomized, no example database): FRAMES (300) frames, and HANDSHAKES
(60) handshakes to junk socket paths: about 7 s on SQLite or on PostgreSQL with Redis on a
two-core machine. The counts are printed (pytest -s) and asserted.
"""

import asyncio
import json
import threading
from collections import Counter
from decimal import Decimal

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import given
from hypothesis import strategies as st

from accounts.keys import api_key_create
from accounts.tokens import api_login_start
from marketdata import consumers as marketdata_consumers
from marketdata import streams
from marketdata.models import Interval
from orders.consumers import ORDER_COMMANDS
from orders.models import OrderType, TimeInForce
from orders.services import order_place
from quantumtrades.asgi import application
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
)

from .fuzz_support import (
    DECIMAL_STRINGS,
    Fingerprints,
    LogWatch,
    decimal_string_json,
    examples,
    fuzz_settings,
    junk_json,
    malformed_json,
    number_json,
    object_json,
    often,
    string_json,
    text,
    well_formed_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FRAMES = 300
# What the server sends on /ws (docs/API.md, "Server messages").
ANSWERS = {
    "pong", "subscribed", "unsubscribed", "authenticated", "order.result", "order.cancel_after", "order.batch_result",
    "error",
}  # fmt: skip
STREAM_MESSAGES = {
    "book_snapshot", "book_update", "trade", "ticker", "candle", "order", "fill", "balance", "heartbeat", "market_status",
}  # fmt: skip
SOCKETS = ("anonymous", "alice's token", "bob's key")


class FastBucket(marketdata_consumers.TokenBucket):
    """The socket's message rate, raised: the fuzzer meets the parsers, not the limit."""

    def __init__(self):
        super().__init__(rate=100_000.0, burst=100_000)


class Loop:
    """An event loop in a thread of its own, where the sockets live from example to example:
    hypothesis calls in from the test's thread and waits for each frame's answer."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-ws-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout=30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self):
        try:
            self.run(streams.stop_hub())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


async def open_socket(credentials=None):
    communicator = WebsocketCommunicator(application, "/ws")
    communicator.scope["client"] = ("127.0.0.1", 50000)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    if credentials:
        await communicator.send_to(text_data=json.dumps({"type": "auth", **credentials}))
        answer = json.loads(await communicator.receive_from(5))
        assert answer["type"] == "authenticated", answer
    return communicator


async def exchange(communicator, frame) -> list[dict]:
    """Send one frame; every message up to and including its answer."""
    # As daphne hands a frame over (the communicator's send_to refuses an empty one).
    kind = "bytes" if isinstance(frame, bytes) else "text"
    await communicator.send_input({"type": "websocket.receive", kind: frame})
    messages = []
    while True:
        output = await communicator.receive_output(5)
        # A socket the server closed gives "websocket.close" here.
        assert output["type"] == "websocket.send", (output, messages)
        assert output.get("text") is not None, output
        message = json.loads(output["text"])
        messages.append(message)
        if message.get("type") in ANSWERS:
            return messages


def check_message(message, frame_text):
    assert isinstance(message, dict) and message.get("type") in ANSWERS | STREAM_MESSAGES, (frame_text, message)
    if message["type"] == "error":
        assert isinstance(message.get("code"), str) and message["code"], (frame_text, message)
        assert isinstance(message.get("message"), str) and message["message"].strip(), (frame_text, message)
        assert message["code"] != "INTERNAL_ERROR", (frame_text, message)


def frames(plausible: dict) -> st.SearchStrategy:
    """A frame as a client may send one: text (JSON or not) or bytes."""
    fields = {
        "ping": ([], ["id"]),
        "subscribe": (["channels"], ["symbols", "interval"]),
        "unsubscribe": (["channels"], ["symbols", "interval"]),
        "auth": ([], ["token", "api_key", "cancel_on_disconnect"]),
        "order.place": (["req_id", "symbol", "side", "quantity"], ["order_type", "price", "stop_price",
                        "time_in_force", "post_only", "stp", "client_order_id", "type"]),
        "order.amend": (["req_id", "id"], ["price", "quantity", "stop_price"]),
        "order.cancel": (["req_id", "id"], []),
        "order.cancel_all": (["req_id"], ["symbol"]),
        "order.cancel_after": (["req_id", "seconds"], []),
        "order.batch": (["req_id", "orders"], []),
        "order.cancel_batch": (["req_id", "ids"], []),
    }  # fmt: skip
    per_type = []
    for kind, (required, optional) in fields.items():
        values = {**plausible, "type": st.just(string_json(kind))}
        if "type" in optional:  # order.place: "type" names the message; a second one is refused
            values["type"] = st.sampled_from([string_json(kind), string_json("limit")])
        names = ["type", *required, *optional]
        per_type += [
            well_formed_json(["type", *required], [name for name in optional if name != "type"], values),
            well_formed_json(["type", *required], [name for name in optional if name != "type"], values),
            object_json(names, values),
        ]
    return often(
        st.one_of(*per_type),
        [
            # A type no one knows, or no type at all.
            st.tuples(
                st.one_of(text, st.sampled_from(["PING", "order", "order.place ", "subscribe\x00", "error"])), junk_json
            ).map(lambda pair: json.dumps({"type": pair[0]})[:-1] + ', "x": ' + pair[1] + "}"),
            st.one_of(number_json, st.sampled_from(["null", "[]", '"ping"', "true", '[{"type": "ping"}]'])),
            junk_json,
            malformed_json,
            # Past the frame limit, well formed otherwise.
            st.integers(4_100, 20_000).map(lambda size: json.dumps({"type": "ping", "id": "z" * size})),
            st.binary(max_size=64),
        ],
        times=7,
    )


@pytest.fixture
def world(market, alice, bob, settings, monkeypatch):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {scope: "1000000/minute" for scope in ("anon", "user", "orders", "auth")},
    }
    monkeypatch.setattr(marketdata_consumers, "TokenBucket", FastBucket)
    orders = [
        order_place(user=alice, market=market, side="buy", price=Decimal("9.50"), quantity=Decimal("1")),
        order_place(user=bob, market=market, side="sell", price=Decimal("10.50"), quantity=Decimal("1")),
        order_place(
            user=alice, market=market, side="sell", type="stop_limit", stop_price=Decimal("8"), price=Decimal("7.99"),
            quantity=Decimal("1"),
        ),
    ]  # fmt: skip
    key, secret = api_key_create(user=bob, name="bob's bot", scopes=["read", "trade"])
    reader, reader_secret = api_key_create(user=alice, name="alice's reader", scopes=["read"])
    token = str(api_login_start(user=alice).access_token)
    ids = [result.order.pk for result in orders]
    plausible = {
        "req_id": often(
            st.sampled_from(["r1", "r2"]).map(json.dumps),
            [st.sampled_from(["", "x" * 65, "a\x00b", 7, None]).map(json.dumps)],
        ),
        "symbol": often(
            st.just('"QTX-USD"'), [st.sampled_from(["BTC-USD", "qtx-usd", "QTX-USD\x00", 1]).map(json.dumps)]
        ),
        "symbols": often(
            st.just('["QTX-USD"]'),
            [st.lists(st.sampled_from(["QTX-USD", "BTC-USD", "", "Q" * 25]), max_size=3).map(json.dumps)],
        ),
        "channels": often(
            st.lists(st.sampled_from(marketdata_consumers.CHANNELS), min_size=1, max_size=3).map(json.dumps),
            [
                st.lists(st.sampled_from([*marketdata_consumers.CHANNELS, "BOOK", "private"]), max_size=3).map(
                    json.dumps
                )
            ],
        ),
        "interval": st.sampled_from([*Interval.values, "2m", "", None]).map(json.dumps),
        "side": often(
            st.sampled_from(["buy", "sell"]).map(json.dumps), [st.sampled_from(["BUY", "hold"]).map(json.dumps)]
        ),
        "order_type": often(
            st.sampled_from(OrderType.values).map(json.dumps), [st.sampled_from(["iceberg", "LIMIT"]).map(json.dumps)]
        ),
        "time_in_force": st.sampled_from([*TimeInForce.values, "DAY", None]).map(json.dumps),
        "post_only": st.sampled_from(["true", "false", '"true"', "1"]),
        "stp": st.sampled_from(['"expire_taker"', '"expire_maker"', '"expire_both"', '"never"', "null"]),
        "client_order_id": st.sampled_from(["ws-1", "ws-2", "", "c" * 65]).map(json.dumps),
        "price": often(st.sampled_from(["10.00", "9.99", "10.51", "9.00"]).map(json.dumps), [decimal_string_json]),
        "stop_price": often(st.sampled_from(["8.00", "12.00"]).map(json.dumps), [decimal_string_json], times=2),
        "quantity": often(st.sampled_from(DECIMAL_STRINGS[:3]), [decimal_string_json]),
        "id": st.sampled_from([*ids, 0, -1, 2**63, 2**63 - 1, 10**40, "1", 1.5, True]).map(json.dumps),
        "token": st.sampled_from([token, token + "x", "a.b.c", "", "x" * 3000]).map(json.dumps),
        "api_key": st.sampled_from([secret, reader_secret, secret[:-1], f"{key.prefix}.", ".", ""]).map(json.dumps),
        "cancel_on_disconnect": st.sampled_from(["true", "false", '"true"', "1", "null"]),
        "seconds": often(
            st.sampled_from([0, 5, 60, 600]).map(json.dumps),
            [st.sampled_from(["4", "601", "-1", "1e2", "2.5", "10.0", '"30"', "true", "null", str(10**40)])],
        ),
    }
    # A batch's orders: plausible ones, refusals of each kind, another market; and whole batches refused.
    orders = [
        '{"symbol": "QTX-USD", "side": "buy", "price": "9.00", "quantity": "1"}',
        '{"symbol": "QTX-USD", "side": "sell", "order_type": "market", "quantity": "1"}',
        '{"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "9.00", "quantity": "1"}',
        '{"symbol": "QTX-USD", "side": "buy", "price": "1e3", "quantity": NaN}',
        '{"symbol": "BTC-USD", "side": "buy", "price": "9.00", "quantity": "1"}',
        "7",
        "null",
    ]
    plausible["orders"] = often(
        st.lists(st.sampled_from(orders), min_size=1, max_size=4).map(lambda items: f"[{', '.join(items)}]"),
        [st.sampled_from(["[]", '"x"', "null", f"[{', '.join(orders[:1] * 21)}]"])],
    )
    plausible["ids"] = often(
        st.lists(st.sampled_from([*ids, 0, -1, 10**40, "1", True]), min_size=1, max_size=4).map(json.dumps),
        [st.sampled_from(["[]", '"1"', "null", json.dumps(list(range(1, 22)))])],
    )
    return plausible, {"alice's token": {"token": token}, "bob's key": {"api_key": secret}}


def test_every_frame_gets_a_known_answer_the_socket_stays_open_and_refusals_write_nothing(world, capsys):
    plausible, credentials = world
    anonymous_plausible = {
        **plausible,
        "token": st.sampled_from(["a.b.c", "", "x" * 3000]).map(json.dumps),
        "api_key": st.sampled_from([".", "", "abc.def"]).map(json.dumps),
    }
    loop = Loop()
    sockets = {}
    answers, count = Counter(), 0
    try:
        for name in SOCKETS:
            sockets[name] = loop.run(open_socket(credentials.get(name)))
        fingerprints = Fingerprints()
        with LogWatch() as log:

            @given(
                name=st.sampled_from(SOCKETS),
                frame=st.one_of(frames(plausible)),
                anonymous_frame=frames(anonymous_plausible),
            )
            @fuzz_settings(FRAMES)
            def answered_as_documented(name, frame, anonymous_frame):
                nonlocal count
                if name == "anonymous":
                    frame = anonymous_frame  # never the real credentials: it stays anonymous
                log.take()
                frame_text = f"{name}: {frame[:300]!r}"
                messages = loop.run(exchange(sockets[name], frame))
                for message in messages:
                    check_message(message, frame_text)
                answer = messages[-1]
                assert not log.take(), (frame_text, answer)
                before, after = fingerprints.next()
                if answer["type"] == "error" or not (
                    isinstance(frame, str) and any(f'"{kind}"' in frame for kind in ORDER_COMMANDS)
                ):
                    assert after == before, (frame_text, answer)
                count += 1
                answers[answer["type"] if answer["type"] != "error" else answer["code"]] += 1

            answered_as_documented()
    finally:
        for communicator in sockets.values():
            loop.run(communicator.disconnect(timeout=2))
        loop.close()

    with capsys.disabled():
        print(f"\n/ws fuzz: {count} frames; answers {dict(sorted(answers.items()))}")
    assert count == examples(FRAMES)


HANDSHAKES = 60


def test_a_handshake_to_any_path_is_accepted_or_refused_without_an_error(market, capsys):
    """Junk socket paths (unknown, a symbol no market can have, percent-encoded bytes), with
    and without an Origin (a foreign one among them): each handshake is accepted or refused,
    and nothing is logged at ERROR."""
    paths = st.one_of(
        st.sampled_from(["/ws", "/ws/", "/ws/live/", "/ws/live/me/", "/ws/live/QTX-USD/", "/ws/live/BTC-USD/"]),
        st.sampled_from(["/ws/live/QTX-USD%00/", "/ws/live/%ff/", "/ws//", "/wsx", "/", "/ws/live/QTX-USD/x/"]),
        text.map(lambda segment: f"/ws/live/{segment}/"),
        text.map(lambda segment: f"/ws/{segment}"),
    )
    origins = st.sampled_from([None, b"http://testserver", b"http://evil.example", b"\xff", b"null", b""])
    loop = Loop()
    outcomes = Counter()
    try:
        with LogWatch() as log:

            @given(path=paths, origin=origins)
            @fuzz_settings(HANDSHAKES)
            def answered_without_an_error(path, origin):
                async def handshake():
                    headers = [(b"origin", origin)] if origin is not None else []
                    communicator = WebsocketCommunicator(application, path, headers=headers)
                    connected, _ = await communicator.connect(timeout=5)
                    if connected:
                        await communicator.disconnect(timeout=2)
                    return connected

                log.take()
                outcomes["accepted" if loop.run(handshake()) else "refused"] += 1
                assert not log.take(), (path, origin)

            answered_without_an_error()
    finally:
        loop.close()

    with capsys.disabled():
        print(f"\n/ws handshakes: {sum(outcomes.values())} ({dict(outcomes)})")
    assert sum(outcomes.values()) == examples(HANDSHAKES)
