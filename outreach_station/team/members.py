"""Team members and the rules for approving and removing them.

A `Member` is a value: the server keeps the records, this module decides
what may happen to them. The rules here are the laptop's half of the check
(the server enforces its own): a member never approves itself, only an
approved member approves or removes, and an approval is only made after the
approver was shown the newcomer's safety code and confirmed it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from outreach_station.errors import NotFoundError, SecurityError, StateError, UsageError
from outreach_station.i18n import N_, _
from outreach_station.team.identity import (
    check_public_key,
    member_id_for,
    safety_code,
    validate_member_id,
)

DISPLAY_NAME_MAX: Final = 64
HOST_MAX: Final = 253


class MemberStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REMOVED = "removed"


# A member's status as people read it; stored data and --json keep the English word.
_STATUS_WORDS: Final = {
    "pending": N_("pending"),
    "approved": N_("approved"),
    "removed": N_("removed"),
    "not registered": N_("not registered"),  # the server does not know this laptop's key
}


def status_word(status: object) -> str:
    """`status` (a `MemberStatus` or "not registered") in the reader's language."""
    word = str(status)
    return _(_STATUS_WORDS[word]) if word in _STATUS_WORDS else word


# One whole sentence per field, so a translation never has to inflect a pasted-in word.
_TOO_LONG: Final = {
    "name": N_("a member's name must have 1 to {longest} characters"),
    "host": N_("a member's host must have 1 to {longest} characters"),
}
_UNPRINTABLE: Final = {
    "name": N_("a member's name may not contain control or formatting characters"),
    "host": N_("a member's host may not contain control or formatting characters"),
}


def _check_label(value: str, *, what: str, longest: int) -> str:
    """A name shown to people: one line of printable text, trimmed, not too long."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > longest:
        raise UsageError(_(_TOO_LONG[what]).format(longest=longest))
    # Control and format characters (newlines, bidi overrides) could make one
    # member's line in a listing look like another's.
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise UsageError(_(_UNPRINTABLE[what]))
    return text


@dataclass(frozen=True)
class Member:
    """One staff account on one laptop, as the team knows it.

    `member_id` is always `member_id_for(public_key)`: a record whose id does
    not match its key is refused when it is made, wherever it came from.
    """

    member_id: str
    display_name: str
    host: str
    public_key: bytes
    status: MemberStatus
    # Why this laptop does not trust the row's approval (team.approvals), or None.
    unverified: str | None = None

    def __post_init__(self) -> None:
        check_public_key(self.public_key)
        member_id = validate_member_id(self.member_id)
        if member_id != member_id_for(self.public_key):
            raise SecurityError(
                _(
                    "the record of member {member_id} does not match its public key; it "
                    "was altered: refusing it"
                ).format(member_id=member_id)
            )
        object.__setattr__(self, "member_id", member_id)
        name = _check_label(self.display_name, what="name", longest=DISPLAY_NAME_MAX)
        object.__setattr__(self, "display_name", name)
        object.__setattr__(self, "host", _check_label(self.host, what="host", longest=HOST_MAX))
        object.__setattr__(self, "status", MemberStatus(self.status))

    @classmethod
    def pending(cls, public_key: bytes, *, display_name: str, host: str) -> Member:
        """The record `join` registers: pending until an approved member approves it."""
        return cls(
            member_id=member_id_for(public_key),
            display_name=display_name,
            host=host,
            public_key=public_key,
            status=MemberStatus.PENDING,
        )

    @classmethod
    def founder(cls, public_key: bytes, *, display_name: str, host: str) -> Member:
        """The record `init` makes: the team's first member, approved by creating the team."""
        return replace(
            cls.pending(public_key, display_name=display_name, host=host),
            status=MemberStatus.APPROVED,
        )

    @property
    def approved(self) -> bool:
        """Approved, and (where checked) by a signature chain back to the founder."""
        return self.status is MemberStatus.APPROVED and self.unverified is None

    def safety_code(self, team_id: str) -> str:
        """The code to compare with this member before approving it (see `identity`)."""
        return safety_code(self.public_key, team_id)


