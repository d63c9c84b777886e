"""The team's membership use cases: init, join, members, approve, remove, status.

Each takes the command's `Station`. Passwords: the team role's database
password is read from the OS keyring, or asked through `ask_password` (a
terminal prompt; None where there is none) and stored in the keyring only
after the server accepted it. The owner role's password (IT's, for `init`)
is used and never stored. Nothing is written (keyring, team file, member
record) before the server was reached with the password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from outreach_station.context import Station, using
from outreach_station.errors import EnvironmentProblem, StateError, StationError, UsageError
from outreach_station.events import EventName
from outreach_station.i18n import _
from outreach_station.team.config import (
    TeamFile,
    check_join_allowed,
    read_team_file,
    team_url,
    write_team_file,
)
from outreach_station.team.members import ConfirmCode, Member, MemberStatus, approve, remove

if TYPE_CHECKING:
    from outreach_station.storage.postgres import (
        Lease,
        MemberRecord,
        PostgresStore,
        TeamConnection,
    )
    from outreach_station.team.keys import MemberKey
    from outreach_station.team.sync import PendingUpload, SetAside

# Asked with a prompt naming the role and server; None when there is no terminal.
AskPassword = Callable[[str], "str | None"]

OWNER_ROLE = "station_owner"


@dataclass(frozen=True)
class Joined:
    """What init or join did for this laptop."""

    team_id: str
    where: str
    member: Member
    safety_code: str
    registered: bool  # False: this key was registered before (run again)


@dataclass(frozen=True)
class MemberLine:
    member_id: str
    display_name: str
    host: str
    status: MemberStatus
    you: bool
    unverified: str | None = None  # why its approval is not trusted here


@dataclass(frozen=True)
class TeamStatus:
    url: str | None
    team_id: str | None
    member_id: str | None
    member_status: str | None  # None: not known (server unreachable or not in a team)
    reachable: bool | None  # None: not in a team, or not tried (no password here)
    problem: str | None = None
    # Generations sealed here and waiting for the server (known without it).
    pending: tuple[PendingUpload, ...] = ()
    # Who holds which persona; None when the server was not asked or did not answer.
    leases: tuple[Lease, ...] | None = None
    # Personas to get a new data key at their next open (a member was removed); None: not asked.
    rekey_due: tuple[str, ...] | None = None
    # Generations of this laptop kept aside, never sent over a newer one (known without it).
    set_aside: tuple[SetAside, ...] = ()


def _connection(url: str) -> TeamConnection:
    from outreach_station.storage.postgres import TeamConnection

    return TeamConnection(url)


def _as_role(connection: TeamConnection, role: str) -> TeamConnection:
    from psycopg.conninfo import make_conninfo

    from outreach_station.storage.postgres import TeamConnection

    return TeamConnection(make_conninfo(connection.url, user=role))


def _password(connection: TeamConnection, ask: AskPassword, *, role: str) -> tuple[str, bool]:
    """The role's password and whether it came from the keyring."""
    from outreach_station import secret_store
    from outreach_station.storage.postgres import password_entry

    stored = secret_store.read(password_entry(connection), what="team database password")
    if stored is not None:
        return stored, True
    asked = ask(
        _("Database password of {role} on {where}").format(role=role, where=connection.where)
    )
    if not asked:
        raise UsageError(
            _(
                "no password for {role} on {where} in the OS keyring and no "
                "terminal to ask on; run this command on a terminal"
            ).format(role=role, where=connection.where)
        )
    return asked, False


def _open(connection: TeamConnection, password: str) -> PostgresStore:
    from outreach_station.storage.postgres import PostgresStore

    return PostgresStore(connection, password=password)


def _keep_password(connection: TeamConnection, password: str) -> None:
    from outreach_station import secret_store
    from outreach_station.storage.postgres import password_entry

    secret_store.write(password_entry(connection), password, what="team database password")


def _member(record: MemberRecord) -> Member:
    from outreach_station.team.approvals import judge_row

    return judge_row(record)


def _rows(store: PostgresStore) -> list[Member]:
    """The rows as members, approvals not checked: only for this laptop's own row."""
    return [_member(r) for r in store.members()]


def _founder_of(store: PostgresStore) -> tuple[str, bytes] | None:
    """The founder the server shows: the approved row nobody approved, signing itself."""
    found = [
        (r.member_id, r.signing_key)
        for r in store.members()
        if r.status != "pending" and r.approved_by is None and r.signing_key is not None
    ]
    # Two rows claiming to be the founder: pin neither; every approval stays unverified.
    return found[0] if len(found) == 1 else None


