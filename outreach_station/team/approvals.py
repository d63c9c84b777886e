"""Signed approvals: which approved members a laptop trusts with persona keys.

Anyone who can write the server's `members` table could mark a key of their
own "approved", and every laptop would then wrap persona keys for it. So an
approval is a signature, made on the approver's laptop: the approver's
Ed25519 key (derived from its member key, `MemberKey.sign`) signs the
newcomer's X25519 key, Ed25519 key, member id and the team's id. The
founder (`station team init`) signs its own record, and every laptop pins
the founder's member id and Ed25519 key in its team file when it joins.

A laptop trusts a member only when a chain of valid signatures leads from
it back to the pinned founder (`verified_roster`). Any other row that says
"approved" (written in SQL, a signature copied from another row, a key
swapped) is kept in the listing but marked unverified, and gets no persona
key (`Member.approved` is False for it).

What this cannot do: the founder is pinned on first sight at `join`, so a
server rewritten before a laptop joins can show it a false founder (the
laptop's own approval then never verifies, and it is told so); and the
signature of a member removed later stays valid for what it approved
before (and, as removal is not signed, for what its old key signs after:
remove a member on a lost laptop and have IT rotate the database password).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from outreach_station.i18n import _
from outreach_station.team.identity import validate_team_id
from outreach_station.team.members import Member, MemberStatus

if TYPE_CHECKING:
    from outreach_station.storage.postgres import MemberRecord
    from outreach_station.team.keys import MemberKey

SIGNING_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_LABEL: Final = b"outreach-station team approval v1\x00"


def _field(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def approval_statement(
    *,
    team_id: str,
    member_id: str,
    public_key: bytes,
    signing_key: bytes,
    approver_id: str,
) -> bytes:
    """The bytes an approver signs: newcomer's id and both keys, the team, the approver."""
    return _LABEL + b"".join(
        _field(part)
        for part in (
            validate_team_id(team_id).encode("ascii"),
            member_id.encode("ascii"),
            public_key,
            signing_key,
            approver_id.encode("ascii"),
        )
    )


def sign_approval(
    approver: MemberKey, *, member_id: str, public_key: bytes, signing_key: bytes
) -> bytes:
    """`approver`'s signature of the approval of a member (itself, for the founder)."""
    return approver.sign(
        approval_statement(
            team_id=approver.team_id,
            member_id=member_id,
            public_key=public_key,
            signing_key=signing_key,
            approver_id=approver.member_id,
        )
    )


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    key = base64.b64decode(text.encode("ascii"), validate=True)
    if len(key) != SIGNING_KEY_BYTES:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return key


def signature_valid(signing_key: bytes, signature: bytes, statement: bytes) -> bool:
    """Whether `signature` is `signing_key`'s Ed25519 signature of `statement`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(signing_key).verify(signature, statement)
    except (InvalidSignature, ValueError):
        return False
    return True


def trusted_signing_keys(
    rows: Iterable[MemberRecord],
    *,
    team_id: str,
    founder_id: str,
    founder_signing_key: bytes,
) -> dict[str, bytes]:
    """The members whose approval verifies back to the pinned founder, with their signing keys."""
    rows = list(rows)
    by_id = {r.member_id: r for r in rows}
    trusted: dict[str, bytes] = {}
    founder = by_id.get(founder_id)
    if (
        founder is not None
        and founder.signing_key == founder_signing_key
        and founder.approval is not None
        and signature_valid(
            founder_signing_key,
            founder.approval,
            approval_statement(
                team_id=team_id,
                member_id=founder.member_id,
                public_key=founder.public_key,
                signing_key=founder_signing_key,
                approver_id=founder.member_id,
            ),
        )
    ):
        trusted[founder_id] = founder_signing_key
    grew = True
    while grew:
        grew = False
        for row in rows:
            if row.member_id in trusted or row.status == "pending":
                continue
            approver = row.approved_by
            if (
                approver is None
                or approver not in trusted
                or row.signing_key is None
                or row.approval is None
            ):
                continue
            statement = approval_statement(
                team_id=team_id,
                member_id=row.member_id,
                public_key=row.public_key,
                signing_key=row.signing_key,
                approver_id=approver,
            )
            if signature_valid(trusted[approver], row.approval, statement):
                trusted[row.member_id] = row.signing_key
                grew = True
    return trusted


def verified_roster(
    records: Iterable[MemberRecord],
    *,
    team_id: str,
    founder_id: str,
    founder_signing_key: bytes,
) -> list[Member]:
    """Every member row, each approved one checked back to the pinned founder.

    A row whose approval does not verify keeps its status for the listing
    but carries the reason in `Member.unverified`, so it is never wrapped for.
    """
    rows = list(records)
    members = {r.member_id: judge_row(r) for r in rows}
    trusted = trusted_signing_keys(
        rows, team_id=team_id, founder_id=founder_id, founder_signing_key=founder_signing_key
    )
    roster = []
    for member_id, row_member in members.items():
        member = row_member
        if member.status is MemberStatus.APPROVED and member_id not in trusted:
            member = replace(
                member,
                unverified=_(
                    "member {member_id} is marked approved on the server, but no valid "
                    "signed approval leads from it to the team's founder; it gets no "
                    "persona key: have an approved member check it, and tell IT"
                ).format(member_id=member_id),
            )
        roster.append(member)
    return roster


def judge_row(record: MemberRecord) -> Member:
    """The row as a `Member`, its approval not checked (see `verified_roster`)."""
    # Member() refuses a row whose id does not match its key: an edited row is loud.
    return Member(
        member_id=record.member_id,
        display_name=record.display_name,
        host=record.host,
        public_key=record.public_key,
        status=MemberStatus(record.status),
    )
