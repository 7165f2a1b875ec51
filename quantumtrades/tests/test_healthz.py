"""GET /healthz: the state of the database and the channel layer, for load balancers and compose."""

import pytest
from channels.layers import channel_layers
from django.test import override_settings

# Nothing listens on port 1: connecting is refused at once.
DEAD_REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
    }
}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_channel_layers():
    # Channels builds each layer once per process; drop it so each test gets the configured one.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_healthz_answers_ok_when_database_and_channel_layer_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "sockets": 0,
        **({"cache": "ok"} if "cache" in body else {}),
    }


@override_settings(CHANNEL_LAYERS=DEAD_REDIS_LAYER)
def test_healthz_answers_503_naming_the_channel_layer_when_it_is_down(client):
    channel_layers.backends.clear()

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error")


@override_settings(
    CACHES={"default": {"BACKEND": "quantumtrades.core.cache.ResilientRedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
)
def test_healthz_answers_503_naming_the_cache_when_its_redis_is_down(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["cache"].startswith("error") and body["database"] == "ok"
