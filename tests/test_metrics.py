"""Prometheus metrics (docs/ARCHITECTURE.md, "Metrics"): /metrics moves with the work done
through the API and /ws, only the allowed get it, the FIX gateway's and the simulator's port
serves the same, and every name the Grafana dashboard and the alert rules ask for is one the
code exports.

The registry is the process's: every test reads what changed between two scrapes.
"""

import json
import re
import socket
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.tokens import api_login_start
from quantumtrades.core import metrics
from tests.api_support import assert_error
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
    of_type,
    run,
)

pytestmark = [pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
ALERTS = [
    "QTInstanceDown",
    "QTHighErrorRate",
    "QTOrderLatencyHigh",
    "QTBookLockWaitHigh",
    "QTStreamLagHigh",
    "QTRedisDown",
    "QTDatabaseDown",
    "QTDatabasePoolExhausted",
]


def parse(text: str) -> dict:
    """{(sample name, frozenset of its labels): value} of one scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(**extra) -> dict:
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


def total(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_login_start(user=user).access_token}")
    return client


ORDER = {"symbol": "QTX-USD", "type": "limit", "price": "10.00", "quantity": "1.00"}


def test_metrics_move_with_orders_through_the_api_and_the_socket(alice, bob, market):
    before = scrape()
    as_alice, as_bob = api_client(alice), api_client(bob)
    assert as_alice.post("/api/orders", {**ORDER, "side": "buy"}, format="json").status_code == 201
    crossing = as_bob.post("/api/orders", {**ORDER, "side": "sell"}, format="json")
    assert crossing.status_code == 201 and len(crossing.json()["fills"]) == 1
    too_big = as_alice.post("/api/orders", {**ORDER, "side": "buy", "quantity": "99999.00"}, format="json")
    assert_error(too_big, 400, "INSUFFICIENT_FUNDS")
    # A batch: each order's outcome counted, the batch timed as one engine command.
    ladder = [{**ORDER, "side": "buy", "price": price} for price in ("9.00", "9.01")]
    assert as_alice.post("/api/orders/batch", {"orders": ladder}, format="json").status_code == 200
    order_id = crossing.json()["order"]["id"]
    assert as_bob.get(f"/api/orders/{order_id}").status_code == 200
    assert as_bob.get("/no-such-page/12345").status_code == 404
    token = str(api_login_start(user=alice).access_token)

    async def body():
        async with Socket() as ws:
            await ws.send({"type": "auth", "token": token})
            await ws.until(of_type("authenticated"))
            await ws.send({"type": "subscribe", "channels": ["book", "trades", "orders"], "symbols": ["QTX-USD"]})
            await ws.until(of_type("book_snapshot"))
            during = await database_sync_to_async(scrape)()
            assert total(during, "qt_websockets_open", kind="api") >= 1
            assert total(during, "qt_websocket_subscriptions", channel="book") >= 1
            assert total(during, "qt_websocket_subscriptions", channel="orders") >= 1
            order = {**ORDER, "order_type": ORDER["type"], "side": "buy"}
            await ws.send({**order, "type": "order.place", "req_id": "m1"})
            answer = await ws.until(lambda m: m.get("req_id") == "m1")
            assert answer["type"] == "order.result", answer
            if not any(of_type("book_update")(message) for message in ws.seen):  # it may come first
                await ws.until(of_type("book_update"))  # the stream delivered the order's book change

    run(body)
    after = scrape()

    orders = "qt_orders_total"
    assert moved(before, after, orders, source="rest", type="limit", result="accepted") == 4
    assert moved(before, after, orders, source="rest", type="limit", result="INSUFFICIENT_FUNDS") == 1
    assert moved(before, after, orders, source="ws", type="limit", result="accepted") == 1
    assert moved(before, after, "qt_trades_total", market="QTX-USD") == 1
    # Every command the engine ran, timed once, with its wait for the book and its group.
    assert moved(before, after, "qt_engine_command_seconds_count", command="place") == 4
    assert moved(before, after, "qt_engine_book_lock_wait_seconds_count", command="place") == 4
    assert moved(before, after, "qt_engine_command_seconds_count", command="batch") == 1
    assert moved(before, after, "qt_engine_group_size_count") >= 4
    assert moved(before, after, "qt_engine_command_seconds_sum", command="place") > 0
    # HTTP by route, never the raw path: the order's id names no series.
    posts = dict(route="api/orders", method="POST")
    assert moved(before, after, "qt_http_requests_total", **posts, status="201") == 2
    assert moved(before, after, "qt_http_requests_total", **posts, status="400") == 1
    assert moved(before, after, "qt_http_request_duration_seconds_count", **posts) == 3
    assert moved(before, after, "qt_http_request_duration_seconds_bucket", **posts, le="+Inf") == 3
    assert moved(before, after, "qt_http_requests_total", route="api/orders/<int:order_id>", status="200") == 1
    routes = {dict(labels).get("route") for name, labels in after if name.startswith("qt_http_")}
    assert f"api/orders/{order_id}" not in routes and "api/orders/<int:order_id>" in routes
    assert moved(before, after, "qt_http_requests_total", route="unmatched", status="404") == 1
    assert not [route for route in routes if "12345" in route]
    # The streams delivered frames to the socket, with the lag of the batches it got.
    assert moved(before, after, "qt_stream_deliveries_total", kind="api") >= 3
    assert total(after, "qt_websockets_open", kind="api") == 0
    # PostgreSQL (and Redis, when the process uses it) checked as /healthz checks them.
    assert total(after, "qt_dependency_up", dependency="database") == 1
    assert total(after, "qt_dependency_up", dependency="channel_layer") == 1
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        assert total(after, "qt_dependency_up", dependency="redis") == 1


def test_metrics_only_to_allowed_addresses_or_the_token(settings, db):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "fd00::/8"]
    settings.METRICS_TOKEN = "scrape-2026"
    assert scrape(REMOTE_ADDR="10.1.2.3")
    assert scrape(REMOTE_ADDR="fd00::7")
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-2026")
    outsider = Client()
    assert_error(outsider.get("/metrics", REMOTE_ADDR="127.0.0.1"), 404, "NOT_FOUND")
    # The address a client claims through a proxy counts for nothing.
    assert_error(outsider.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.1.2.3"), 404)
    assert_error(outsider.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope"), 403)
    assert_error(outsider.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope"), 403)
    settings.METRICS_TOKEN = ""  # no token configured: a bearer opens nothing
    assert_error(outsider.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer "), 404)
    assert_error(outsider.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer x"), 403)


def test_a_process_without_http_serves_its_metrics_on_its_own_port():
    """The FIX gateway and the simulator: METRICS_PORT (metrics.serve)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = metrics.serve(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            samples = parse(response.read().decode())
        assert any(name == "qt_engine_group_size_count" for name, _ in samples)
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.serve(0) is None


def exported_names() -> set[str]:
    """Every sample name the process's registry can expose, whether or not it has series yet."""
    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def promql_names(expression: str) -> set[str]:
    return set(re.findall(r"\bqt_[a-z_]+", expression))


def test_the_dashboard_and_the_alerts_ask_only_for_exported_metrics():
    exported = exported_names()
    dashboard = json.loads((ROOT / "docker/grafana/dashboards/quantumtrades.json").read_text())
    panel_expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    rules = yaml.safe_load((ROOT / "docker/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    asked = Counter()
    for expression in panel_expressions + [rule["expr"] for rule in rules]:
        asked.update(promql_names(expression))
    assert len(asked) >= 15, asked
    assert not set(asked) - exported, sorted(set(asked) - exported)
    assert [rule["alert"] for rule in rules] == ALERTS
    for rule in rules:
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["runbook"] == f"docs/OPERATIONS.md#{rule['alert'].lower()}"
