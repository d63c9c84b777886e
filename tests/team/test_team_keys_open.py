"""The persona data key a team laptop opens with: unwrapped for its member, never the vault's.

Against the real PostgreSQL of the team tests; the member keys are made in
memory (`MemberKey.generate`), as two laptops' keys would be.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from outreach_station.errors import IntegrityError, SecurityError
from outreach_station.storage.postgres import PostgresStore, WrappedKeyRecord
from outreach_station.team.approvals import verified_roster
from outreach_station.team.keys import MemberKey
from outreach_station.team.members import Member
from outreach_station.team.opening import TeamKeys
from tests.team.conftest import TeamDb
from tests.team.test_approvals import _add, _approve

TEAM = "team-test"


def _team(team_db: TeamDb, pg_store: PostgresStore, *statuses: str) -> list[MemberKey]:
    """A team whose members have `statuses` (the first is the founder, approved), each
    approval signed as `station team approve` signs it."""
    with team_db.owner_store() as owner:
        owner.create_team(TEAM)
    keys = [MemberKey.generate(TEAM) for _ in statuses]
    for key in keys:
        _add(pg_store, key, founder=key is keys[0])
    for key, status in zip(keys[1:], statuses[1:], strict=True):
        if status == "approved":
            _approve(pg_store, keys[0], key)
    return keys


def team_keys(store: PostgresStore, key: MemberKey, founder: MemberKey) -> TeamKeys:
    """`key`'s TeamKeys, trusting the members signed back to `founder` (as a laptop does)."""

    def members() -> list[Member]:
        return verified_roster(
            store.members(),
            team_id=TEAM,
            founder_id=founder.member_id,
            founder_signing_key=founder.signing_public_key,
        )

    return TeamKeys(store, TEAM, key, members)


def test_a_new_persona_key_is_wrapped_for_approved_members_and_opens_for_each(
    team_db: TeamDb, pg_store: PostgresStore
) -> None:
    a, b, pending = _team(team_db, pg_store, "approved", "approved", "pending")
    persona = pg_store.create("demo", fingerprint={})
    made = team_keys(pg_store, a, a).ensure_data_key(persona.id)
    assert len(made) == 32
    wraps = pg_store.wrapped_keys(persona.id)
    assert sorted(w.member_id for w in wraps) == sorted([a.member_id, b.member_id])
    assert all(made not in w.sealed for w in wraps)  # only wrapped on the server
    # B's laptop (its own key) gets the same data key from its own wrap.
    assert team_keys(pg_store, b, a).ensure_data_key(persona.id) == made
    # A pending member has no wrap and is refused.
    with pytest.raises(SecurityError, match="is pending in the team"):
        team_keys(pg_store, pending, a).ensure_data_key(persona.id)


def test_a_member_approved_later_gets_a_wrap_at_the_next_open(
    team_db: TeamDb, pg_store: PostgresStore
) -> None:
    a, late = _team(team_db, pg_store, "approved", "pending")
    persona = pg_store.create("demo", fingerprint={})
    made = team_keys(pg_store, a, a).ensure_data_key(persona.id)
    _approve(pg_store, a, late)
    with pytest.raises(SecurityError, match="is not wrapped for this laptop's member"):
        team_keys(pg_store, late, a).ensure_data_key(persona.id)
    team_keys(pg_store, a, a).ensure_data_key(persona.id)  # A opens it again
    assert team_keys(pg_store, late, a).ensure_data_key(persona.id) == made


def test_a_tampered_or_moved_wrapped_key_is_refused(
    team_db: TeamDb, pg_store: PostgresStore
) -> None:
    a, b = _team(team_db, pg_store, "approved", "approved")
    one = pg_store.create("demo", fingerprint={})
    other = pg_store.create("demo2", fingerprint={})
    team_keys(pg_store, a, a).ensure_data_key(one.id)
    team_keys(pg_store, a, a).ensure_data_key(other.id)
    (mine,) = pg_store.wrapped_keys(one.id, member_id=b.member_id)
    flipped = bytes([*mine.sealed[:-1], mine.sealed[-1] ^ 1])
    pg_store.put_wrapped_keys([WrappedKeyRecord(one.id, b.member_id, 1, flipped)])
    with pytest.raises(IntegrityError, match="failed authentication"):
        team_keys(pg_store, b, a).ensure_data_key(one.id)
    # The other persona's wrap for B, copied into this persona's row: refused too.
    (theirs,) = pg_store.wrapped_keys(other.id, member_id=b.member_id)
    pg_store.put_wrapped_keys([WrappedKeyRecord(one.id, b.member_id, 1, theirs.sealed)])
    with pytest.raises(IntegrityError, match="failed authentication"):
        team_keys(pg_store, b, a).ensure_data_key(one.id)


def test_wrapped_keys_deleted_under_sealed_generations_are_not_replaced_by_a_new_key(
    team_db: TeamDb, pg_store: PostgresStore
) -> None:
    (a,) = _team(team_db, pg_store, "approved")
    persona = pg_store.create("demo", fingerprint={})
    team_keys(pg_store, a, a).ensure_data_key(persona.id)
    lease = pg_store.acquire_lease(
        persona.id, member=a.member_id, host="h", ttl=timedelta(minutes=5)
    )
    pg_store.put_blob(persona.id, "00" * 16, b"sealed")
    pg_store.commit_generation(
        persona.id, 1, b"manifest", token=lease.token, blob_names=["00" * 16]
    )
    with team_db.owner_store() as owner:
        owner._conn.execute("DELETE FROM wrapped_keys")
    with pytest.raises(IntegrityError, match="no wrapped key for any member"):
        team_keys(pg_store, a, a).ensure_data_key(persona.id)
    assert pg_store.wrapped_keys(persona.id) == []  # no new key was made
