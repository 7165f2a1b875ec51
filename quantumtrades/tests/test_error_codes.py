"""One list of error codes (quantumtrades.core.errors.ErrorCode), and docs/API.md says it all.

Every code the platform can answer with is a member of ErrorCode and is documented in
docs/API.md, either in the REST table of "Errors" or in the socket's own list ("Socket
error codes"); nothing is documented that the code does not know, and no member is dead.
"""

import re
from pathlib import Path

from quantumtrades.core.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"`([A-Z][A-Z0-9_]{2,})`")


def documented_codes() -> set[str]:
    guide = (ROOT / "docs" / "API.md").read_text()
    errors = guide[guide.index("## 5. Errors") : guide.index("## 6. Rate limits")]
    table = "\n".join(line for line in errors.splitlines() if line.startswith(("| 4", "| 5")))
    sockets = guide[guide.index("Socket error codes:") :]
    sockets = sockets[: sockets.index("\n\n")]
    return set(CODE.findall(table)) | set(CODE.findall(sockets))


def test_every_code_is_documented_and_every_documented_code_exists():
    codes = {code.value for code in ErrorCode}
    documented = documented_codes()

    assert sorted(codes - documented) == [], "codes docs/API.md does not list"
    assert sorted(documented - codes) == [], "codes docs/API.md lists that ErrorCode does not have"


def test_every_code_is_used_by_the_code():
    sources = "\n".join(
        path.read_text()
        for top in ("accounts", "marketdata", "orders", "quantumtrades")
        for path in (ROOT / top).rglob("*.py")
        if "tests" not in path.parts
    )
    unused = [code.name for code in ErrorCode if f"ErrorCode.{code.name}" not in sources]
    assert unused == []
