"""Every page is sent with a Content-Security-Policy that allows no inline script or style,
and no page needs one: no inline <script>, no <style> element, no style or on* attribute.
(tests/browser/test_content_security_policy.py shows the live pages working under it.)"""

import re
from decimal import Decimal

import pytest
from django.test import Client

from accounts.services import balance_deposit
from accounts.tokens import api_login_start
from orders.services import order_place

INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+=", re.I), "on* handler attribute"),
]


def assert_no_inline_code(html: str, path: str):
    for pattern, what in INLINE:
        found = pattern.search(html)
        assert found is None, f"{path}: {what}: {html[max(0, found.start() - 80) : found.end() + 80]}"


def assert_strict_policy(response, path):
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives.get("script-src") == "'self'", (path, policy)
    assert directives.get("style-src") == "'self'", (path, policy)
    assert directives.get("object-src") == "'none'" and directives.get("frame-ancestors") == "'none'", policy


@pytest.mark.parametrize("path", ["/", "/markets/QTX-USD/", "/portfolio/", "/admin/", "/admin/orders/order/"])
def test_a_signed_in_traders_pages_carry_the_policy_and_no_inline_code(path, alice, operator, market):
    balance_deposit(user=alice, asset="USD", amount=Decimal("1000"), reason="test funding")
    order_place(user=alice, market="QTX-USD", side="buy", type="limit", price=Decimal("9.50"), quantity=Decimal("1"))
    browser = Client()
    browser.force_login(operator if path.startswith("/admin/") else alice)

    response = browser.get(path)

    assert response.status_code == 200
    assert_strict_policy(response, path)
    assert_no_inline_code(response.content.decode(), path)


@pytest.mark.parametrize(
    "path", ["/", "/markets/QTX-USD/", "/accounts/login/", "/accounts/register/", "/accounts/password/reset/"]
)
def test_a_visitors_pages_carry_the_policy_and_no_inline_code(client, path, market):
    response = client.get(path)

    assert response.status_code == 200
    assert_strict_policy(response, path)
    assert_no_inline_code(response.content.decode(), path)


def test_swagger_ui_loads_its_start_up_script_from_a_file(client):
    response = client.get("/api/docs/")
    html = response.content.decode()

    assert response.status_code == 200
    assert re.search(r'<script src="[^"]*\?script', html), "the start-up script is a file of its own"
    assert not re.search(r"<script>", html)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy + ";" and "'unsafe-inline'" in policy.split("style-src")[1].split(";")[0]


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", "/api/markets", 200),
        ("get", "/api/auth/me", 401),  # an error answer, in the documented shape
        ("post", "/api/orders", 401),
    ],
)
def test_the_apis_json_answers_carry_a_policy_that_allows_nothing(client, market, method, path, status):
    response = getattr(client, method)(path)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_a_signed_in_json_answer_keeps_the_fixed_policy_and_a_page_keeps_the_sites(alice, market):
    browser = Client()
    browser.force_login(alice)
    token = str(api_login_start(user=alice).access_token)

    answer = browser.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    page = browser.get("/")

    assert answer.status_code == 200 and answer.json()["username"] == "alice"
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert_strict_policy(page, "/")
