"""The ground floor: what every app builds on, importing no app and none of the wiring.

- `money`: Decimal precision, rounding and the model fields for amounts and rates.
- `errors`: the service layer's exceptions, each with the API error code it maps to.
- `events`: the in-process event bus; events are published only after commit.
- `sql`: hand-built multi-row statements for the engine's hot path.
- `api`: the REST toolkit (error shape, throttles, field types); `api_schema` for OpenAPI;
  `pagination` for keyset pages.
- `cache`: the Redis cache that falls back to local memory while Redis is down.
- `unavailable`: a lost database answered with 503 instead of 500.
- `handlers`, `websocket`: the ASGI request handler and the WebSocket origin check.

The apps (accounts <- marketdata <- orders) import from here; the wiring around it
(`quantumtrades.settings`, `urls`, `asgi`, `routing`, `views`) is the only code that
imports every app. `quantumtrades/tests/test_layers.py` keeps it so.
"""
