"""Persona and platform ids: one rule each, checked wherever an id comes in.

Ids become file and directory names (a persona's sealed profile, its lock,
a platform's profile file) and keyring entry names, so anything path-like is
refused before it reaches any of them.
"""

from __future__ import annotations

import re
from typing import Final

from outreach_station.errors import UsageError

# Lower-case base32 without padding: safe in file names, unambiguous to read aloud.
PERSONA_ID_RE: Final = re.compile(r"^[a-z2-7]{12}$")
_PERSONA_ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
PLATFORM_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def new_persona_id() -> str:
    """A fresh random persona id (60 bits)."""
    import secrets  # not at import time: the CLI imports this module for `--help` too

    return "".join(secrets.choice(_PERSONA_ID_ALPHABET) for _ in range(12))


def is_persona_id(text: str) -> bool:
    return PERSONA_ID_RE.fullmatch(text) is not None


def validate_persona_id(persona_id: str) -> str:
    """Refuse anything that is not exactly a persona id (path-like ids included)."""
    if not is_persona_id(persona_id):
        from outreach_station.i18n import _  # here: `station --help` loads this module

        raise UsageError(
            _(
                "malformed persona id {id}: expected 12 characters a-z and 2-7, "
                "as printed by 'station persona list'"
            ).format(id=repr(persona_id))
        )
    return persona_id


def is_platform_id(text: str) -> bool:
    return PLATFORM_ID_RE.fullmatch(text) is not None


def validate_platform_id(platform_id: str) -> str:
    """Refuse anything that is not a platform id (lower-case letters, digits and '-')."""
    if not is_platform_id(platform_id):
        from outreach_station.i18n import _

        raise UsageError(
            _("malformed platform id '{id}': use lower-case letters, digits and '-'").format(
                id=platform_id
            )
        )
    return platform_id


def platform_id(text: str) -> str:
    """A platform id as typed, any case (`Example-Classifieds`), in its one stored form."""
    lowered = text.lower() if text.isascii() else text
    if not is_platform_id(lowered):
        from outreach_station.i18n import _

        raise UsageError(
            _(
                "malformed platform id '{id}': use letters, digits and '-', "
                "as listed by 'station platforms'"
            ).format(id=text)
        )
    return lowered


def persona_reference(text: str) -> str:
    """Refuse what cannot name a persona: an id, the start of one, or a label (any case).

    Anything path-like is refused here too, before any lookup: a reference is
    only ever compared with stored ids and labels, but one rule at the edge
    keeps '../x' from reaching anything that opens.
    """
    from outreach_station.values import MAX_LABEL_LENGTH, text_problem

    if (
        not text
        or text_problem(text) is not None
        or len(text) > MAX_LABEL_LENGTH
        or text.startswith(".")
        or any(c in text for c in "/\\%")
    ):
        from outreach_station.i18n import _

        raise UsageError(
            _(
                "malformed persona {text}: give its id, the first letters of it, or its label, "
                "as printed by 'station persona list'"
            ).format(text=repr(text))
        )
    return text