def find(members: Iterable[Member], member_id: str) -> Member:
    """The member with `member_id`, or a one-line `NotFoundError`."""
    wanted = validate_member_id(member_id)
    for member in members:
        if member.member_id == wanted:
            return member
    raise NotFoundError(
        _("no member {wanted} in this team; see 'station team members'").format(wanted=wanted)
    )


def approved_members(members: Iterable[Member]) -> tuple[Member, ...]:
    """The members a persona's data key is wrapped for."""
    return tuple(member for member in members if member.approved)


def _acting_member(members: Iterable[Member], actor_id: str, *, action: str) -> Member:
    try:
        actor = find(members, actor_id)
    except NotFoundError:
        raise SecurityError(
            _(
                "this laptop's key ({member_id}) is not a member of the team; only "
                "an approved member can {action}"
            ).format(member_id=validate_member_id(actor_id), action=action)
        ) from None
    if actor.unverified is not None:
        raise SecurityError(actor.unverified)
    if not actor.approved:
        raise SecurityError(
            _(
                "this laptop's member {member_id} is {status}; only an approved member can {action}"
            ).format(member_id=actor.member_id, status=actor.status, action=action)
        )
    return actor


def check_actor(members: Iterable[Member], actor_id: str, *, action: str) -> Member:
    """This laptop's member, refused unless it is approved (and its approval verified)."""
    return _acting_member(tuple(members), actor_id, action=action)


# Called with the newcomer and its safety code; True once the person at the
# keyboard has compared the code with the newcomer (a script's `--yes` says so
# for it). The code goes to the person through this call, never around it.
ConfirmCode = Callable[[Member, str], bool]


def approve(
    members: Iterable[Member],
    *,
    approver_id: str,
    member_id: str,
    team_id: str,
    confirm: ConfirmCode,
) -> Member:
    """The newcomer's record, approved; nothing is approved unless `confirm` says yes.

    `approver_id` is the member id of this laptop's key (`MemberKey.member_id`).
    Refused: approving oneself, an approver that is not approved, a member that
    is already approved or was removed (a removed laptop joins again with a new key).
    """
    roster = tuple(members)
    candidate = find(roster, member_id)
    if candidate.member_id == validate_member_id(approver_id):
        raise SecurityError(
            _(
                "member {member_id} cannot approve itself; another approved member "
                "must compare the safety code and approve it"
            ).format(member_id=candidate.member_id)
        )
    _acting_member(roster, approver_id, action=_("approve members"))
    if candidate.status is MemberStatus.APPROVED:
        raise StateError(
            _("member {member_id} is already approved").format(member_id=candidate.member_id)
        )
    if candidate.status is MemberStatus.REMOVED:
        raise StateError(
            _("member {member_id} was removed; its laptop must join again with a new key").format(
                member_id=candidate.member_id
            )
        )
    code = candidate.safety_code(team_id)
    if not confirm(candidate, code):
        raise UsageError(
            _("member {member_id} was not approved: the safety code was not confirmed").format(
                member_id=candidate.member_id
            )
        )
    return replace(candidate, status=MemberStatus.APPROVED)


def remove(members: Iterable[Member], *, remover_id: str, member_id: str) -> Member:
    """The member's record, removed. The persona keys it could read are re-keyed by the caller.

    Only an approved member removes; the last approved member cannot be
    removed (nobody could approve anyone again); removing twice is refused.
    """
    roster = tuple(members)
    target = find(roster, member_id)
    _acting_member(roster, remover_id, action=_("remove members"))
    if target.status is MemberStatus.REMOVED:
        raise StateError(
            _("member {member_id} is already removed").format(member_id=target.member_id)
        )
    others = [m for m in approved_members(roster) if m.member_id != target.member_id]
    if target.approved and not others:
        raise StateError(
            _(
                "member {member_id} is the team's last approved member; approve "
                "another member before removing it"
            ).format(member_id=target.member_id)
        )
    return replace(target, status=MemberStatus.REMOVED)
