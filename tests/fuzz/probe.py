"""A probe from outside: generated raw HTTP requests and /ws frames against a running server.

What an outsider can send, drawn from a seed (the same seed, the same probe): requests with
bad methods, paths with NUL, percent-encoded junk or bytes that are not UTF-8 in the symbol,
query strings of junk, JSON bodies of junk, bodies past the API's limit and past the
server's, the wrong Content-Type; and sockets that send junk frames (JSON that is no
message, text that is no JSON, frames past the 4 KiB limit, binary frames, order commands
with junk values), that knock on socket paths no consumer serves, and that flood.

The requests are written by hand on a raw connection (no client library tidies them up).
Every HTTP answer must be below 500, and an API refusal is in the error shape; every
socket message is JSON with a type, an error has a code and a message; the server never
closes a socket with 1011 (an error inside it). `run()` answers the counts; the server's
log is the caller's to read (tests/fuzz/test_probe.py, bench/probe.py).
"""

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .fuzz_support import (
    CONTENT_TYPES,
    DECIMAL_STRINGS,
    MALFORMED,
    ODD_NUMBERS,
    ODD_STRINGS,
    PERCENT_JUNK,
)

API_PATHS = [
    "/api/auth/register",
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/auth/me",
    "/api/keys",
    "/api/keys/{id}",
    "/api/user/balances",
    "/api/user/transactions",
    "/api/user/balance",
    "/api/markets",
    "/api/markets/{symbol}",
    "/api/markets/{symbol}/trades",
    "/api/markets/{symbol}/candles",
    "/api/book/snapshot",
    "/api/orders",
    "/api/orders/open",
    "/api/orders/{id}",
    "/api/trades/history",
]
PAGE_PATHS = [
    "/",
    "/healthz",
    "/markets/{symbol}/",
    "/markets/{symbol}/ticket/",
    "/portfolio/",
    "/accounts/login/",
    "/accounts/register/",
    "/admin/",
    "/api/schema/",
    "/api/docs/",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/nope",
]
METHODS = ["GET"] * 4 + ["POST"] * 4 + ["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO", "get", "PROPFIND"]
FIELDS = [
    "symbol", "side", "type", "price", "stop_price", "quantity", "time_in_force", "post_only", "client_order_id",
    "username", "password", "email", "otp", "refresh", "name", "scopes", "allowed_ips", "asset", "amount", "reason",
]  # fmt: skip
QUERY_NAMES = ["symbol", "status", "cursor", "page_size", "limit", "before", "interval", "depth", "asset", "kind", "x"]
SOCKET_PATHS = ["/ws", "/ws/", "/ws/live/", "/ws/live/QTX-USD/", "/ws/live/QTX-USD%00/", "/ws/nope", "/ws/live/%ff/"]
# What the server sends on /ws (docs/API.md, "Server messages").
WS_TYPES = {
    "pong", "subscribed", "unsubscribed", "authenticated", "order.result", "error", "book_snapshot", "book_update",
    "trade", "ticker", "candle", "order", "fill", "balance", "heartbeat",
}  # fmt: skip
# The API's body limit is 64 KiB; the server's (DATA_UPLOAD_MAX_MEMORY_SIZE) 1 MiB.
BIG_BODIES = [70_000, 1_100_000]


@dataclass
class Outcome:
    statuses: Counter = field(default_factory=Counter)
    ws_messages: Counter = field(default_factory=Counter)
    close_codes: Counter = field(default_factory=Counter)
    handshakes: Counter = field(default_factory=Counter)
    requests: int = 0
    frames: int = 0
    problems: list = field(default_factory=list)

    def problem(self, text):
        if len(self.problems) < 20:
            self.problems.append(text[:500])

    def summary(self) -> dict:
        return {
            "http requests": self.requests,
            "http statuses": dict(sorted(self.statuses.items())),
            "ws frames": self.frames,
            "ws handshakes": dict(sorted(self.handshakes.items(), key=str)),
            "ws answers": dict(self.ws_messages.most_common()),
            "ws close codes": dict(sorted(self.close_codes.items(), key=str)),
            "problems": self.problems,
        }


# --- Generation -------------------------------------------------------------------------------


