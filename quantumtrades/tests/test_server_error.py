"""An unexpected failure still answers in the shape its caller understands."""

import json

from django.test import RequestFactory

from quantumtrades.views import server_error


def test_an_api_path_gets_the_error_shape():
    response = server_error(RequestFactory().get("/api/orders"))

    assert response.status_code == 500
    assert json.loads(response.content) == {
        "error": {"code": "INTERNAL_ERROR", "message": "Something went wrong on our side.", "field": None}
    }


def test_a_page_gets_djangos_error_page():
    response = server_error(RequestFactory().get("/portfolio/"))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
