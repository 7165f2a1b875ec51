"""What a process remembers of the database is registered in one place, and forgotten at once."""

from quantumtrades.core import process_caches
from quantumtrades.core.process_caches import ProcessCache


def test_every_copy_of_the_database_a_process_keeps_is_registered():
    import accounts.authentication
    import accounts.keys  # noqa: F401
    import orders.engine.caches  # noqa: F401

    assert {
        "users authenticated lately, with their ended API logins",
        "access tokens validated lately",
        "API keys' last-used writes",
        "markets by symbol",
        "the fee account's id, per database",
    } <= set(process_caches.registered())


def test_forget_all_empties_every_registered_cache():
    first, second = ProcessCache("a test's first"), ProcessCache("a test's second")
    first["a"], second["b"] = 1, 2

    process_caches.forget_all()

    assert first == {} and second == {}
    process_caches._registry.remove(first)
    process_caches._registry.remove(second)
