"""Suite-wide pytest setup."""

import os

import pytest


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters, login lockouts, remembered users and markets: no test inherits another's."""
    from django.core.cache import cache

    from accounts.authentication import forget_all_users
    from orders.services import forget_markets

    cache.clear()
    # Users and markets remembered per process: SQLite hands a rolled-back test's ids out again.
    forget_all_users()
    forget_markets()
    yield


def pytest_sessionfinish(session, exitstatus):
    # CI's PostgreSQL and Redis run must exercise everything: a skip there is a failure.
    if os.environ.get("QT_FAIL_ON_SKIP") and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            reporter.write_line(f"QT_FAIL_ON_SKIP: {skipped} tests were skipped", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
