"""The project's floors, read from the import lines of every module.

    quantumtrades.core       the ground floor: imports no app and no wiring
    accounts <- marketdata <- orders
                             each app imports the ground floor and the apps below it
    quantumtrades (the rest) the wiring: settings, urls, asgi, routing, views; the only
                             code that imports every app

An app's tests, migrations and management commands are the app: a test that needs a
higher app lives in `tests/` (or in the higher app). Importing a module of `tests/` counts
as importing everything that module imports, transitively. Every import counts, including
those inside functions, so the shape cannot drift back through a lazy import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("accounts", "marketdata", "orders", "quantumtrades")
SUPPORT = "tests"  # the whole-stack tests and their support modules
CORE = "quantumtrades.core"
WIRING = "quantumtrades"
APPS = ("accounts", "marketdata", "orders")  # lowest first


def floor_of(module: str) -> str | None:
    """The floor a dotted module name stands on, or None for one outside the project."""
    if module == CORE or module.startswith(CORE + "."):
        return CORE
    top = module.split(".")[0]
    return top if top in PROJECT else None


def allowed(importer: str) -> set[str]:
    if importer == CORE:
        return {CORE}
    if importer == WIRING:
        return {CORE, WIRING, *APPS}
    return {CORE, *APPS[: APPS.index(importer) + 1]}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, source: str):
    """(line, dotted name) of every import in a module's source, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from x import y` may import the module x.y (`from quantumtrades import core`):
            # judge each name as a module; its floor is x's floor otherwise.
            for alias in node.names:
                yield node.lineno, f"{prefix}.{alias.name}"


def project_modules():
    for top in PROJECT:
        yield from sorted((ROOT / top).rglob("*.py"))


def support_module(target: str, names) -> str:
    """`tests.api_support.client_for` -> `tests.api_support`: the module an import reads."""
    return target if target in names else target.rpartition(".")[0]


def support_floors() -> dict[str, set[str]]:
    """For each module of `tests/`: the floors it reaches, through other support modules too."""
    imports = {
        module_name(path): [target for _, target in imported_modules(path, path.read_text())]
        for path in sorted((ROOT / SUPPORT).rglob("*.py"))
    }
    reach = {name: {floor_of(target) for target in targets} - {None} for name, targets in imports.items()}
    uses = {
        name: {support_module(target, imports) for target in targets if target.split(".")[0] == SUPPORT}
        for name, targets in imports.items()
    }
    changed = True
    while changed:
        changed = False
        for name, used in uses.items():
            for other in used:
                extra = reach.get(other, set()) - reach[name]
                if extra:
                    reach[name] |= extra
                    changed = True
    return reach


def test_every_import_follows_the_floors():
    support = support_floors()
    wrong = []
    for path in project_modules():
        importer = floor_of(module_name(path))
        for line, target in imported_modules(path, path.read_text()):
            if target.split(".")[0] == SUPPORT:
                floors = support.get(support_module(target, support), set())
            else:
                floors = {floor_of(target)} - {None}
            for floor in sorted(floors):
                if floor not in allowed(importer):
                    wrong.append(
                        f"{path.relative_to(ROOT)}:{line} imports {target} ({importer} may not import {floor})"
                    )
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("from orders.services import order_place\n", "marketdata/x.py", "orders"),
        ("from ..streams import hub\n", "marketdata/tests/x.py", None),
        ("from quantumtrades import settings\n", "accounts/x.py", "quantumtrades"),
        ("from quantumtrades.core import sql\n", "accounts/x.py", None),
        ("def f():\n    import marketdata.models\n", "quantumtrades/core/x.py", "marketdata"),
        ("from quantumtrades.core.money import money\n", "quantumtrades/core/api.py", None),
        ("from accounts.models import User\n", "quantumtrades/urls_x.py", None),
    ],
)
def test_the_rule_sees_an_arrow_against_it(source, where, expected):
    """The checker itself: a wrong arrow is found (lazy and relative imports too), a right one is not."""
    path = ROOT / where
    importer = floor_of(module_name(path))
    floors = {floor_of(target) for _, target in imported_modules(path, source)} - {None}
    found = sorted(floor for floor in floors if floor not in allowed(importer))
    assert found == ([expected] if expected else [])


def test_a_support_module_carries_what_it_imports():
    """`tests.api_support` builds orders, so an accounts test that imports it reaches orders."""
    floors = support_floors()
    assert {"accounts", "orders"} <= floors["tests.api_support"]
    assert "orders" not in allowed("accounts")
