from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("quantumtrades.api_urls")),
    path("accounts/", include("accounts.urls")),
    path("", include("orders.urls")),
]

handler500 = "quantumtrades.views.server_error"
