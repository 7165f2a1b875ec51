"""The REST API's URL table (docs/API.md), mounted at /api/.

Paths have no trailing slash, as in the design; anything else under /api/ answers 404
in the API's error shape (the last route).
"""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import api as accounts_api
from marketdata import api as marketdata_api
from orders import api as orders_api
from orders import operators_api
from quantumtrades.core.api import api_not_found

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI under the site's Content-Security-Policy: the split view serves its start-up
    # script as a file of its own (?script), so no inline script is needed; its page keeps
    # one inline <style> of drf-spectacular's template, allowed on this page only (a
    # developer page with no user content on it). GET only: DRF's OPTIONS answer would be
    # rendered through the page's template renderer, which has no template for it (a 500).
    path(
        "docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", http_method_names=["get", "head"])
        ),
        name="api-docs",
    ),
    # Accounts
    path("auth/register", accounts_api.RegisterView.as_view(), name="api-register"),
    path("auth/login", accounts_api.LoginView.as_view(), name="api-login"),
    path("auth/refresh", accounts_api.RefreshView.as_view(), name="api-refresh"),
    path("auth/logout", accounts_api.LogoutView.as_view(), name="api-logout"),
    path("auth/me", accounts_api.MeView.as_view(), name="api-me"),
    path("keys", accounts_api.ApiKeysView.as_view(), name="api-keys"),
    path("keys/<int:key_id>", accounts_api.ApiKeyView.as_view(), name="api-key"),
    path("user/balances", accounts_api.BalancesView.as_view(), name="api-balances"),
    path("user/transactions", accounts_api.TransactionsView.as_view(), name="api-transactions"),
    path("user/balance", accounts_api.BalanceAdjustView.as_view(), name="api-balance-adjust"),
    # Market data
    path("markets", marketdata_api.MarketsView.as_view(), name="api-markets"),
    path("markets/<str:symbol>", marketdata_api.MarketView.as_view(), name="api-market"),
    path("markets/<str:symbol>/trades", marketdata_api.MarketTradesView.as_view(), name="api-market-trades"),
    path("markets/<str:symbol>/candles", marketdata_api.MarketCandlesView.as_view(), name="api-market-candles"),
    path("book/snapshot", marketdata_api.BookSnapshotView.as_view(), name="api-book-snapshot"),
    # Orders
    path("orders", orders_api.OrdersView.as_view(), name="api-orders"),
    path("orders/open", orders_api.OpenOrdersView.as_view(), name="api-orders-open"),
    path("orders/cancel-after", orders_api.CancelAfterView.as_view(), name="api-orders-cancel-after"),
    path("orders/oco", orders_api.OcoView.as_view(), name="api-orders-oco"),
    path("orders/bracket", orders_api.BracketView.as_view(), name="api-orders-bracket"),
    path("orders/lists/<int:list_id>", orders_api.OrderListView.as_view(), name="api-order-list"),
    path("orders/<int:order_id>", orders_api.OrderView.as_view(), name="api-order"),
    path("trades/history", orders_api.FillsView.as_view(), name="api-fills"),
    # Operators
    path("admin/users/<str:username>/trading", operators_api.UserTradingView.as_view(), name="api-user-trading"),
    re_path(r"^", api_not_found),
]
