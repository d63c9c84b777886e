"""Team mode's members and keys: who may read a persona, and how its key reaches them.

Import-cheap (the CLI may import it at start-up): `cryptography` and
`keyring` are imported inside the functions that use them. The server side
(storage of member records and wrapped keys) lives in `storage/`.
"""

from __future__ import annotations

from outreach_station.team.identity import (
    MEMBER_ID_LENGTH,
    member_id_for,
    safety_code,
    validate_member_id,
    validate_team_id,
)
from outreach_station.team.keys import (
    DATA_KEY_BYTES,
    MemberKey,
    Rekey,
    WrappedKey,
    ensure_member_key,
    forget_member_key,
    load_member_key,
    member_key_entry,
    new_data_key,
    rekey,
    unwrap_data_key,
    wrap_data_key,
    wrap_for_members,
)
from outreach_station.team.members import (
    ConfirmCode,
    Member,
    MemberStatus,
    approve,
    approved_members,
    find,
    remove,
)

__all__ = [
    "DATA_KEY_BYTES",
    "MEMBER_ID_LENGTH",
    "ConfirmCode",
    "Member",
    "MemberKey",
    "MemberStatus",
    "Rekey",
    "WrappedKey",
    "approve",
    "approved_members",
    "ensure_member_key",
    "find",
    "forget_member_key",
    "load_member_key",
    "member_id_for",
    "member_key_entry",
    "new_data_key",
    "rekey",
    "remove",
    "safety_code",
    "unwrap_data_key",
    "validate_member_id",
    "validate_team_id",
    "wrap_data_key",
    "wrap_for_members",
]
