"""What the server process (quantumtrades.asgi) changes in the libraries under it, and how
its HTTP handler runs a view."""

import asyncio
import contextvars
import json
import threading

from asgiref.testing import ApplicationCommunicator
from django.http import JsonResponse
from django.urls import path
from twisted.web import http as twisted_http

import quantumtrades.asgi  # (the server's module: it applies what is tested here)


def test_twisted_remembers_content_types_and_parses_them_as_before():
    parse = twisted_http._parseContentType
    email_parse = parse.__wrapped__  # Twisted's own, through the email package
    lines = [
        b"application/json",
        b"Application/JSON; charset=UTF-8",
        b"application/x-www-form-urlencoded",
        b'multipart/form-data; boundary="----x"',
        b"text/plain;charset=latin-1",
        b"nonsense",
        b"",
    ]
    parse.cache_clear()

    first = [parse(line) for line in lines]
    again = [parse(line) for line in lines]

    assert first == again == [email_parse(line) for line in lines]
    assert first[:3] == [b"application/json", b"application/json", b"application/x-www-form-urlencoded"]
    assert parse.cache_info().hits == len(lines) and parse.cache_info().currsize == len(lines)


def test_the_remembered_content_types_are_bounded():
    parse = twisted_http._parseContentType
    parse.cache_clear()

    for index in range(5000):
        parse(b"application/x-%d" % index)  # a client may send any number of different ones

    assert parse.cache_info().currsize <= parse.cache_info().maxsize < 5000


# --- The HTTP handler (quantumtrades/core/handlers.py) -----------------------------------

seen = {}
caller = contextvars.ContextVar("caller", default=None)


async def async_view(request):
    seen["async"] = (asyncio.get_running_loop(), caller.get())
    return JsonResponse({"view": "async"})


def sync_view(request):
    seen["sync"] = (threading.current_thread().name, caller.get())
    return JsonResponse({"view": "sync"})


urlpatterns = [path("async", async_view), path("sync", sync_view)]


def get(path: str) -> tuple[int, dict, asyncio.AbstractEventLoop]:
    """(status, JSON body, the caller's event loop) of a GET sent straight to the handler."""

    async def app_in_a_context(scope, receive, send):
        # What an ASGI middleware of the server's might set for the request's task.
        caller.set("the request's task")
        await quantumtrades.asgi.django_asgi_app(scope, receive, send)

    async def exchange():
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        app = ApplicationCommunicator(app_in_a_context, scope)
        await app.send_input({"type": "http.request", "body": b""})
        start = await app.receive_output(10)
        body = await app.receive_output(10)
        await app.wait(10)
        return start["status"], json.loads(body["body"]), asyncio.get_running_loop()

    return asyncio.run(exchange())


def test_a_sync_view_runs_on_a_request_thread_in_the_requests_context(settings):
    settings.ROOT_URLCONF = __name__

    status, body, _ = get("/sync")

    assert (status, body) == (200, {"view": "sync"})
    thread, context = seen["sync"]
    assert thread.startswith("request") and context == "the request's task"


def test_an_async_view_runs_on_the_servers_event_loop(settings):
    # As under asgiref's SyncToAsync: async_to_sync in the request thread finds the loop.
    settings.ROOT_URLCONF = __name__

    status, body, loop = get("/async")

    assert (status, body) == (200, {"view": "async"})
    assert seen["async"] == (loop, "the request's task")
