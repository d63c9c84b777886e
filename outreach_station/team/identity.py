"""Who a team member is: ids and safety codes derived from a member's public key.

A member's id and safety code are computed from its X25519 public key, never
chosen, so a server (or anyone editing its tables) cannot give a second key
the id or the code of an approved member without finding a hash collision.
The safety code also covers the team's id: the same laptop key shows a
different code in another team, so a code read aloud for one team cannot
be replayed to approve a key in another.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from outreach_station.errors import UsageError
from outreach_station.i18n import _

PUBLIC_KEY_BYTES: Final = 32

# 16 characters of lower-case base32 (80 bits of the hash): typeable, safe in
# keyring entry names and file names, and far from a findable collision.
MEMBER_ID_LENGTH: Final = 16
MEMBER_ID_RE: Final = re.compile(r"^[a-z2-7]{16}$")
# A team id is made by the server side; it becomes part of keyring entry names,
# so nothing path-like or spaced is accepted.
TEAM_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SAFETY_CODE_GROUPS: Final = 6
SAFETY_CODE_GROUP_DIGITS: Final = 4

_MEMBER_ID_LABEL: Final = b"outreach-station team member id v1\x00"
_SAFETY_CODE_LABEL: Final = b"outreach-station team safety code v1\x00"


def validate_team_id(team_id: str) -> str:
    """Refuse anything that is not a team id (letters, digits, '.', '_', '-'; at most 64)."""
    if not isinstance(team_id, str) or TEAM_ID_RE.fullmatch(team_id) is None:
        raise UsageError(
            _(
                "malformed team id {team_id!r}: expected up to 64 letters, digits, '.', '_' or '-'"
            ).format(team_id=team_id)
        )
    return team_id


def validate_member_id(member_id: str) -> str:
    """A member id as typed (case and surrounding spaces forgiven), or a one-line refusal."""
    cleaned = member_id.strip().lower() if isinstance(member_id, str) else ""
    if MEMBER_ID_RE.fullmatch(cleaned) is None:
        raise UsageError(
            _(
                "malformed member id {member_id!r}: expected {MEMBER_ID_LENGTH} "
                "characters a-z and 2-7, as printed by 'station team members'"
            ).format(member_id=member_id, MEMBER_ID_LENGTH=MEMBER_ID_LENGTH)
        )
    return cleaned


def check_public_key(public_key: bytes) -> bytes:
    """`public_key` if it has the size of an X25519 public key, else a refusal."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_BYTES:
        raise UsageError(
            _("a member's public key has {PUBLIC_KEY_BYTES} bytes").format(
                PUBLIC_KEY_BYTES=PUBLIC_KEY_BYTES
            )
        )
    return public_key


def member_id_for(public_key: bytes) -> str:
    """The member id of `public_key`: base32 of the start of a labelled SHA-256."""
    digest = hashlib.sha256(_MEMBER_ID_LABEL + check_public_key(public_key)).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def safety_code(public_key: bytes, team_id: str) -> str:
    """The code two people compare before an approval: six groups of four digits.

    About 80 bits: finding another key with the same code in the same team
    is out of reach, so a matching code read aloud proves the key on the
    server is the newcomer's.
    """
    team = validate_team_id(team_id).encode("ascii")
    digest = hashlib.sha256(
        _SAFETY_CODE_LABEL + len(team).to_bytes(1, "big") + team + check_public_key(public_key)
    ).digest()
    groups = []
    for index in range(SAFETY_CODE_GROUPS):
        # 40 bits per group reduced mod 10**4: a bias of about 10**-8, nothing.
        chunk = int.from_bytes(digest[index * 5 : index * 5 + 5], "big")
        groups.append(f"{chunk % 10**SAFETY_CODE_GROUP_DIGITS:0{SAFETY_CODE_GROUP_DIGITS}d}")
    return " ".join(groups)
