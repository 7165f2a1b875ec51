"""A private PostgreSQL primary and its streaming hot standby, for the read replicas' tests.

The machine's cluster allows no replication, so the tests make their own: `initdb`, two
postmasters on free loopback ports (each with its socket in the cluster's own folder, so
nothing touches the machine's), the primary loaded with a copy of the test database
(`pg_dump | psql`), the standby made with `pg_basebackup -R`. Run as root (CI), every
server tool runs as the `postgres` OS user, which initdb and postmaster insist on.
A second or two to start; `stop()` stops both postmasters and removes their folders.
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HOST = "127.0.0.1"
# Durability means nothing to a cluster that lives for one test; speed does.
# (synchronous_commit stays on: a commit is sent to the standby once it is flushed, and the
# tests wait for what they committed.)
FAST = "-c fsync=off -c full_page_writes=off -c shared_buffers=16MB"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class PrivateCluster:
    def __init__(self):
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="qt-replicas-"))
        if self.owner is not None:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self.primary_port, self.standby_port = _free_port(), _free_port()
        self.running: list[Path] = []

    def _as_server(self, *command, **kwargs):
        """A server tool, as the postgres OS user when this process is root."""
        prefix = ["runuser", "-u", "postgres", "--"] if self.owner is not None else []
        return subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=60, **kwargs)

    def _start(self, data: Path, port: int, options: str = "") -> None:
        flags = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={self.folder} {FAST} {options}"
        self._as_server(
            BIN / "pg_ctl", "-D", data, "-w", "-s", "-l", self.folder / f"{data.name}.log", "-o", flags, "start"
        )
        self.running.append(data)

    def start(self, *, copy_of: dict, name: str) -> "PrivateCluster":
        """Start the primary with database `name`, a copy of the database `copy_of` (a
        Django settings_dict) describes, then its standby."""
        try:
            primary, standby = self.folder / "primary", self.folder / "standby"
            self._as_server(BIN / "initdb", "-D", primary, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
            self._start(primary, self.primary_port, "-c wal_level=replica -c max_wal_senders=4")
            self.psql("postgres", f'CREATE DATABASE "{name}"')
            source = {**os.environ, "PGPASSWORD": copy_of.get("PASSWORD") or ""}
            dump = subprocess.Popen(
                [BIN / "pg_dump", "-h", copy_of.get("HOST") or HOST, "-p", str(copy_of.get("PORT") or 5432),
                 "-U", copy_of.get("USER") or "postgres", "--no-owner", copy_of["NAME"]],
                stdout=subprocess.PIPE, env=source,
            )  # fmt: skip
            subprocess.run(
                [BIN / "psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(self.primary_port), "-U", "postgres", "-d", name],
                stdin=dump.stdout, check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            dump.stdout.close()
            assert dump.wait(timeout=60) == 0, "pg_dump failed"
            self._as_server(
                BIN / "pg_basebackup", "-h", HOST, "-p", self.primary_port, "-U", "postgres",
                "-D", standby, "-R", "-X", "fetch", "-c", "fast", "--no-sync",
            )  # fmt: skip
            self._start(standby, self.standby_port, "-c hot_standby=on")
        except BaseException:
            self.stop()
            raise
        return self

    def psql(self, database: str, sql: str, *, port: int | None = None) -> str:
        result = subprocess.run(
            [BIN / "psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(port or self.primary_port),
             "-U", "postgres", "-d", database, "-c", sql],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return result.stdout.strip()

    def stop_standby(self) -> None:
        standby = self.folder / "standby"
        self._as_server(BIN / "pg_ctl", "-D", standby, "-m", "immediate", "-s", "stop")
        self.running.remove(standby)

    def stop(self) -> None:
        for data in reversed(self.running):
            with contextlib.suppress(subprocess.SubprocessError):
                self._as_server(BIN / "pg_ctl", "-D", data, "-m", "immediate", "-s", "stop")
        self.running = []
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_until(predicate, *, timeout=15.0, every=0.05, what="the condition"):
    """Poll `predicate()` until it is true; AssertionError past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
