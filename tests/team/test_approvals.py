"""Signed approvals against a real PostgreSQL: laptops trust only a chain back to the founder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths
from outreach_station.context import Station
from outreach_station.storage.postgres import PostgresStore
from outreach_station.team.approvals import sign_approval, verified_roster
from outreach_station.team.keys import MemberKey, wrap_for_members
from outreach_station.team.members import approved_members
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import laptop_a  # noqa: F401 - the fixture

TEAM = "team-signed"


def _forge(team_db: TeamDb, key: MemberKey, *, approved_by: str | None, approval: bytes) -> None:
    """Write an "approved" row as someone with the database's owner rights would: in SQL."""
    with team_db.server.admin(team_db.name) as conn:
        # Triggers off: whoever owns the server is not held by them.
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO members (member_id, display_name, host, public_key, status, "
            "approved_by, approved, signing_key, approval) "
            "VALUES (%s, 'IT support', 'evil', %s, 'approved', %s, now(), %s, %s)",
            (key.member_id, key.public_key, approved_by, key.signing_public_key, approval),
        )


def _add(store: PostgresStore, key: MemberKey, *, founder: bool = False) -> None:
    assert store.add_member(
        member_id=key.member_id,
        display_name="n",
        host="h",
        public_key=key.public_key,
        status="approved" if founder else "pending",
        signing_key=key.signing_public_key,
        approval=(
            sign_approval(
                key,
                member_id=key.member_id,
                public_key=key.public_key,
                signing_key=key.signing_public_key,
            )
            if founder
            else None
        ),
    )


def _approve(store: PostgresStore, approver: MemberKey, newcomer: MemberKey) -> None:
    signature = sign_approval(
        approver,
        member_id=newcomer.member_id,
        public_key=newcomer.public_key,
        signing_key=newcomer.signing_public_key,
    )
    assert store.approve_member(
        newcomer.member_id, approved_by=approver.member_id, approval=signature
    )


def _trusted(store: PostgresStore, founder: MemberKey) -> set[str]:
    roster = verified_roster(
        store.members(),
        team_id=TEAM,
        founder_id=founder.member_id,
        founder_signing_key=founder.signing_public_key,
    )
    return {m.member_id for m in approved_members(roster)}


def test_a_chain_of_signed_approvals_back_to_the_founder_is_trusted(
    pg_store: PostgresStore,
) -> None:
    founder, second, third = (MemberKey.generate(TEAM) for _ in range(3))
    _add(pg_store, founder, founder=True)
    _add(pg_store, second)
    _add(pg_store, third)
    assert _trusted(pg_store, founder) == {founder.member_id}
    _approve(pg_store, founder, second)
    _approve(pg_store, second, third)

    assert _trusted(pg_store, founder) == {founder.member_id, second.member_id, third.member_id}
    # Another founder pinned (another team's, or a false one): nothing is trusted.
    assert _trusted(pg_store, MemberKey.generate(TEAM)) == set()


@pytest.mark.parametrize("forgery", ["unsigned", "copied", "outsider", "other team"])
def test_an_approved_row_written_in_sql_gets_no_persona_key(
    pg_store: PostgresStore, team_db: TeamDb, forgery: str
) -> None:
    founder, colleague, intruder, outsider = (MemberKey.generate(TEAM) for _ in range(4))
    _add(pg_store, founder, founder=True)
    _add(pg_store, colleague)
    _approve(pg_store, founder, colleague)
    colleague_approval = next(
        r.approval for r in pg_store.members() if r.member_id == colleague.member_id
    )
    assert colleague_approval is not None
    elsewhere = MemberKey(  # the founder's own key, in another team
        "team-other", founder._raw_private()
    )
    approval, approved_by = {
        "unsigned": (b"\0" * 64, founder.member_id),
        "copied": (colleague_approval, founder.member_id),
        "outsider": (
            sign_approval(
                outsider,
                member_id=intruder.member_id,
                public_key=intruder.public_key,
                signing_key=intruder.signing_public_key,
            ),
            founder.member_id,
        ),
        "other team": (
            sign_approval(
                elsewhere,
                member_id=intruder.member_id,
                public_key=intruder.public_key,
                signing_key=intruder.signing_public_key,
            ),
            founder.member_id,
        ),
    }[forgery]
    _forge(team_db, intruder, approved_by=approved_by, approval=approval)

    roster = verified_roster(
        pg_store.members(),
        team_id=TEAM,
        founder_id=founder.member_id,
        founder_signing_key=founder.signing_public_key,
    )
    by_id = {m.member_id: m for m in roster}
    assert str(by_id[intruder.member_id].status) == "approved"  # what the server claims
    assert by_id[intruder.member_id].unverified is not None
    wraps = wrap_for_members(
        roster, b"k" * 32, team_id=TEAM, persona_id="abcdefghijk2", key_version=1
    )
    assert {w.member_id for w in wraps} == {founder.member_id, colleague.member_id}


def test_station_team_members_marks_a_forged_member_and_wraps_nothing_for_it(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    a = json.loads(founded.stdout)
    intruder = MemberKey.generate(a["team_id"])
    _forge(laptop_a, intruder, approved_by=a["member_id"], approval=b"\1" * 64)

    listed = runner.invoke(["team", "members", "--json"])

    assert listed.exit_code == 0, listed.output
    members = {m["id"]: m for m in json.loads(listed.stdout)}
    assert (members[a["member_id"]]["status"], members[a["member_id"]]["verified"]) == (
        "approved",
        True,
    )
    assert (members[intruder.member_id]["status"], members[intruder.member_id]["verified"]) == (
        "approved",
        False,
    )
    assert listed.stderr == (
        f"member {intruder.member_id} is marked approved on the server, but no valid signed "
        "approval leads from it to the team's founder; it gets no persona key: have an "
        "approved member check it, and tell IT\n"
    )
    # The roster this laptop wraps persona keys for leaves the intruder out.
    from outreach_station.team.membership import _team_store, roster

    with Station(paths.current()) as st:
        store = _team_store(st)
        trusted = {m.member_id for m in approved_members(roster(st, store, a["team_id"]))}
    assert trusted == {a["member_id"]}
    # And the intruder cannot approve anyone: its approvals lead nowhere either.
    table = runner.invoke(["team", "members"])
    assert "unverified" in table.stdout
