"""Suite-wide pytest setup."""

import os
import sys

import pytest
from django.conf import settings

# Importing the ASGI application (as the socket tests do, some from conftest files loaded
# before any hook of this file would run) starts the venue's timers on a thread of their
# own (quantumtrades.core.scheduler), which would cancel orders and sweep sockets under the
# tests' feet. In tests a job runs when the test says so (`scheduler.run_due()`); the
# servers that end-to-end tests start run their own.
settings.SCHEDULER_ENABLED = False


def pytest_configure(config):
    # No scheduler thread in the test process (quantumtrades.asgi starts one when a test
    # imports the application): its jobs would run against the test database between a
    # test's steps. Tests play a tick with `scheduler.run_due()`; a server process a test
    # starts has its own settings.
    from django.conf import settings

    settings.SCHEDULER_ENABLED = False


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters, login lockouts, and what the process remembers of the database
    (users, tokens, markets, the fee account): no test inherits another's."""
    from django.core.cache import cache

    from quantumtrades.core import process_caches

    cache.clear()
    process_caches.forget_all()
    yield


@pytest.fixture(autouse=True)
def _request_threads_give_back_connections():
    """A test that sent requests through the ASGI application left its worker threads
    holding database connections (they keep them between requests,
    quantumtrades.core.handlers): given back after each test, so that no test finds
    another's, and the test database can be dropped at the end."""
    yield
    handlers = sys.modules.get("quantumtrades.core.handlers")
    if handlers is not None:
        handlers.give_back_kept_connections()


def pytest_sessionfinish(session, exitstatus):
    # CI's PostgreSQL and Redis run must exercise everything: a skip there is a failure.
    if os.environ.get("QT_FAIL_ON_SKIP") and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            reporter.write_line(f"QT_FAIL_ON_SKIP: {skipped} tests were skipped", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
