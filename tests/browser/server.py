"""A real QuantumTrades server for browser tests and screenshots: a daphne subprocess on a
free loopback port, over a database of its own.

On the embedded defaults that is a fresh SQLite file and the in-memory channel layer in
one process; with DATABASE_URL (and REDIS_URL) set it is a fresh PostgreSQL database next
to the one named there, dropped afterwards, and the same Redis. Migrated and seeded
(`seed_demo`) before daphne starts; stopped by its PID.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    def __init__(self, name: str = "browser"):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"qt-{name}-"))
        self.log_path = self.workdir / "daphne.log"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.browser.server_settings", "PYTHONUNBUFFERED": "1"}
        self.env.pop("QT_FAIL_ON_SKIP", None)
        self.database = None
        self.admin_url = None
        database_url = os.environ.get("DATABASE_URL", "")
        if database_url:
            # A database of its own beside the configured one: qt_pages -> qt_pages_browser_<pid>.
            base, _, dbname = database_url.rpartition("/")
            dbname = dbname.split("?")[0]
            self.database = f"{dbname}_{name}_{os.getpid()}"
            self.admin_url = re.sub(r"\+\w+://", "://", f"{base}/postgres")
            self.env["DATABASE_URL"] = f"{base}/{self.database}"
        else:
            self.env["QT_BROWSER_SQLITE"] = str(self.workdir / "db.sqlite3")

    # Lifecycle --------------------------------------------------------------------------

    def start(self) -> "LiveServer":
        if self.database:
            self._postgres(f'DROP DATABASE IF EXISTS "{self.database}"', f'CREATE DATABASE "{self.database}"')
        self.manage("migrate", "--noinput")
        self.manage("seed_demo")
        # No price band and no circuit breaker, as the engine's tests have (tests.factories):
        # the pages' tests place orders at any price; a test of a rule turns it on itself.
        self.manage(
            "shell",
            "-c",
            "from marketdata.models import Market; Market.objects.update(price_band=None, circuit_breaker=None)",
        )
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the process's lifetime)
        self.process = subprocess.Popen(
            [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "quantumtrades.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_until_up()
        return self

    def stop(self) -> None:
        if self.process is not None:
            pid = self.process.pid
            try:
                os.kill(pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            self.process = None
        if self.database:
            self._postgres(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # Helpers ----------------------------------------------------------------------------

    def manage(self, *args, timeout=180) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_until_up(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer on {self.url} within {timeout:g} s:\n{self.log()}")

    def _postgres(self, *statements):
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)
