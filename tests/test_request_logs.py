"""Request ids in the logs (docs/OPERATIONS.md, "Logs"): an HTTP request's id, taken from
X-Request-ID or made, is echoed in its answer and written on the engine's JSON log line of the
order it placed. (A /ws message's id: tests/streams/test_ws_request_ids.py.)"""

import io
import json
import logging
import re

import pytest

from quantumtrades.core.logs import JsonFormatter, LogContextFilter
from tests.api_support import *  # noqa: F403

BUY = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1.00"}


def json_lines(name, level):
    """The log lines of logger `name` as LOG_FORMAT=json writes them, from `level` up: a
    list that fills, and the way to stop it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def stop():
        logger.removeHandler(handler)
        logger.setLevel(before)

    return (lambda: [json.loads(line) for line in stream.getvalue().splitlines()]), stop


@pytest.fixture(name="engine_lines")
def engine_lines_fixture():
    """The engine's log lines at DEBUG."""
    lines, stop = json_lines("orders.services", logging.DEBUG)
    yield lines
    stop()


def test_the_request_id_travels_from_http_into_the_engines_json_line(as_alice, alice, engine_lines):
    # A client's id is kept, cleaned of what could forge a header or a log line, and bounded.
    response = as_alice.post("/api/orders", BUY, format="json", headers={"X-Request-ID": 'trace-7 "x"\tz' + "9" * 100})
    assert response.status_code == 201, response.content
    request_id = response["X-Request-ID"]
    assert request_id == "trace-7xz" + "9" * 55
    order = response.json()["order"]
    [line] = [line for line in engine_lines() if line.get("order") == order["id"]]
    assert line["request_id"] == request_id
    assert line["user"] == alice.pk and line["market"] == "QTX-USD"
    assert line["level"] == "DEBUG" and line["logger"] == "orders.services"
    assert line["message"].startswith("order placed") and line["time"].endswith("+00:00")

    # Without one, the server makes one; each request its own, in every answer (errors too),
    # and Django's line about an error answer, written after the middleware returned, has it.
    errors, stop = json_lines("django.request", logging.WARNING)
    try:
        first, second = as_alice.get("/api/orders/open"), as_alice.get("/api/markets/NOPE-USD")
    finally:
        stop()
    assert second.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"]) and first["X-Request-ID"] != second["X-Request-ID"]
    [error] = errors()
    assert (error["request_id"], error["status"], error["user"]) == (second["X-Request-ID"], 404, alice.pk)
    assert as_alice.post("/api/orders", BUY, format="json", headers={"X-Request-ID": "\n"})["X-Request-ID"] != "\n"
