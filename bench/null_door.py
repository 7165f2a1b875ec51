"""The neutral load tool's floor: a server that answers its requests and does nothing else.

    .venv/bin/uvicorn --port 8090 --loop uvloop --http httptools --lifespan off --no-access-log \
        --app-dir bench null_door:app
    python orderload.py --target quantumtrades --base-url http://127.0.0.1:8090 --symbol QTX-USD \
        --concurrency 1 --seconds 15 --cpu-pid server=<uvicorn pid>

A bare ASGI application under the production server's own flags (docker-compose.yml): it reads
each body and parses it as JSON, as any server must, and answers `orderload.py`'s
registration, login and `POST /api/orders` with a 201 and an answer as long as the API's,
without Django, a database or a market. What `orderload.py` measures against it is what the
tool itself, the loopback and the ASGI server take; no server that places orders can answer
faster. docs/BENCHMARKS.md ("The targets against the load tool's floor") adds the engine's own
time to it.
"""

import json

# orderload.py reads only an answer's status. The order's answer is as long as the API's
# answer to a resting order (625 bytes, `{"order": ..., "fills": []}`), so that the tool reads
# as much; its fields are not the API's and nothing should read them.
_ORDER = b'{"order": {"id": 1, "padding": "' + b"x" * 577 + b'"}, "fills": []}'
_ANSWERS = {
    "/api/auth/register": b'{"id": 1}',
    "/api/auth/login": b'{"access": "null-door", "refresh": "null-door"}',
    "/api/orders": _ORDER,
}
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if body:
        json.loads(body)
    answer = _ANSWERS.get(scope["path"])
    status = 201 if answer is not None and scope["method"] == "POST" else 404
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": answer or b"{}"})