def pinned_founder(st: Station, store: PostgresStore) -> tuple[str, bytes]:
    """The founder every approval must lead back to: pinned in this home's team file.

    A home that joined before founders were pinned pins the server's now;
    none to be found gives ("", b""), which trusts nobody.
    """
    from outreach_station.team.approvals import decode_key, encode_key

    joined = read_team_file(st.paths)
    founder: tuple[str, bytes] | None = None
    if joined is not None and joined.founder_id and joined.founder_signing_key:
        founder = (joined.founder_id, decode_key(joined.founder_signing_key))
    elif joined is not None:
        founder = _founder_of(store)
        if founder is not None:
            write_team_file(
                st.paths,
                replace(joined, founder_id=founder[0], founder_signing_key=encode_key(founder[1])),
            )
    return founder if founder is not None else ("", b"")


def roster(st: Station, store: PostgresStore, team_id: str) -> list[Member]:
    """Every member, approved ones trusted only through signatures back to the founder."""
    from outreach_station.team.approvals import verified_roster

    founder_id, founder_key = pinned_founder(st, store)
    return verified_roster(
        store.members(), team_id=team_id, founder_id=founder_id, founder_signing_key=founder_key
    )


def _host() -> str:
    import socket

    return socket.gethostname() or "unknown-host"


def _default_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "staff"


def _check_not_elsewhere(station: Station, url: str) -> None:
    joined = read_team_file(station.paths)
    if joined is not None and joined.url != url:
        raise StateError(
            _(
                "this station home is already in team {team_id} on another server; "
                "a home is in one team"
            ).format(team_id=joined.team_id)
        )


def _my_key(station: Station, team_id: str) -> MemberKey:
    from outreach_station.team.keys import ensure_member_key
    from outreach_station.vault import read_settings

    # The member key is named after the vault's station id: a home without a vault
    # gets one now. One that has a vault (in passphrase mode, too) is not unlocked
    # for it: only its settings are read.
    if read_settings(station.paths) is None:
        station.vault()
    return ensure_member_key(station.paths, team_id)


