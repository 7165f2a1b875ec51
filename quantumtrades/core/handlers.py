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

A worker thread keeps the database connection it takes from the pool from one request to
the next, as a WSGI server's threads keep theirs (`keep_connection`).

A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused here, 413, before it is read into
a file: Django would only refuse it later, from whatever first reads `request.body`, and
under the REST API that was a 500.
"""

import asyncio
import contextvars
import functools
import os
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.db.backends.signals import connection_created
from django.http import HttpResponse, JsonResponse
from django.urls import set_script_prefix

from quantumtrades.core import unavailable
from quantumtrades.core.errors import ErrorCode, error_body
from quantumtrades.core.logs import REQUEST_ID_HEADER, request_id_of_scope


class BodyTooLarge(Exception):
    pass


_worker = threading.local()
_handlers = weakref.WeakSet()


def _worker_started():
    _worker.keeps_connection = True


def keep_connection(sender, connection, **kwargs):
    """On a worker thread, a pooled connection just taken (`connection_created`) stays
    with the thread after its request, until Django finds it broken or left outside
    autocommit at the end of a request (`close_if_unusable_or_obsolete`) and gives it back.

    With the pool Django must run with CONN_MAX_AGE = 0, and so gave the connection back at
    the end of every request and took one again at the next. Keeping it took 5 % off the
    server's CPU per order and 6 % off its latency at one client, paired against giving it
    back (docs/BENCHMARKS.md, "A request thread keeps its connection"). Other threads (the
    consumers', the publisher's, the scheduler's) give theirs back as before."""
    if keeps_connections() and getattr(connection, "pool", None) is not None:
        connection.close_at = None
        connection.kept_since_failures = unavailable.failures_seen


def keeps_connections() -> bool:
    """Whether this thread keeps its database connection between requests (a worker
    thread's): while it waits for something else, its connection is one the pool counts
    as taken anyway."""
    return getattr(_worker, "keeps_connection", False)


def check_kept_connections(**kwargs):
    """At a request's start on a worker thread (`request_started`): a connection it kept
    since the process last saw the database fail is tested first, and given back if it
    died. The failure ended its own request with a 503 (quantumtrades/core/unavailable.py),
    and its thread gave its broken connection back; the other threads' connections may have
    died with it, and each would otherwise cost its next request a 503 too."""
    if not keeps_connections():
        return
    for connection in connections.all(initialized_only=True):
        kept = getattr(connection, "kept_since_failures", None)
        if kept is None or kept == unavailable.failures_seen or connection.connection is None:
            continue
        if connection.is_usable():
            connection.kept_since_failures = unavailable.failures_seen
        else:
            connection.close()


def _on_worker(loop, function, *args):
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    return function(*args)


def body_too_large(path: str) -> HttpResponse:
    """413: the API's error shape under /api/, a line of text elsewhere."""
    message = f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    if path.startswith("/api/"):
        return JsonResponse(error_body(ErrorCode.PAYLOAD_TOO_LARGE, message), status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


def give_back_kept_connections() -> None:
    """Every handler's worker threads give back the connections they keep: for a process
    about to drop its database (the test suite, after each test)."""
    for handler in list(_handlers):
        handler.give_back_connections()


class SyncASGIHandler(ASGIHandler):
    def __init__(self, *, threads: int):
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = threads
        _handlers.add(self)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="request", initializer=_worker_started)
        connection_created.connect(keep_connection, dispatch_uid="quantumtrades.core.handlers.keep_connection")
        signals.request_started.connect(
            check_kept_connections, dispatch_uid="quantumtrades.core.handlers.check_kept_connections"
        )
        self.slots = asyncio.Semaphore(threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive, scope)
        except RequestAborted:
            return
        except BodyTooLarge:
            response = body_too_large(scope["path"])
            response[REQUEST_ID_HEADER] = request_id_of_scope(scope)
            await self.send_response(response, send)
            return
        # Waiting for a slot here rather than in the executor's queue keeps the order in
        # which requests arrived and lets a request whose client went away drop out.
        async with self.slots:
            response = await self.in_worker(self.respond, scope, body_file)
        await self.send_response(response, send)
        if response.streaming:
            await self.in_worker(response.close)

    def give_back_connections(self) -> None:
        """Each worker thread gives back the database connections it keeps. One call per
        thread, all at once: each waits for the others, so each runs on a thread of its own."""
        together = threading.Barrier(self.threads)

        def give_back():
            together.wait(timeout=10)
            connections.close_all()

        for done in [self.executor.submit(give_back) for _ in range(self.threads)]:
            done.result(timeout=10)

    async def in_worker(self, function, *args):
        """`function(*args)` on a worker thread, in a copy of this task's context.

        asgiref's SyncToAsync does this and more that a whole request does not need (a
        wrapper built per call, the context copied back after it): 5.6 % of a process's CPU
        under sixteen clients' orders (docs/BENCHMARKS.md, "Order entry near the database's
        ceiling"). What it sets on the thread is set here too, so that `async_to_sync`
        inside a view (the async views, `healthz`) runs its coroutine on this event loop."""
        loop = asyncio.get_running_loop()
        call = functools.partial(_on_worker, loop, function, *args)
        return await loop.run_in_executor(self.executor, contextvars.copy_context().run, call)

    async def read_body(self, receive, scope=None):
        """Django's `read_body`, refusing a body past the limit: by its Content-Length at
        once, or as soon as a body sent without one passes it."""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = dict((scope or {}).get("headers", ())).get(b"content-length", b"")
        if limit is not None and length.isdigit() and int(length) > limit:
            raise BodyTooLarge()
        # Closed with the response (`respond`), as Django's own read_body leaves it.
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")  # noqa: SIM115
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                body_file.close()
                raise BodyTooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    def respond(self, scope, body_file):
        """The request, start to finish, in a worker thread: what WSGIHandler.__call__ does."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._resource_closers.append(body_file.close)
        if not response.streaming:
            # Sends request_finished, whose receivers give a database connection back that
            # failed or that this thread does not keep (`keep_connection`).
            response.close()
        return response
