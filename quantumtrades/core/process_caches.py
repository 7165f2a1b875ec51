"""What a process remembers of the database between requests, in one register.

Each module that keeps such a copy (users and tokens, API keys' last writes, markets, the
fee account's id) makes it a `ProcessCache`, which registers itself here by name. One call,
`forget_all()`, then empties every one of them: the test suite does it before each test
(SQLite hands a rolled-back test's ids out again, so a copy could name another row), and
docs/ARCHITECTURE.md ("What each process remembers") lists them with how long each entry
lives and why that is safe.

A ProcessCache is a plain dict to its module: lookups cost what a dict's do.
"""

_registry: list["ProcessCache"] = []


class ProcessCache(dict):
    __slots__ = ("name",)

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        _registry.append(self)


def registered() -> list[str]:
    return [cache.name for cache in _registry]


def forget_all() -> None:
    for cache in _registry:
        cache.clear()
