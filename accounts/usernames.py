"""Usernames that cannot pass for one another.

A username is what other traders see and what a person types to log in, so two accounts
must never look alike. Three rules, applied at every door (the register page, the API,
the admin, `create_user`):

- NFKC normalisation (Django's `AbstractBaseUser.normalize_username`): a full-width "ａｌｉｃｅ"
  or a ligature is stored as the plain letters it stands for;
- uniqueness whatever the case: a database constraint on `LOWER(username)`
  (accounts.User), and logins find the name in any case (`UserManager.get_by_natural_key`);
- one script per name: Latin letters with Cyrillic or Greek ones ("аlice", whose first
  letter is Cyrillic) are refused. A letter's script is the first word of its Unicode
  name ("LATIN SMALL LETTER A", "CYRILLIC SMALL LETTER A"); digits, "_" and the allowed
  punctuation @ . + - belong to no script. As Unicode's "highly restrictive" profile
  (UTS #39, section 5.2) allows, Japanese mixes Han, Hiragana and Katakana, Chinese Han
  and Bopomofo, Korean Han and Hangul, each also with Latin.

A name written wholly in another script that happens to look Latin (all-Cyrillic "аре")
is not caught by these rules: that needs Unicode's confusables table, which Python does
not ship.
"""

import unicodedata

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# Sets of scripts that one name may mix (besides any single script).
MIXES_ALLOWED = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Unicode names whose first word is not the script's own.
SCRIPT_OF_NAME = {"CJK": "HAN", "KATAKANA-HIRAGANA": "KATAKANA", "HALFWIDTH": None, "FULLWIDTH": None}


def username_normalise(name: str) -> str:
    """NFKC, as Django stores every username (AbstractBaseUser.normalize_username)."""
    return unicodedata.normalize("NFKC", name) if isinstance(name, str) else name


def letter_script(char: str) -> str | None:
    """The script of a letter (LATIN, CYRILLIC, GREEK, HAN, ...); None for anything else."""
    if not unicodedata.category(char).startswith("L"):
        return None
    words = unicodedata.name(char, "").split()
    if not words:
        return "UNKNOWN"
    script = SCRIPT_OF_NAME.get(words[0], words[0])
    if script is None:  # "HALFWIDTH KATAKANA LETTER A": the script is the next word
        script = words[1] if len(words) > 1 else "UNKNOWN"
    return script


def username_scripts(name: str) -> set[str]:
    return {script for script in map(letter_script, name) if script is not None}


def scripts_mixed(name: str) -> bool:
    scripts = username_scripts(name)
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in MIXES_ALLOWED)


@deconstructible
class UsernameValidator(UnicodeUsernameValidator):
    """Django's letters, digits and @ . + - _, and letters of one script."""

    message = "Enter a username of letters, digits and @ . + - _ only."

    def __call__(self, value):
        super().__call__(value)
        value = username_normalise(value)
        if scripts_mixed(value):
            scripts = " and ".join(sorted(script.title() for script in username_scripts(value)))
            raise ValidationError(
                f"Use letters of one script: this name mixes {scripts} letters.", code="mixed_scripts"
            )
