"""Take the README's screenshots of the operators' console against a seeded, lively demo.

    .venv/bin/python docs/screenshots/take_console.py

Starts a server of its own (tests/browser/server.py), lets `simulate_market` trade for a
while, has alice rest a few orders and send some the venue refuses, runs `reconcile` from
the console, and saves the dashboard (1440 px and a 390 px phone) and alice's trader page
next to this file. Needs Debian's Chromium (/usr/bin/chromium).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DEMO_PASSWORD  # noqa: E402
from tests.browser.server import LiveServer  # noqa: E402

SHOTS = ["console-dashboard", "console-trader", "console-dashboard-phone"]
ORDERS = [
    # Resting bids and a stop, then what the venue refuses: too big, off the tick, off the lot.
    {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "80.00", "quantity": "2"},
    {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "81.50", "quantity": "1.5"},
    {"symbol": "QTX-USD", "side": "buy", "type": "stop_market", "stop_price": "140.00", "quantity": "1"},
    {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "80.00", "quantity": "900000"},
    {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "80.001", "quantity": "1"},
    {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "80.00", "quantity": "1.001"},
]


def main():
    with LiveServer("screenshots") as server:
        server.manage("simulate_market", "--rate", "60", "--duration", "20", "--seed", "2026")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            desktop = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 960})
            page = desktop.new_page()
            login = page.request.post("/api/auth/login", data={"username": "alice", "password": DEMO_PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access']}"}
            for order in ORDERS:
                page.request.post("/api/orders", data=order, headers=headers)
            log_in(page, "operator", "/admin/")
            page.get_by_role("button", name="Run reconcile now").click()
            expect(page.get_by_test_id("reconcile")).to_have_text("clean")
            # The refusals reach the dashboard with the server's next flush (every 5 s).
            expect(page.get_by_test_id("refused")).not_to_have_text("0", timeout=15_000)
            page.wait_for_load_state("networkidle")
            bottom = page.locator("#dashboard").bounding_box()
            page.screenshot(
                path=HERE / "console-dashboard.png",
                full_page=True,
                clip={"x": 0, "y": 0, "width": 1440, "height": bottom["y"] + bottom["height"] + 24},
            )

            page.goto("/admin/accounts/user/?q=alice")
            page.get_by_role("link", name="Trader page").first.click()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=HERE / "console-trader.png", full_page=True)

            phone = browser.new_context(base_url=server.url, viewport={"width": 390, "height": 844}, is_mobile=True)
            mobile = phone.new_page()
            log_in(mobile, "operator", "/admin/")
            mobile.wait_for_load_state("networkidle")
            bottom = mobile.locator("#dashboard").bounding_box()
            mobile.screenshot(
                path=HERE / "console-dashboard-phone.png",
                full_page=True,
                clip={"x": 0, "y": 0, "width": 390, "height": bottom["y"] + bottom["height"] + 24},
            )
            browser.close()
    for name in SHOTS:
        print(HERE / f"{name}.png")


def log_in(page, username, next_path):
    page.goto(f"/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


if __name__ == "__main__":
    main()
