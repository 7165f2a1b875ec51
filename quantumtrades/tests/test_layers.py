"""The floors of the house where import-linter cannot see them.

`lint-imports` (the layers contract in pyproject.toml, run by CI and `make lint`) checks
every import, chains through `tests/` included. What it cannot see is a higher app reached
by name rather than by import: `apps.get_model("orders", "Order")`, `import_string(...)`,
a model field pointing at "orders.Order", or a template of a lower app that extends or
includes one of a higher app. Those are checked here, from the source.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "marketdata", "orders", "fix")  # lowest first
CORE = "quantumtrades/core"
# Calls whose first text argument names an app (label, dotted path or "app.Model").
BY_NAME = {"get_model", "import_string", "import_module", "ForeignKey", "OneToOneField", "ManyToManyField"}
TEMPLATE_TAG = re.compile(r"""{%\s*(?:extends|include)\s+["']([a-z_]+)/""")


def floor_of(path: Path) -> int | None:
    """0 for the ground floor, 1.. for the apps (lowest first), None for the wiring."""
    relative = path.relative_to(ROOT).as_posix()
    if relative.startswith(CORE + "/"):
        return 0
    top = relative.split("/")[0]
    if top == "templates":
        top = relative.split("/")[1]
    return APPS.index(top) + 1 if top in APPS else None


def named_apps(source: str):
    """(line, app) of every app a module names in a call that reaches it by name."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name not in BY_NAME or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            app = re.split(r"[./]", first.value)[0]
            if app in APPS:
                yield node.lineno, app


def wrong_references(path: Path, source: str) -> list[str]:
    floor = floor_of(path)
    if floor is None:
        return []
    found = named_apps(source) if path.suffix == ".py" else _template_apps(source)
    return [
        f"{path.relative_to(ROOT)}:{line} reaches {app}"
        for line, app in found
        if APPS.index(app) + 1 > floor and path.parent.name != "migrations"
    ]


def _template_apps(source: str):
    for number, line in enumerate(source.splitlines(), 1):
        for app in TEMPLATE_TAG.findall(line):
            if app in APPS:
                yield number, app


def test_no_lower_floor_reaches_a_higher_app_by_name():
    paths = [*(p for top in (*APPS, CORE) for p in sorted((ROOT / top).rglob("*.py")))]
    paths += sorted((ROOT / "templates").rglob("*.html"))
    wrong = [reference for path in paths for reference in wrong_references(path, path.read_text())]
    assert not wrong, "lower floors reaching higher apps by name:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("accounts/tests/x.py", 'Order = apps.get_model("orders", "Order")\n', ["orders"]),
        ("marketdata/x.py", 'f = import_string("orders.services.order_place")\n', ["orders"]),
        ("accounts/models.py", 'm = models.ForeignKey("marketdata.Market", on_delete=None)\n', ["marketdata"]),
        ("quantumtrades/core/x.py", 'apps.get_model("accounts", "User")\n', ["accounts"]),
        ("orders/x.py", 'apps.get_model("marketdata", "Market")\n', []),
        ("quantumtrades/urls.py", 'import_module("orders.urls")\n', []),
        ("templates/marketdata/x.html", '{% include "orders/private.html" %}\n', ["orders"]),
        ("templates/orders/x.html", '{% extends "marketdata/fragments.html" %}\n', []),
    ],
)
def test_the_check_sees_a_reference_against_the_floors(where, source, expected):
    """The checker itself: a higher app named from below is found; downward names are not."""
    found = [reference.rsplit(" ", 1)[1] for reference in wrong_references(ROOT / where, source)]
    assert found == expected
