"""Usernames that cannot pass for one another: one script per name (accounts.usernames)."""

import pytest
from django.core.exceptions import ValidationError

from accounts.usernames import UsernameValidator, letter_script

CYRILLIC_A = "\u0430"  # looks like the Latin "a"
GREEK_ALPHA = "\u03b1"


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Zoë_42",
        "bob.smith+trading@example",
        "алиса",  # Cyrillic only
        "ελένη",  # Greek only
        "たなか_タナカ_田中",  # Japanese: Hiragana, Katakana and Han
        "Tanaka田中",  # with Latin, as Unicode's highly restrictive profile allows
        "김민준",
        "张伟2026",
    ],
)
def test_names_in_one_script_are_accepted(name):
    UsernameValidator()(name)


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        (f"{CYRILLIC_A}lice", "Cyrillic and Latin"),
        (f"p{CYRILLIC_A}yp{CYRILLIC_A}l", "Cyrillic and Latin"),
        (f"{GREEK_ALPHA}lice", "Greek and Latin"),
        ("алиса_bob", "Cyrillic and Latin"),
        ("ελένη_алиса", "Cyrillic and Greek"),
    ],
)
def test_names_mixing_scripts_are_refused(name, scripts):
    with pytest.raises(ValidationError) as refused:
        UsernameValidator()(name)

    assert refused.value.code == "mixed_scripts"
    assert refused.value.message == f"Use letters of one script: this name mixes {scripts} letters."


def test_digits_and_punctuation_belong_to_no_script():
    assert {letter_script(char) for char in "0123456789_.@+-"} == {None}
    assert letter_script("a") == "LATIN" and letter_script(CYRILLIC_A) == "CYRILLIC"