def _register(
    store: PostgresStore, key: MemberKey, *, name: str, founder: bool
) -> tuple[Member, bool]:
    from outreach_station.team.approvals import sign_approval

    make = Member.founder if founder else Member.pending
    member = make(key.public_key, display_name=name, host=_host())
    made = store.add_member(
        member_id=member.member_id,
        display_name=member.display_name,
        host=member.host,
        public_key=member.public_key,
        status=str(member.status),
        signing_key=key.signing_public_key,
        # The founder approves itself by signing: the anchor every laptop pins.
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
    current = next(m for m in _rows(store) if m.member_id == member.member_id)
    return current, made


def _team_file(
    team_id: str,
    url: str,
    member_id: str,
    founder: tuple[str, bytes] | None,
    *,
    audit_signed: bool = True,
) -> TeamFile:
    from outreach_station.team.approvals import encode_key

    return TeamFile(
        team_id=team_id,
        url=url,
        member_id=member_id,
        founder_id=founder[0] if founder else None,
        founder_signing_key=encode_key(founder[1]) if founder else None,
        audit_signed=audit_signed,
    )


def join_team(
    url: str,
    *,
    ask_password: AskPassword,
    display_name: str | None = None,
    station: Station | None = None,
) -> Joined:
    """Register this laptop's key as a pending member of the team at `url`."""
    connection = _connection(url)
    with using(station) as st:
        check_join_allowed(st, url)
        _check_not_elsewhere(st, url)
        where = connection.where
        password, from_keyring = _password(connection, ask_password, role=_role(connection))
        with _open(connection, password) as store:
            team_id = store.team_id()
            if team_id is None:
                raise StateError(
                    _(
                        "the team server {where} has no team yet; an approved member or IT "
                        "runs station team init URL first"
                    ).format(where=where)
                )
            key = _my_key(st, team_id)
            member, made = _register(
                store, key, name=display_name or _default_name(), founder=False
            )
            founder = _founder_of(store)
            # A trail begun before records were signed cannot be held to it.
            signed = store.unsigned_audit_records() == 0
        if not from_keyring:
            _keep_password(connection, password)
        write_team_file(
            st.paths, _team_file(team_id, url, member.member_id, founder, audit_signed=signed)
        )
        if made:
            st.record(EventName.TEAM_JOINED, team=team_id, member=member.member_id)
        return Joined(team_id, where, member, member.safety_code(team_id), made)


def _role(connection: TeamConnection) -> str:
    from outreach_station.storage.postgres import _parse_conninfo

    return _parse_conninfo(connection.url).get("user", "?")


def init_team(
    url: str,
    *,
    ask_password: AskPassword,
    owner_role: str = OWNER_ROLE,
    display_name: str | None = None,
    station: Station | None = None,
) -> Joined:
    """Create or upgrade the team's schema as the owner, name the team, and found it.

    `url` is the URL laptops use (station's login role); the schema is made
    as `owner_role` on the same server and database. This laptop's key
    becomes the first approved member; a team that already has approved
    members is refused (newcomers join and are approved).
    """
    import secrets

    connection = _connection(url)
    owner = _as_role(connection, owner_role)
    with using(station) as st:
        check_join_allowed(st, url)
        _check_not_elsewhere(st, url)
        owner_password, _asked = _password(owner, ask_password, role=owner_role)
        with _open(owner, owner_password) as admin:
            team_id = admin.create_team(f"team-{secrets.token_hex(6)}")
        del owner_password  # IT's secret: used, never kept
        password, from_keyring = _password(connection, ask_password, role=_role(connection))
        with _open(connection, password) as store:
            key = _my_key(st, team_id)
            others = [
                m
                for m in _rows(store)
                if m.status is MemberStatus.APPROVED and m.member_id != key.member_id
            ]
            if others:
                raise StateError(
                    _(
                        "team {team_id} on {where} already has approved members; join it "
                        "instead (station team join URL) and ask one of them to approve"
                    ).format(team_id=team_id, where=connection.where)
                )
            member, made = _register(store, key, name=display_name or _default_name(), founder=True)
        if not from_keyring:
            _keep_password(connection, password)
        founder = (key.member_id, key.signing_public_key)
        write_team_file(st.paths, _team_file(team_id, url, member.member_id, founder))
        if made:
            st.record(EventName.TEAM_INITIALISED, team=team_id, member=member.member_id)
        return Joined(team_id, connection.where, member, member.safety_code(team_id), made)


def _team_store(st: Station) -> PostgresStore:
    from outreach_station.storage.postgres import PostgresStore

    store = st.store
    if not isinstance(store, PostgresStore):
        raise StateError(_("this station home is not in a team; run station team join URL"))
    return store


def _me(st: Station, store: PostgresStore) -> tuple[str, MemberKey]:
    from outreach_station.team.keys import load_member_key

    team_id = store.team_id()
    if team_id is None:
        raise StateError(
            _("the team server {where} has no team yet; run station team init URL").format(
                where=store.connection.where
            )
        )
    return team_id, load_member_key(st.paths, team_id)


def list_members(*, station: Station | None = None) -> list[MemberLine]:
    """Every member of the team, with which one is this laptop's key."""
    with using(station) as st:
        store = _team_store(st)
        team_id, key = _me(st, store)
        return [
            MemberLine(
                m.member_id,
                m.display_name,
                m.host,
                m.status,
                m.member_id == key.member_id,
                m.unverified,
            )
            for m in roster(st, store, team_id)
        ]


def approve_member(
    member_id: str, *, confirm: ConfirmCode, station: Station | None = None
) -> Member:
    """Approve a pending member after `confirm` saw its safety code and said yes."""
    with using(station) as st:
        store = _team_store(st)
        team_id, key = _me(st, store)
        from outreach_station.team.approvals import sign_approval

        members = roster(st, store, team_id)
        approved = approve(
            members,
            approver_id=key.member_id,
            member_id=member_id,
            team_id=team_id,
            confirm=confirm,
        )
        row = next(r for r in store.members() if r.member_id == approved.member_id)
        if row.signing_key is None:
            raise StateError(
                _(
                    "member {member_id} registered without a signing key (an older "
                    "station); it must join again with this version"
                ).format(member_id=approved.member_id)
            )
        signature = sign_approval(
            key,
            member_id=approved.member_id,
            public_key=approved.public_key,
            signing_key=row.signing_key,
        )
        if not store.approve_member(
            approved.member_id, approved_by=key.member_id, approval=signature
        ):
            raise StateError(
                _(
                    "member {member_id} was not approved: its record changed meanwhile; "
                    "see station team members"
                ).format(member_id=approved.member_id)
            )
        st.record(EventName.TEAM_MEMBER_APPROVED, team=team_id, member=approved.member_id)
        return approved


def remove_member(member_id: str, *, station: Station | None = None) -> tuple[Member, list[str]]:
    """Remove a member: its wrapped keys go; what it could read is re-keyed at next seal."""
    with using(station) as st:
        store = _team_store(st)
        team_id, key = _me(st, store)
        removed = remove(roster(st, store, team_id), remover_id=key.member_id, member_id=member_id)
        personas = store.remove_member(removed.member_id)
        st.record(
            EventName.TEAM_MEMBER_REMOVED,
            team=team_id,
            member=removed.member_id,
            rekey_personas=len(personas),
        )
        return removed, personas


def team_status(*, station: Station | None = None) -> TeamStatus:
    """Where the team is, who this laptop is in it, and whether the server answers."""
    with using(station) as st:
        from outreach_station.team.sync import all_set_aside, pending

        url = team_url(st)
        joined = read_team_file(st.paths)
        if url is None:
            return TeamStatus(None, None, None, None, None)
        waiting = tuple(pending(st.paths))
        aside = tuple(all_set_aside(st.paths))
        team_id = joined.team_id if joined else None
        member_id = joined.member_id if joined else None
        from outreach_station import secret_store
        from outreach_station.storage.postgres import password_entry

        connection = _connection(url)
        if secret_store.read(password_entry(connection), what="team database password") is None:
            # Not tried: "unreachable" would send people to check a network that is fine.
            return TeamStatus(
                url,
                team_id,
                member_id,
                None,
                None,
                _(
                    "no password for the team server {where} in the OS keyring; "
                    "run station team join URL"
                ).format(where=connection.where),
                waiting,
                set_aside=aside,
            )
        try:
            store = _team_store(st)
            team_id = store.team_id() or team_id
            status = None
            if team_id is not None:
                from outreach_station.team.keys import load_member_key

                member_id = load_member_key(st.paths, team_id).member_id
                found = [r for r in store.members() if r.member_id == member_id]
                status = found[0].status if found else "not registered"
            leases = tuple(store.leases())
            due = tuple(sorted(store.rekey_due()))
        except EnvironmentProblem as exc:
            return TeamStatus(
                url, team_id, member_id, None, False, exc.message, waiting, set_aside=aside
            )
        except StationError as exc:
            return TeamStatus(
                url, team_id, member_id, None, True, exc.message, waiting, set_aside=aside
            )
        return TeamStatus(
            url,
            team_id,
            member_id,
            status,
            True,
            None,
            waiting,
            leases,
            rekey_due=due,
            set_aside=aside,
        )


@dataclass(frozen=True)
class Unlocked:
    """What `station team unlock` freed."""

    persona_id: str
    holder: Lease  # the lease as it was: who held it, where, since when, its token


def unlock_persona(
    persona_id: str,
    *,
    reason: str,
    confirm: Callable[[Lease], bool],
    station: Station | None = None,
) -> Unlocked:
    """Free a persona's lease before it expires (a crashed or lost laptop), audited.

    The freed lease's token is moved on, so the holder's later upload with
    it is refused (fencing). The record naming who unlocked, why, and whose
    lease it was goes to this laptop's log and the team's trail (kept here
    and sent later if the server is lost in between).
    """
    from outreach_station.ids import validate_persona_id
    from outreach_station.team.members import check_actor
    from outreach_station.values import validate_reason

    validate_persona_id(persona_id)
    why = validate_reason(reason)
    with using(station) as st:
        store = _team_store(st)
        team_id, key = _me(st, store)
        check_actor(roster(st, store, team_id), key.member_id, action=_("unlock personas"))
        persona = store.get(persona_id)
        held = store.lease(persona_id)
        if held is None:
            raise StateError(
                _("persona {persona_id} is not open on any laptop; nothing to unlock").format(
                    persona_id=persona_id
                )
            )
        if not confirm(held):
            raise UsageError(
                _("persona {persona_id} was not unlocked: not confirmed").format(
                    persona_id=persona_id
                )
            )
        st.audit.check_appendable()  # an unlock without its record must not happen
        freed = store.force_unlock(persona_id)
        if freed is None:
            raise StateError(
                _("persona {persona_id} was closed meanwhile; nothing to unlock").format(
                    persona_id=persona_id
                )
            )
        detail: dict[str, str | int | bool] = {
            "team": team_id,
            "member": key.member_id,
            "reason": why,
            "holder": freed.member,
            "holder_host": freed.host,
            "fencing": freed.token,
        }
        # Into this laptop's log and from there the team's trail (team/audit.py).
        st.record(EventName.TEAM_LEASE_UNLOCKED, persona, **detail)
        return Unlocked(persona_id, freed)
