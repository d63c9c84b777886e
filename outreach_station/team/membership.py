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
from dataclasses import dataclass
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
    from outreach_station.storage.postgres import MemberRecord, PostgresStore, TeamConnection
    from outreach_station.team.keys import MemberKey

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


@dataclass(frozen=True)
class TeamStatus:
    url: str | None
    team_id: str | None
    member_id: str | None
    member_status: str | None  # None: not known (server unreachable or not in a team)
    reachable: bool | None  # None: not in a team, or not tried (no password here)
    problem: str | None = None


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
    # Member() refuses a row whose id does not match its key: an edited row is loud.
    return Member(
        member_id=record.member_id,
        display_name=record.display_name,
        host=record.host,
        public_key=record.public_key,
        status=MemberStatus(record.status),
    )


def _roster(store: PostgresStore) -> list[Member]:
    return [_member(r) for r in store.members()]


def roster(store: PostgresStore) -> list[Member]:
    """Every member on the server, each checked against its key (an edited row is refused)."""
    return _roster(store)


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

    station.vault()  # the member key is named after the vault's station id
    return ensure_member_key(station.paths, team_id)


def _register(
    store: PostgresStore, key: MemberKey, *, name: str, founder: bool
) -> tuple[Member, bool]:
    make = Member.founder if founder else Member.pending
    member = make(key.public_key, display_name=name, host=_host())
    made = store.add_member(
        member_id=member.member_id,
        display_name=member.display_name,
        host=member.host,
        public_key=member.public_key,
        status=str(member.status),
    )
    current = next(m for m in _roster(store) if m.member_id == member.member_id)
    return current, made


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
        if not from_keyring:
            _keep_password(connection, password)
        write_team_file(st.paths, TeamFile(team_id=team_id, url=url, member_id=member.member_id))
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
            others = [m for m in _roster(store) if m.approved and m.member_id != key.member_id]
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
        write_team_file(st.paths, TeamFile(team_id=team_id, url=url, member_id=member.member_id))
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
        _member, key = _me(st, store)
        return [
            MemberLine(m.member_id, m.display_name, m.host, m.status, m.member_id == key.member_id)
            for m in _roster(store)
        ]


def approve_member(
    member_id: str, *, confirm: ConfirmCode, station: Station | None = None
) -> Member:
    """Approve a pending member after `confirm` saw its safety code and said yes."""
    with using(station) as st:
        store = _team_store(st)
        team_id, key = _me(st, store)
        approved = approve(
            _roster(store),
            approver_id=key.member_id,
            member_id=member_id,
            team_id=team_id,
            confirm=confirm,
        )
        if not store.approve_member(approved.member_id, approved_by=key.member_id):
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
        removed = remove(_roster(store), remover_id=key.member_id, member_id=member_id)
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
        url = team_url(st)
        joined = read_team_file(st.paths)
        if url is None:
            return TeamStatus(None, None, None, None, None)
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
                f"no password for the team server {connection.where} in the OS keyring; "
                "run station team join URL",
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
        except EnvironmentProblem as exc:
            return TeamStatus(url, team_id, member_id, None, False, exc.message)
        except StationError as exc:
            return TeamStatus(url, team_id, member_id, None, True, exc.message)
        return TeamStatus(url, team_id, member_id, status, True)
