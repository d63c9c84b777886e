"""Persona and platform ids: one rule each, checked at the edge before anything is opened."""

from __future__ import annotations

import re

from outreach_station.errors import UsageError

# Lower-case base32 without padding: safe in file names, unambiguous to read aloud.
PERSONA_ID_RE = re.compile(r"^[a-z2-7]{12}$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def new_persona_id() -> str:
    import secrets  # here: reading personas needs no hashing (start-up)

    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def validate_persona_id(persona_id: str) -> str:
    """Refuse anything that is not exactly a persona id (path-like ids included)."""
    if not PERSONA_ID_RE.fullmatch(persona_id):
        raise UsageError(
            f"malformed persona id {persona_id!r}: expected 12 characters a-z and 2-7, "
            "as printed by 'station persona list'"
        )
    return persona_id
