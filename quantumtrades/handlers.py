"""Django's ASGI handler, with each request's synchronous code on a thread that is kept.

Django runs a request's synchronous parts (sync middleware, the view, the ORM) on a thread
of the request's own: `ASGIHandler` opens a `ThreadSensitiveContext` per request, and that
starts a new single-thread executor, which is shut down again when the response is out.
Starting and joining that thread was about a tenth of the server's time on a short API
request (docs/BENCHMARKS.md, "REST API"). asgiref lets the caller supply the context's
executor, so here a few single-thread executors are kept and lent to one request at a time:
the same thread-per-request guarantee, without a new thread each time. A process serves at
most `threads` requests at once; the others wait in the event loop, which costs nothing,
instead of adding threads that only fight over the GIL and the book lock.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler


class ThreadPoolASGIHandler(ASGIHandler):
    def __init__(self, *, threads: int):
        super().__init__()
        self.slots = asyncio.Semaphore(threads)
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with self.slots:
            executor = self.idle.pop() if self.idle else ThreadPoolExecutor(1, thread_name_prefix="request")
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.handle(scope, receive, send)
            finally:
                # A view whose client went away may still run on it; the next request's
                # work then queues behind it on the same thread, one at a time.
                self.idle.append(executor)