def junk_value(rng: random.Random, depth=0):
    """A JSON value as text, junk of every kind."""
    choice = rng.randrange(8 if depth < 2 else 5)
    if choice == 0:
        return rng.choice(ODD_NUMBERS)
    if choice == 1:
        return json.dumps(rng.choice(DECIMAL_STRINGS))
    if choice == 2:
        return json.dumps(rng.choice(ODD_STRINGS), ensure_ascii=rng.random() < 0.5)
    if choice == 3:
        return rng.choice(["null", "true", "false", '"\\ud800"', '"a\\u0000b"'])
    if choice == 4:
        return json.dumps("".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(0, 30))))
    if choice == 5:
        return "[" + ",".join(junk_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    return junk_object(rng, depth + 1)


def junk_object(rng: random.Random, depth=0, names=FIELDS) -> str:
    pairs = [f"{json.dumps(rng.choice(names))}:{junk_value(rng, depth)}" for _ in range(rng.randrange(1, 6))]
    return "{" + ",".join(pairs) + "}"


def plausible_order(rng: random.Random) -> dict:
    order = {"symbol": "QTX-USD", "side": rng.choice(["buy", "sell"]), "quantity": rng.choice(["1", "0.5", "2.00"])}
    kind = rng.choice(["limit", "limit", "market", "stop_limit", "stop_market"])
    order["type"] = kind
    if kind in ("limit", "stop_limit"):
        order["price"] = rng.choice(["9.50", "10.00", "10.50", "11.00"])
    if kind.startswith("stop"):
        order["stop_price"] = rng.choice(["8.00", "12.00"])
    return order


def body(rng: random.Random) -> bytes:
    choice = rng.randrange(10)
    if choice == 0:
        return b""
    if choice == 1:
        return rng.choice(MALFORMED).encode("utf-8", "surrogatepass")
    if choice == 2:
        size = rng.choice(BIG_BODIES)
        return json.dumps({"username": "a" * size, "password": "x"}).encode()
    if choice == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    if choice in (4, 5):
        return json.dumps(plausible_order(rng)).encode()
    return junk_object(rng).encode("utf-8", "surrogatepass")


def path_with(template: str, rng: random.Random) -> str:
    symbol = rng.choice(
        ["QTX-USD", "QTX-USD", "BTC-USD", "qtx-usd", "QTX-USD" + rng.choice(PERCENT_JUNK), rng.choice(PERCENT_JUNK)]
        + [quote(rng.choice(ODD_STRINGS), safe="") or "%20"]
    )
    ident = rng.choice(["1", "2", "0", "-1", "9" * 25, "9223372036854775808", "abc", "1%00", "%ff"])
    return template.replace("{symbol}", symbol).replace("{id}", ident)


def query(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randrange(4)):
        value = rng.choice([*ODD_STRINGS, *DECIMAL_STRINGS, "QTX-USD", "50", "1m", "open"])
        parts.append(f"{rng.choice(QUERY_NAMES)}={quote(value, safe='')}")
    if rng.random() < 0.3:
        parts.append(rng.choice(PERCENT_JUNK))
    return "&".join(parts)


def http_request(rng: random.Random, credentials: list[str]) -> tuple[str, str, list[tuple[str, str]], bytes, bool]:
    """(method, target, headers, body, whether the request line is one a server can parse)."""
    template = rng.choice(API_PATHS * 3 + PAGE_PATHS)
    target = path_with(template, rng)
    if rng.random() < 0.5:
        target += "?" + query(rng)
    parsable = rng.random() >= 0.05
    if not parsable:  # a target no parser should take: a raw NUL, a raw space, raw bytes
        target = target + rng.choice(["\x00", " x", "\xff"])
    headers = [("Content-Type", rng.choice(["application/json"] * 6 + CONTENT_TYPES))]
    # Twisted, under daphne, answers these itself (400, no body) before the application sees
    # them: a NUL in a header, a multipart body it cannot parse.
    parsable = parsable and "\x00" not in headers[0][1] and not headers[0][1].startswith("multipart/")
    authorization = rng.choice([None, None, *credentials, "Bearer a.b.c", "Api-Key x.y", "Basic Og==", "Bearer"])
    if authorization:
        headers.append(("Authorization", authorization))
    if rng.random() < 0.1:
        headers.append(("Accept", rng.choice(["text/html", "application/xml", "*/*", "%%%"])))
    return rng.choice(METHODS), target, headers, body(rng), parsable


def ws_frame(rng: random.Random) -> str | bytes:
    choice = rng.randrange(12)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if choice == 1:
        return json.dumps({"type": "ping", "id": "z" * rng.choice([4_100, 20_000, 70_000])})
    if choice == 2:
        return rng.choice(MALFORMED[:16])
    if choice == 3:
        return junk_value(rng)
    if choice == 4:
        return json.dumps({"type": rng.choice(["PING", "order", "", "subscribe\x00"])})
    if choice == 5:
        return json.dumps({"type": "subscribe", "channels": ["book", "trades", "ticker"], "symbols": ["QTX-USD"]})
    if choice == 6:
        return json.dumps({"type": "ping", "id": rng.randrange(1000)})
    if choice == 7:
        return json.dumps({"type": "order.place", "req_id": f"p{rng.randrange(1000)}", **plausible_order(rng)}).replace(
            '"type": "limit"', '"order_type": "limit"'
        )
    kind = rng.choice(
        ["subscribe", "unsubscribe", "auth", "order.place", "order.amend", "order.cancel", "order.cancel_all"]
    )
    names = ["channels", "symbols", "interval", "token", "api_key", "req_id", "id", "order_type", *FIELDS[:9]]
    return '{"type":' + json.dumps(kind) + "," + junk_object(rng, 1, names)[1:]


# --- Sending ----------------------------------------------------------------------------------


async def raw_request(host, port, method, target, headers, payload, timeout=15.0) -> tuple[int | None, bytes]:
    """(status, body) of one request written by hand on its own connection (None: no answer)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        writer.write(head.encode("latin-1", "replace") + payload)
        with contextlib.suppress(ConnectionError):  # answered (413) and closed before reading it all
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, b""
    if b"transfer-encoding: chunked" in head.lower():
        content = dechunk(content)
    return int(parts[1]), content


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def check_http(outcome: Outcome, method, target, status, content, parsable=True, headers=()):
    request = f"{method} {target[:200]!r}"
    if status is None:
        outcome.problem(f"no answer to {request}")
        return
    outcome.statuses[status] += 1
    if status >= 500:
        outcome.problem(f"{status} for {request}: {content[:300]!r}")
    api = target.startswith("/api/") and not target.startswith(("/api/schema", "/api/docs"))
    # A request line the server cannot parse is answered by daphne itself, before the API.
    if api and parsable and 400 <= status < 500 and method != "HEAD":
        try:
            error = json.loads(content)["error"]
            assert set(error) == {"code", "message", "field"} and error["code"] and error["message"]
        except Exception:
            outcome.problem(f"{status} for {request} {headers} is not in the error shape: {content[:300]!r}")


async def socket_session(ws_url, path, frames, token, outcome: Outcome, *, flood=False):
    # Page sockets (/ws/live/...) answer with HTML fragments, not the integrators' JSON.
    pages = path.startswith("/ws/live")
    try:
        async with connect(ws_url + path, open_timeout=10, max_size=None) as ws:
            outcome.handshakes["accepted"] += 1
            if token:
                await ws.send(json.dumps({"type": "auth", "token": token}))
            try:
                for frame in frames:
                    await ws.send(frame)
                    outcome.frames += 1
                    if not flood:
                        await read_answers(ws, outcome, quiet=0.2, pages=pages)
                await read_answers(ws, outcome, quiet=0.5 if not flood else 5.0, pages=pages)
            except ConnectionClosed:
                pass
            await ws.close()
            code = ws.close_code
    except InvalidStatus as exc:
        outcome.handshakes[exc.response.status_code] += 1
        if exc.response.status_code >= 500:
            outcome.problem(f"handshake to {path!r}: {exc.response.status_code}")
        return
    except InvalidHandshake as exc:
        outcome.handshakes[type(exc).__name__] += 1
        return
    outcome.close_codes[code] += 1
    if code == 1011:
        outcome.problem(f"socket {path!r} closed with 1011 (an error in the server)")


async def read_answers(ws, outcome: Outcome, quiet: float, pages=False):
    """Every message until none comes for `quiet` seconds."""
    while True:
        try:
            text = await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            return
        if pages:
            outcome.ws_messages["page fragment"] += 1
            continue
        try:
            message = json.loads(text)
        except ValueError:
            outcome.problem(f"a socket message that is no JSON: {text[:200]!r}")
            continue
        kind = message.get("type") if isinstance(message, dict) else None
        outcome.ws_messages[message.get("code", kind) if kind == "error" else kind] += 1
        if kind not in WS_TYPES:
            outcome.problem(f"unknown socket message: {text[:200]}")
        elif kind == "error" and not (message.get("code") and message.get("message")):
            outcome.problem(f"socket error without code or message: {text[:200]}")


async def probe(url, ws_url, *, requests, frames, seed, credentials, token, concurrency=4) -> Outcome:
    rng = random.Random(seed)
    host, port = url.split("//", 1)[1].split(":")
    outcome = Outcome()
    plan = [http_request(rng, credentials) for _ in range(requests)]

    async def worker(items):
        for method, target, headers, payload, parsable in items:
            try:
                status, content = await raw_request(host, int(port), method, target, headers, payload)
            except (ConnectionError, TimeoutError) as exc:
                outcome.problem(f"{type(exc).__name__} on {method} {target[:100]!r}")
                continue
            outcome.requests += 1
            check_http(outcome, method, target, status, content, parsable, headers)

    await asyncio.gather(*(worker(plan[index::concurrency]) for index in range(concurrency)))

    # Sockets of at most 15 frames each (inside the socket's burst of 20), a third of them
    # authenticated; a few knock on other paths; three flood.
    sessions = []
    left = frames
    while left > 0:
        count = min(15, left)
        left -= count
        path = "/ws" if rng.random() < 0.85 else rng.choice(SOCKET_PATHS)
        sessions.append((path, [ws_frame(rng) for _ in range(count)], token if rng.random() < 0.33 else None))
    for index in range(0, len(sessions), concurrency):
        await asyncio.gather(
            *(
                socket_session(ws_url, path, batch, tok, outcome)
                for path, batch, tok in sessions[index : index + concurrency]
            )
        )
    for _ in range(3):
        await socket_session(ws_url, "/ws", [json.dumps({"type": "ping"})] * 90, None, outcome, flood=True)
    return outcome
