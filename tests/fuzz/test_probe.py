"""The probe (tests/fuzz/probe.py) against a real daphne on PostgreSQL and Redis: generated
raw HTTP requests (bad methods, junk paths and queries, NUL and percent-encoded bytes in the
symbol, bodies of junk, bodies past the API's and the server's limits) and /ws sockets (junk
frames, oversized and binary frames, order commands, paths no consumer serves, floods). No
answer is a 5xx, an API refusal is in the error shape, no socket is closed with 1011, and
daphne's log has no traceback and no ERROR line.

Bounded for CI: PROBE_REQUESTS (300) requests and PROBE_FRAMES (200) frames, plus three
floods of 90 pings: about 18 s with daphne's start. The counts are printed (pytest -s). A longer probe by hand, with the daphne log kept:
`bench/probe.py --requests 20000 --frames 5000` (it sets the QT_PROBE_* variables read here).
"""

import asyncio
import os
import shutil

import pytest

from accounts.keys import api_key_create
from accounts.tokens import api_login_start
from tests.e2e.conftest import (
    NEEDS_SERVERS,
    servers,  # noqa: F401  (fixture)
)
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    fast_streams_fixture,
    market_fixture,
)

from .probe import probe

PROBE_REQUESTS = int(os.environ.get("QT_PROBE_REQUESTS", "300"))
PROBE_FRAMES = int(os.environ.get("QT_PROBE_FRAMES", "200"))
PROBE_SEED = int(os.environ.get("QT_PROBE_SEED", "25"))
# Where to keep daphne's log (it is deleted with the test's folder otherwise).
PROBE_LOG = os.environ.get("QT_PROBE_LOG")

pytestmark = [*NEEDS_SERVERS, pytest.mark.slow]


@pytest.mark.timeout(int(os.environ.get("QT_PROBE_TIMEOUT", "150")))
def test_a_probe_of_junk_gets_no_server_error_and_leaves_no_traceback_in_the_log(servers, alice):  # noqa: F811
    server = servers.daphne()
    _, secret = api_key_create(user=alice, name="probe", scopes=["read", "trade"])
    token = str(api_login_start(user=alice).access_token)

    outcome = asyncio.run(
        probe(
            server.url,
            server.ws_url,
            requests=PROBE_REQUESTS,
            frames=PROBE_FRAMES,
            seed=PROBE_SEED,
            credentials=[f"Bearer {token}", f"Api-Key {secret}"],
            token=token,
        )
    )

    log = server.log()
    if PROBE_LOG:
        shutil.copyfile(server.log_path, PROBE_LOG)
    summary = outcome.summary()
    print(f"\nprobe: {summary}\n--- daphne log, last lines:\n" + "\n".join(log.splitlines()[-15:]))
    assert outcome.requests == PROBE_REQUESTS and outcome.frames >= PROBE_FRAMES, summary
    assert not outcome.problems, summary
    assert "Traceback" not in log, log[-5000:]
    assert not [line for line in log.splitlines() if " ERROR " in line or line.startswith("ERROR")], log[-5000:]
