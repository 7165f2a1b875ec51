"""OpenAPI details for drf-spectacular: the schema class and a post-processing hook.

Apart from quantumtrades.core.api because REST_FRAMEWORK names both, and drf-spectacular's
AutoSchema reads REST_FRAMEWORK while it is imported.
"""

from drf_spectacular.openapi import AutoSchema


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema, knowing that only GET answers a page (DELETE /api/orders
    shares its view with the paginated GET but answers a plain list)."""

    def _get_paginator(self):
        return super()._get_paginator() if self.method == "GET" else None


def schema_strict_requests(result, generator, request, public):
    """Say in the schema what StrictSerializer does: request bodies take no other fields."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
