from django.shortcuts import render

from marketdata.models import Market


def home(request):
    return render(request, "home.html", {"markets": Market.objects.all()})
