"""Member records, ids, safety codes and the approval and removal rules (no keyring needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import pytest

from outreach_station.errors import (
    ExitCode,
    NotFoundError,
    SecurityError,
    StateError,
    UsageError,
)
from outreach_station.team import (
    ConfirmCode,
    Member,
    MemberStatus,
    approve,
    member_id_for,
    remove,
    safety_code,
    validate_member_id,
)

TEAM = "clinic-south"


def _public(n: int) -> bytes:
    """A fixed 32-byte public key per n (ids and codes are pure functions of the bytes)."""
    return hashlib.sha256(b"test key %d" % n).digest()


def _member(n: int, status: MemberStatus) -> Member:
    return dataclasses.replace(
        Member.pending(_public(n), display_name=f"Worker {n}", host=f"laptop-{n}"), status=status
    )


def _yes(shown: list[tuple[str, str]]) -> ConfirmCode:
    def confirm(member: Member, code: str) -> bool:
        shown.append((member.member_id, code))
        return True

    return confirm


# -- ids and codes ------------------------------------------------------------


def test_member_id_is_derived_from_the_key_short_and_typeable() -> None:
    ids = {member_id_for(_public(n)) for n in range(200)}
    assert len(ids) == 200
    for member_id in ids:
        assert len(member_id) == 16 and set(member_id) <= set("abcdefghijklmnopqrstuvwxyz234567")
    # A known answer: the derivation must never change, or every team's ids would.
    assert member_id_for(bytes(32)) == "lsw7l5npb4iyhgub"
    assert Member.pending(_public(1), display_name="A", host="h").member_id == member_id_for(
        _public(1)
    )


def test_member_id_as_typed_is_forgiven_case_and_spaces_but_not_paths() -> None:
    member_id = member_id_for(_public(1))
    assert validate_member_id(f"  {member_id.upper()} ") == member_id
    for bad in ("", "../../etc/passwd", member_id[:-1], member_id + "a", member_id[:-1] + "1"):
        with pytest.raises(UsageError, match="malformed member id") as caught:
            validate_member_id(bad)
        assert caught.value.exit_code == ExitCode.USAGE


def test_safety_codes_are_stable_and_differ_between_keys_and_between_teams() -> None:
    code = safety_code(_public(1), TEAM)
    groups = code.split(" ")
    assert len(groups) == 6 and all(len(g) == 4 and g.isdigit() for g in groups)
    assert safety_code(_public(1), TEAM) == code
    assert _member(1, MemberStatus.PENDING).safety_code(TEAM) == code
    # A known answer pins the derivation: a laptop and a colleague's laptop
    # running another release must show the same code for the same key.
    assert safety_code(bytes(32), "t") == "3846 8767 5544 8294 6953 7848"
    others = {safety_code(_public(n), TEAM) for n in range(2, 200)}
    assert code not in others and len(others) == 198
    assert safety_code(_public(1), "clinic-north") != code


def test_a_record_whose_id_does_not_match_its_key_is_refused() -> None:
    good = _member(1, MemberStatus.APPROVED)
    with pytest.raises(SecurityError, match="does not match its public key") as caught:
        dataclasses.replace(good, public_key=_public(2))
    assert caught.value.exit_code == ExitCode.SECURITY
    with pytest.raises(SecurityError):
        dataclasses.replace(good, member_id=member_id_for(_public(2)))
    with pytest.raises(UsageError, match="32 bytes"):
        dataclasses.replace(good, public_key=b"short")


@pytest.mark.parametrize("name", ["", " ", "Anna\nApproved: yes", "Anna\u202egnp.exe", "x" * 65])
def test_display_names_that_could_mislead_a_listing_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="name"):
        Member.pending(_public(1), display_name=name, host="laptop")


# -- approval -------------------------------------------------------------------


def test_approval_shows_the_code_and_approves_only_the_newcomer() -> None:
    founder = Member.founder(_public(1), display_name="Anna", host="laptop-a")
    assert founder.status is MemberStatus.APPROVED
    newcomer = _member(2, MemberStatus.PENDING)
    shown: list[tuple[str, str]] = []
    approved = approve(
        [founder, newcomer],
        approver_id=founder.member_id,
        member_id=newcomer.member_id.upper(),
        team_id=TEAM,
        confirm=_yes(shown),
    )
    assert shown == [(newcomer.member_id, newcomer.safety_code(TEAM))]
    assert approved == dataclasses.replace(newcomer, status=MemberStatus.APPROVED)


def test_an_unconfirmed_code_approves_nothing() -> None:
    founder = _member(1, MemberStatus.APPROVED)
    newcomer = _member(2, MemberStatus.PENDING)
    with pytest.raises(UsageError, match="safety code was not confirmed") as caught:
        approve(
            [founder, newcomer],
            approver_id=founder.member_id,
            member_id=newcomer.member_id,
            team_id=TEAM,
            confirm=lambda member, code: False,
        )
    assert caught.value.exit_code == ExitCode.USAGE
    assert newcomer.status is MemberStatus.PENDING


def test_a_member_cannot_approve_itself() -> None:
    founder = _member(1, MemberStatus.APPROVED)
    newcomer = _member(2, MemberStatus.PENDING)
    shown: list[tuple[str, str]] = []
    for me in (newcomer, founder):
        with pytest.raises(SecurityError, match="cannot approve itself") as caught:
            approve(
                [founder, newcomer],
                approver_id=me.member_id,
                member_id=me.member_id,
                team_id=TEAM,
                confirm=_yes(shown),
            )
        assert caught.value.exit_code == ExitCode.SECURITY
    assert shown == []


@pytest.mark.parametrize("approver_status", [MemberStatus.PENDING, MemberStatus.REMOVED, None])
def test_only_an_approved_member_can_approve(approver_status: MemberStatus | None) -> None:
    founder = _member(1, MemberStatus.APPROVED)
    newcomer = _member(2, MemberStatus.PENDING)
    approver = _member(3, approver_status or MemberStatus.PENDING)
    roster = [founder, newcomer] + ([approver] if approver_status else [])
    shown: list[tuple[str, str]] = []
    with pytest.raises(SecurityError, match="only an approved member can approve") as caught:
        approve(
            roster,
            approver_id=approver.member_id,
            member_id=newcomer.member_id,
            team_id=TEAM,
            confirm=_yes(shown),
        )
    assert approver.member_id in str(caught.value)
    assert shown == []


@pytest.mark.parametrize(
    ("status", "words"),
    [(MemberStatus.APPROVED, "already approved"), (MemberStatus.REMOVED, "join again")],
)
def test_approved_or_removed_members_are_not_approved_again(
    status: MemberStatus, words: str
) -> None:
    founder = _member(1, MemberStatus.APPROVED)
    other = _member(2, status)
    with pytest.raises(StateError, match=words):
        approve(
            [founder, other],
            approver_id=founder.member_id,
            member_id=other.member_id,
            team_id=TEAM,
            confirm=lambda member, code: True,
        )


def test_approving_an_unknown_member_names_it() -> None:
    founder = _member(1, MemberStatus.APPROVED)
    stranger = member_id_for(_public(9))
    with pytest.raises(NotFoundError, match=f"no member {stranger}") as caught:
        approve(
            [founder],
            approver_id=founder.member_id,
            member_id=stranger,
            team_id=TEAM,
            confirm=lambda member, code: True,
        )
    assert caught.value.exit_code == ExitCode.NOT_FOUND


# -- removal --------------------------------------------------------------------


def test_removal_rules() -> None:
    a = _member(1, MemberStatus.APPROVED)
    b = _member(2, MemberStatus.APPROVED)
    pending = _member(3, MemberStatus.PENDING)
    roster = [a, b, pending]
    assert remove(roster, remover_id=a.member_id, member_id=b.member_id).status is (
        MemberStatus.REMOVED
    )
    assert remove(roster, remover_id=a.member_id, member_id=pending.member_id).status is (
        MemberStatus.REMOVED
    )
    with pytest.raises(SecurityError, match="only an approved member can remove"):
        remove(roster, remover_id=pending.member_id, member_id=b.member_id)
    gone = dataclasses.replace(b, status=MemberStatus.REMOVED)
    with pytest.raises(StateError, match="already removed"):
        remove([a, gone], remover_id=a.member_id, member_id=b.member_id)
    with pytest.raises(StateError, match="last approved member"):
        remove([a, gone, pending], remover_id=a.member_id, member_id=a.member_id)


def test_importing_the_team_package_loads_no_crypto_keyring_or_cli() -> None:
    # `station --help` must stay fast, and the core never imports typer.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, outreach_station.team; "
            "print([m for m in ('cryptography', 'keyring', 'typer', 'secrets') "
            "if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_a_member_id_in_capitals_is_kept_in_its_one_spelling() -> None:
    member = _member(1, MemberStatus.PENDING)
    assert dataclasses.replace(member, member_id=member.member_id.upper()) == member
