from django.urls import path

import marketdata.converters  # noqa: F401  (registers <symbol:...>)

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("markets/<symbol:symbol>/", views.market_page, name="market"),
    path("markets/<symbol:symbol>/ticket/", views.ticket_submit, name="ticket_submit"),
    path("markets/<symbol:symbol>/ticket/preview/", views.ticket_preview, name="ticket_preview"),
    path("orders/<int:order_id>/cancel/", views.cancel, name="order_cancel"),
    path("orders/<int:order_id>/amend/", views.amend, name="order_amend"),
    path("orders/lists/<int:list_id>/cancel/", views.list_cancel, name="order_list_cancel"),
    path("portfolio/", views.portfolio, name="portfolio"),
    path("portfolio/ledger.csv", views.ledger_csv, name="ledger_csv"),
]
