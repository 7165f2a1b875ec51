from django.contrib import admin
from django.urls import path

from orders import views as order_views

from . import views

urlpatterns = [
    path("", order_views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
