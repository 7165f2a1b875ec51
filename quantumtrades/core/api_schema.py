"""OpenAPI details for drf-spectacular: the schema class and a post-processing hook.

Apart from quantumtrades.core.api because REST_FRAMEWORK names both, and drf-spectacular's
AutoSchema reads REST_FRAMEWORK while it is imported.
"""

from drf_spectacular.openapi import AutoSchema


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema, knowing that only GET answers a page (DELETE /api/orders
    shares its view with the paginated GET but answers a plain list), and that a DELETE may
    have a body."""

    def _get_paginator(self):
        return super()._get_paginator() if self.method == "GET" else None

    def _get_request_body(self, direction="request"):
        # drf-spectacular gives only POST, PUT and PATCH a body; a view with `delete_body`
        # takes one with DELETE too (DELETE /api/orders/batch).
        if self.method != "DELETE" or not getattr(self.view, "delete_body", False):
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


# Request bodies that must name at least one of their fields (an amendment changes something).
AT_LEAST_ONE_FIELD = {"PatchedOrderAmendInputRequest"}
# Answers any operation can give, whatever its input: a body past the server's limit is
# refused before routing (quantumtrades.core.handlers), an Accept the API cannot answer.
EVERY_OPERATION = {
    "406": "The Accept header asks for something other than application/json.",
    "413": "The request body is larger than the server takes.",
}
RESPONSE_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": "How to authenticate: Bearer (an access token) or Api-Key.",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    },
    "429": {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


# Every answer a throttle counted (quantumtrades.core.throttles.RateLimitHeaders): not those refused
# before counting, so none is required.
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests the tightest limit that applies allows per window.",
    "X-RateLimit-Remaining": "What is left of it in this window.",
    "X-RateLimit-Reset": "Seconds until the window starts again.",
}


def schema_strict_requests(result, generator, request, public):
    """Say in the schema what the API does: request bodies take no other fields (StrictSerializer)
    and an amendment names at least one; every operation may answer 406 and 413; a 401 says
    how to authenticate and a 429 when to retry, in their headers; answers may carry the
    rate-limit headers."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
        if name in AT_LEAST_ONE_FIELD:
            component["minProperties"] = 1
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] in AT_LEAST_ONE_FIELD:
                operation["requestBody"]["required"] = True
            responses = operation.setdefault("responses", {})
            for status, description in EVERY_OPERATION.items():
                responses.setdefault(status, {"content": error, "description": description})
            for status, response in responses.items():
                response["headers"] = {
                    **{
                        name: {"description": description, "schema": {"type": "integer", "minimum": 0}}
                        for name, description in RATE_LIMIT_HEADERS.items()
                    },
                    **RESPONSE_HEADERS.get(status, {}),
                }
    return result
