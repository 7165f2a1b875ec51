"""Real servers for the end-to-end stream tests: daphne and redis-server subprocesses on
free loopback ports, each stopped by its PID.

Daphne runs the project's own ASGI application against the test process's PostgreSQL test
database (so what a test writes with the ORM, daphne reads) and a Redis, with the test's
channel-layer prefix, so that its streams meet the test process's and nobody else's.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Process:
    """A subprocess with its output in a log file; stop() ends it by PID, bounded."""

    name = "process"
    cwd = ROOT

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}-{self.port}.log"
        self.process = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict | None:
        return None

    def start(self, timeout=30.0):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(), cwd=self.cwd, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not open port {self.port} within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, grace=10.0):
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# The ASGI servers the application runs under (docs/OPERATIONS.md, "Processes"): in
# production uvicorn (httptools, uvloop) serves HTTP and daphne the WebSockets under /ws;
# `make run` is one daphne for everything. Options as docker-compose.yml gives them.
SERVER_COMMANDS = {
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}"],
    "uvicorn": [
        "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
        "--ws", "websockets", "--lifespan", "off", "--no-proxy-headers", "--timeout-keep-alive", "75",
    ],
    "granian": [
        "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
        "--loop", "uvloop", "--no-access-log", "--blocking-threads", "1",
    ],
}  # fmt: skip


class AppServer(Process):
    """The project's ASGI application (quantumtrades.asgi) under `server`."""

    def __init__(self, workdir: Path, env: dict, server: str = "daphne"):
        super().__init__(workdir)
        self.server = self.name = server
        self.log_path = workdir / f"{server}-{self.port}.log"
        self.env = env
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.origin = self.url

    def argv(self):
        options = [option.format(port=self.port) for option in SERVER_COMMANDS[self.server]]
        return [sys.executable, *options, "quantumtrades.asgi:application"]

    def environment(self):
        return self.env


class Daphne(AppServer):
    def __init__(self, workdir: Path, env: dict):
        super().__init__(workdir, env, "daphne")


class RedisServer(Process):
    name = "redis"

    def argv(self):
        return [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Servers:
    """Everything a test started, stopped in reverse order at its end."""

    def __init__(self, env: dict):
        self.env = env
        self.workdir = Path(tempfile.mkdtemp(prefix="qt-e2e-"))
        self.started: list[Process] = []

    def daphne(self, **env) -> Daphne:
        server = Daphne(self.workdir, {**self.env, **env})
        self.started.append(server)
        return server.start()

    def app_server(self, server: str, **env) -> AppServer:
        process = AppServer(self.workdir, {**self.env, **env}, server)
        self.started.append(process)
        return process.start()

    def nginx(self, upstreams, streams=None) -> "Nginx":
        """nginx with HTTP to `upstreams` and WebSockets to `streams` (default: the same)."""
        server = Nginx(
            self.workdir, [upstream.port for upstream in upstreams], [stream.port for stream in streams or upstreams]
        )
        self.started.append(server)
        return server.start()

    def redis(self, port=None) -> RedisServer:
        server = RedisServer(self.workdir, port)
        self.started.append(server)
        return server.start()

    def stop(self):
        for process in reversed(self.started):
            process.stop()
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:{p.port}\n{p.log()[-4000:]}" for p in self.started)


class Nginx(Process):
    """Debian's nginx with the project's site (docker/nginx.conf) in front of `upstreams`."""

    name = "nginx"

    def __init__(self, workdir: Path, upstreams: list[int], streams: list[int] | None = None):
        """HTTP to `upstreams`, WebSockets to `streams` (default: the same processes)."""
        super().__init__(workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        site = (ROOT / "docker" / "nginx.conf").read_text()
        assert "server web:8000;" in site and "server streams:8000;" in site and "listen 80;" in site
        site = site.replace("server web:8000;", "".join(f"server 127.0.0.1:{port};\n" for port in upstreams))
        site = site.replace(
            "server streams:8000;", "".join(f"server 127.0.0.1:{port};\n" for port in streams or upstreams)
        )
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        temp = workdir / f"nginx-{self.port}"
        temp.mkdir()
        self.config = temp / "nginx.conf"
        self.config.write_text(
            f"daemon off;\npid {temp}/nginx.pid;\nerror_log {temp}/error.log info;\nevents {{}}\n"
            "http {\n  access_log off;\n"
            + "".join(
                f"  {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + site
            + "\n}\n"
        )

    def argv(self):
        return [nginx_path(), "-c", str(self.config), "-p", str(self.config.parent)]


def nginx_path() -> str | None:
    """Debian installs nginx in /usr/sbin, which is not on every PATH."""
    return shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)
