"""A longer probe of a real daphne with generated junk, its server log kept.

    .venv/bin/python bench/probe.py [--requests 20000] [--frames 5000] [--seed 25] [--log /tmp/qt-probe-daphne.log]

Runs the suite's probe (tests/fuzz/test_probe.py, tests/fuzz/probe.py) with larger counts:
a daphne on a fresh PostgreSQL test database and Redis, raw HTTP requests of junk (bad
methods, NUL and percent-encoded bytes in paths, bodies past the limits, the wrong
Content-Type) and /ws sockets of junk frames and floods. It fails on any 5xx, any answer
out of the error shape, any socket closed with 1011, any "Traceback" or ERROR line in the
daphne log. Prints the counts and the log's last lines; the whole log is kept at --log.
Only loopback addresses are used; daphne is stopped by its pid at the end.

DATABASE_URL and REDIS_URL default to the machine's PostgreSQL (a test database
test_qt_probe, made and dropped by the run) and Redis database 9.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--frames", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "qt-probe-daphne.log")
    args = parser.parse_args()

    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/qt_probe"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
        "QT_PROBE_REQUESTS": str(args.requests),
        "QT_PROBE_FRAMES": str(args.frames),
        "QT_PROBE_SEED": str(args.seed),
        "QT_PROBE_LOG": str(args.log.resolve()),
        # About 100 requests or frames a second on a busy two-core machine, and a margin.
        "QT_PROBE_TIMEOUT": str(150 + (args.requests + args.frames) // 20),
    }
    command = [sys.executable, "-m", "pytest", "tests/fuzz/test_probe.py", "-q", "-s"]
    result = subprocess.run(command, cwd=ROOT, env=env)
    print(f"daphne's log: {args.log}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
