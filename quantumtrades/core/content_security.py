"""django-csp's middleware, with one fixed policy for the API's JSON answers.

The site's policy (settings.CONTENT_SECURITY_POLICY) is for documents: where scripts,
styles, images and sockets may come from. A JSON answer is data, nothing in it loads or
runs, so the policy it needs is the one that allows nothing, as OWASP's REST security
cheat sheet recommends: `default-src 'none'; frame-ancestors 'none'`. django-csp builds its
policy anew for every response (a page may carry a nonce); for an API request that was
80 µs of its CPU, the largest share of any middleware (docs/BENCHMARKS.md, "The API's
middleware"). JSON answers get the fixed string instead.
"""

from csp.constants import HEADER
from csp.middleware import CSPMiddleware as SitePolicyMiddleware

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


class CSPMiddleware(SitePolicyMiddleware):
    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith("application/json"):
            if HEADER not in response:
                response[HEADER] = JSON_POLICY
            return response
        return super().process_response(request, response)
