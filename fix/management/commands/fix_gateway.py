"""`manage.py fix_gateway --port P`: the FIX 4.4 acceptor (docs/FIX.md), a process of its own."""

import asyncio
import contextlib
import signal

from django.core.management.base import BaseCommand

from fix.gateway import Gateway
from quantumtrades.core import metrics


class Command(BaseCommand):
    help = "Accept FIX 4.4 sessions (order entry and drop copy) on a TCP port."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--port", type=int, default=9878)
        parser.add_argument(
            "--threads", type=int, default=None, help="Worker threads for the database (REQUEST_THREADS)."
        )

    def handle(self, *args, host, port, threads, **options):
        metrics.serve()  # METRICS_PORT: Prometheus scrapes this process on its own
        asyncio.run(self.serve(host, port, threads))

    async def serve(self, host, port, threads):
        gateway = Gateway(host=host, port=port, threads=threads)
        await gateway.start()
        self.stdout.write(f"FIX gateway listening on {host}:{gateway.port}", ending="\n")
        self.stdout.flush()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stopping.set)
        serving = asyncio.create_task(gateway.serve_forever())
        await stopping.wait()
        # Every session is told (Logout) before the process goes; its state is in PostgreSQL.
        await gateway.stop()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
