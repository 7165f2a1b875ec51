"""The account's pages in a real browser: a password reset by email, two-factor login,
and signing out another session.

The server prints its email to the console (the default backend): the test reads the
reset link from the server's log, as a developer would.
"""

import base64
import re
import time

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import expect

from .conftest import log_in

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Brand-new-passphrase-2026"


def log_out(page):
    page.get_by_role("button", name="Log out").first.click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()


def emailed_link(server, address, timeout=10.0):
    """The last reset link the server's console email sent to the address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = server.log().split("Content-Type: text/plain")
        for message in reversed(messages):
            if f"To: {address}" in message:
                found = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message)
                if found:
                    return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no reset email to {address} in the server's log")


def authenticator_code(secret: str, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the secret; a later step's code for a second
    login within the same 30 seconds (each code is accepted once)."""
    totp = TOTP(base64.b32decode(secret.replace(" ", "")))
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def test_a_trader_resets_a_forgotten_password_by_email_and_logs_in_with_it(trader_page, qt_server):
    page = trader_page("/")
    username = page.username
    log_out(page)

    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    page.goto(emailed_link(qt_server, f"{username}@example.com"))
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Password set")).to_be_visible()

    log_in(page, username, NEW_PASSWORD)
    expect(page.locator(".who")).to_have_text(username)


def test_a_trader_turns_on_two_factor_login_and_the_next_login_asks_for_the_code(trader_page):
    page = trader_page("/")
    username = page.username
    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Two-factor login").click()
    page.get_by_role("link", name="Set up two-factor login").click()

    qr = page.get_by_role("img", name="QR code of your two-factor secret")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR code draws"
    secret = page.locator("[data-secret]").inner_text()
    page.get_by_label("Code from your authenticator app").fill(authenticator_code(secret))
    page.get_by_role("button", name="Turn on two-factor login").click()
    expect(page.get_by_text("Two-factor login is on")).to_be_visible()

    # The API asks for the code too.
    api = page.request.post("/api/auth/login", data={"username": username, "password": "Tr4ding-in-the-browser"})
    assert api.status == 401 and api.json()["error"]["code"] == "OTP_REQUIRED"

    log_out(page)
    page.goto("/accounts/login/?next=/portfolio/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("Tr4ding-in-the-browser")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    expect(page.locator(".who")).to_have_count(0)  # not signed in yet

    page.get_by_label("Code from your authenticator app").fill(authenticator_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/portfolio/")
    expect(page.locator(".who")).to_have_text(username)


def test_a_trader_signs_another_session_out(trader_page, new_context):
    laptop = trader_page("/")
    phone = new_context(
        viewport={"width": 390, "height": 844}, user_agent="Mozilla/5.0 (iPhone) Safari/604.1"
    ).new_page()
    log_in(phone, laptop.username, "Tr4ding-in-the-browser")

    laptop.goto("/accounts/sessions/")
    rows = laptop.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("This browser")
    expect(rows.nth(1)).to_contain_text("Safari on iPhone")
    rows.nth(1).get_by_role("button", name=re.compile("Sign out")).click()
    expect(laptop.get_by_text("That session is signed out.")).to_be_visible()
    expect(laptop.locator("tbody tr")).to_have_count(1)

    phone.goto("/portfolio/")
    expect(phone).to_have_url(re.compile(r"/accounts/login/"))


def test_an_api_key_made_on_the_page_works_over_the_api_until_it_is_revoked(trader_page, new_context):
    page = trader_page("/accounts/api-keys/")
    page.get_by_label("Name").fill("price bot")
    page.get_by_label("Allow trading").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-new-key]").inner_text()
    expect(page.locator("tbody tr", has_text="price bot")).to_contain_text("Read, trade")

    # Another program, with the key alone (no cookies).
    api = new_context().request
    headers = {"Authorization": f"Api-Key {secret}"}
    balances = api.get("/api/user/balances", headers=headers)
    assert balances.status == 200 and any(b["asset"] == "USD" for b in balances.json())
    order = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "1.13", "quantity": "1"}
    placed = api.post("/api/orders", data=order, headers=headers)
    assert placed.status == 201, placed.text()
    page.goto("/portfolio/")
    expect(page.locator("body")).to_contain_text("1.13")

    page.goto("/accounts/api-keys/")
    expect(page.locator("[data-new-key]")).to_have_count(0)  # shown once
    page.locator("tbody tr", has_text="price bot").get_by_role("button", name=re.compile("Revoke")).click()
    expect(page.get_by_text("is revoked")).to_be_visible()
    assert api.get("/api/user/balances", headers=headers).status == 401
