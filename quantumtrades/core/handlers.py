"""Django's ASGI handler, with a request's synchronous work done in one trip to a thread.

The site's HTTP side is synchronous: every middleware can run either way, and the views and
the engine are sync. Django's `ASGIHandler` runs the middleware chain in the event loop and
crosses to a thread for the view, for the request-started and request-finished signals'
receivers and for `response.close()`, each on a thread of the request's own that is started
and joined per request. Those crossings and that thread were about half of the Python work
of a short API request, more than the view itself (docs/BENCHMARKS.md, "REST API").

`SyncASGIHandler` reads the body in the event loop, then hands the whole request to one of
`threads` kept worker threads, as a WSGI server would: signals, the middleware chain (loaded
synchronous), the view and `close()` all run there in one go. The event loop then sends the
response. Async views still work (Django calls them through `async_to_sync`, which runs them
in this event loop). A process works on at most `threads` requests at once; the others wait
in the event loop, which costs nothing, instead of adding threads that only fight over the
GIL and the book lock.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix


class SyncASGIHandler(ASGIHandler):
    def __init__(self, *, threads: int):
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="request")
        self.slots = asyncio.Semaphore(threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # Waiting for a slot here rather than in the executor's queue keeps the order in
        # which requests arrived and lets a request whose client went away drop out.
        async with self.slots:
            response = await SyncToAsync(self.respond, thread_sensitive=False, executor=self.executor)(scope, body_file)
        await self.send_response(response, send)
        if response.streaming:
            await SyncToAsync(response.close, thread_sensitive=False, executor=self.executor)()

    def respond(self, scope, body_file):
        """The request, start to finish, in a worker thread: what WSGIHandler.__call__ does."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._resource_closers.append(body_file.close)
        if not response.streaming:
            # Sends request_finished, whose receivers give the database connection back.
            response.close()
        return response
