"""The `<symbol:...>` path converter: a page path with anything but a market symbol in it
answers 404 at the router, before a view or the database sees it (PostgreSQL refuses a NUL
byte in a query, which was a 500)."""

from django.urls import register_converter

from .models import SYMBOL_FORMAT


class SymbolConverter:
    regex = SYMBOL_FORMAT

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SymbolConverter, "symbol")
