"""The pages work live under the Content-Security-Policy, and the browser reports no violation.

Every page is watched from before its first script runs: `securitypolicyviolation` events
(what the browser raises for each blocked script, style, eval or connection) and console
errors are collected, and must stay empty while a trader uses the market page live.
"""

import re

import pytest
from playwright.sync_api import expect

from .conftest import PRICE, log_in
from .test_trading_pages import open_order_row, place, wait_live

pytestmark = pytest.mark.browser

WATCH = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.qtReportViolation(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def watched(page):
    """Collect the page's policy violations, console errors and failed loads, across every
    navigation from now on."""
    page.violations, page.console_errors, page.failed = [], [], []
    page.expose_function("qtReportViolation", lambda text: page.violations.append(text))
    page.add_init_script(WATCH)
    # A missing file is told apart below, by its address (the admin has no favicon link, so
    # the browser asks for /favicon.ico).
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and page.console_errors.append(m.text)
        ),
    )
    page.on("response", lambda r: r.status >= 400 and page.failed.append(f"{r.status} {r.url}"))
    return page


def assert_clean(page):
    assert page.violations == [], "the policy blocked something"
    assert page.console_errors == [], page.console_errors
    assert [f for f in page.failed if not f.endswith("/favicon.ico")] == [], page.failed


def test_the_market_page_works_live_under_the_policy_with_no_violation(trader_page, new_context):
    seller = watched(trader_page("/"))
    seller.goto("/markets/QTX-USD/")
    policy = seller.request.get("/markets/QTX-USD/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    wait_live(seller)
    watcher = watched(new_context().new_page())
    watcher.goto("/markets/QTX-USD/")
    wait_live(watcher)

    place(seller, side="sell", price="77.31", quantity="3")
    expect(open_order_row(seller, "77.31")).to_have_count(1)
    # The order reached the watcher's book over its socket: htmx and the ws extension work.
    level = watcher.locator('#book [data-side="sell"][data-price^="77.31"]')
    expect(level).to_have_count(1, timeout=5000)
    # Depth bars and the seller's own level, set by app.js instead of inline styles.
    assert float(level.evaluate("row => getComputedStyle(row).getPropertyValue('--depth')").rstrip("%")) > 0
    mine = seller.locator('#book [data-side="sell"][data-price^="77.31"]')
    expect(mine).to_have_class(re.compile(r"\bmine\b"))
    expect(mine).to_have_css("box-shadow", re.compile(r"inset"))
    expect(level).not_to_have_class(re.compile(r"\bmine\b"))

    # The ticket's live estimate (an htmx request with the CSRF header) and a cancel.
    seller.locator("#ticket").get_by_label(PRICE).fill("77.32")
    seller.locator("#ticket").get_by_label("Quantity").fill("1")
    expect(seller.locator("#ticket [data-estimate-total]")).to_contain_text("77.")
    open_order_row(seller, "77.31").get_by_role("button", name=re.compile("Cancel")).click()
    expect(open_order_row(seller, "77.31")).to_have_count(0)
    expect(level).to_have_count(0, timeout=5000)

    for path in ("/", "/portfolio/"):
        seller.goto(path)
        wait_live(seller)
    seller.goto("/accounts/login/")
    assert_clean(seller)
    assert_clean(watcher)


def test_the_admin_and_swagger_ui_work_under_the_policy(new_context):
    page = watched(new_context().new_page())
    log_in(page, "operator", next_path="/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto("/admin/orders/order/")
    expect(page.locator("#changelist")).to_be_visible()
    page.goto("/admin/marketdata/market/")
    page.locator("#result_list tbody th a").first.click()
    expect(page.locator("#content-main form")).to_be_visible()
    assert_clean(page)

    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("QuantumTrades API", timeout=10_000)
    page.locator(".opblock-summary", has_text="/api/markets").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert_clean(page)
