"""`station team ...`: set up the team's server, join it, and manage its members.

Passwords are asked on the terminal (never an argument) or read from the
OS keyring. Core modules are imported inside the commands: `station --help`
must not load the team's crypto or the PostgreSQL driver.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_station.cli._help import N_, HelpGroup, StationCommand
from outreach_station.cli._help import tr as _
from outreach_station.cli._output import ask_passphrase, echo_json, info, safe, station_of, table
from outreach_station.cli._output import confirm as ask

if TYPE_CHECKING:
    from outreach_station.team.members import Member
    from outreach_station.team.membership import Joined

app = typer.Typer(
    rich_markup_mode=None,
    name="team",
    cls=HelpGroup,
    help=(
        "Team mode: init, join, members, approve, remove, unlock, status, push.\n\n"
        "Shares personas between the team's laptops through the organisation's "
        "PostgreSQL server. Example: station team status"
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UrlArgument = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="The team server's URL with station's role and no password, e.g. "
        "postgresql://station@db.clinic.example:5432/station?sslmode=verify-full",
        show_default=False,
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="Your name as colleagues see it (default: login)."),
]


FOUNDED = N_("founded team {team} on {server}")
JOINED = N_("joined team {team} on {server}")
ALREADY_IN = N_("already in team {team} on {server}")


def _terminal() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _ask_password(prompt: str) -> str | None:
    """A password typed on the terminal, never echoed; None without a terminal."""
    if not _terminal():
        return None
    value: str = typer.prompt(prompt, hide_input=True, err=True)
    return value


def _member_status(status: object) -> str:
    """A member's status in the reader's language; --json keeps the stored word."""
    from outreach_station.team.members import status_word

    return status_word(status)


def _render_joined(joined: Joined, *, json: bool, what: str) -> None:
    member = joined.member
    if json:
        echo_json(
            {
                "team_id": joined.team_id,
                "server": joined.where,
                "member_id": member.member_id,
                "status": str(member.status),
                "safety_code": joined.safety_code,
            }
        )
        return
    typer.echo(_(what).format(team=safe(joined.team_id), server=safe(joined.where)))
    typer.echo(
        _("member id:   {member} ({status})").format(
            member=member.member_id, status=_member_status(member.status)
        )
    )
    typer.echo(_("safety code: {code}").format(code=joined.safety_code))
    if not member.approved:
        info(
            _(
                "an approved member now runs 'station team approve {member}' "
                "and compares this safety code with you"
            ).format(member=member.member_id)
        )


def init_command(
    ctx: typer.Context,
    url: UrlArgument,
    *,
    owner_role: Annotated[
        str,
        typer.Option(
            "--owner-role", metavar="ROLE", help="The database role that owns the schema."
        ),
    ] = "station_owner",
    name: NameOption = None,
    json: JsonOption = False,
) -> None:
    """Create the team's schema on the server and make this laptop its first member.

    Run once, by IT or the first staff member. The schema is made as the
    owner role (its password is asked on the terminal or read from the OS
    keyring, and never kept); station's own role's password is asked too and
    kept in the OS keyring.

    Example: station team init 'postgresql://station@db.clinic.example/station?sslmode=verify-full'
    """
    from outreach_station.team import membership

    joined = membership.init_team(
        url,
        ask_password=_ask_password,
        owner_role=owner_role,
        display_name=name,
        station=station_of(ctx),
    )
    _render_joined(joined, json=json, what=FOUNDED if joined.registered else ALREADY_IN)


def join_command(
    ctx: typer.Context, url: UrlArgument, *, name: NameOption = None, json: JsonOption = False
) -> None:
    """Join the team on this server: register this laptop's key as a pending member.

    The database password is asked on the terminal (or read from the OS
    keyring) and kept in the OS keyring. The safety code printed here is
    what the colleague approving you compares with theirs.

    Example: station team join 'postgresql://station@db.clinic.example/station?sslmode=verify-full'
    """
    from outreach_station.team import membership

    joined = membership.join_team(
        url, ask_password=_ask_password, display_name=name, station=station_of(ctx)
    )
    _render_joined(joined, json=json, what=JOINED if joined.registered else ALREADY_IN)


def members_command(ctx: typer.Context, *, json: JsonOption = False) -> None:
    """List the team's members: id, name, laptop, status, and which one is you.

    Example: station team members --json
    """
    from outreach_station.team import membership

    lines = membership.list_members(station=station_of(ctx))
    if json:
        echo_json(
            [
                {
                    "id": m.member_id,
                    "name": m.display_name,
                    "host": m.host,
                    "status": str(m.status),
                    "verified": m.unverified is None,
                    "you": m.you,
                }
                for m in lines
            ]
        )
    else:
        table(
            [_("ID"), _("NAME"), _("HOST"), _("STATUS"), ""],
            [
                [
                    m.member_id,
                    m.display_name,
                    m.host,
                    _("unverified") if m.unverified else _member_status(m.status),
                    _("you") if m.you else "",
                ]
                for m in lines
            ],
        )
    for m in lines:
        if m.unverified:
            info(m.unverified)


def approve_command(
    ctx: typer.Context,
    member: Annotated[
        str,
        typer.Argument(metavar="MEMBER", help="The member id, as in 'station team members'."),
    ],
    *,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="For scripts: the safety code was compared another way."),
    ] = False,
) -> None:
    """Approve a pending member after comparing its safety code with the newcomer.

    On a terminal the code is shown and you confirm that the newcomer reads
    out the same one. Without a terminal, only with --yes.

    Example: station team approve k3q7x2mzp4a6b5cd
    """
    from outreach_station.errors import UsageError
    from outreach_station.team import membership
    from outreach_station.team.identity import validate_member_id

    member_id = validate_member_id(member)

    def confirm(newcomer: Member, code: str) -> bool:
        if yes:
            return True
        if not _terminal():
            raise UsageError(
                _(
                    "no terminal to compare the safety code on; run this on a terminal, or pass "
                    "--yes if the code was compared another way"
                )
            )
        info(
            _("member {member}: {name} on {host}").format(
                member=newcomer.member_id,
                name=safe(newcomer.display_name),
                host=safe(newcomer.host),
            )
        )
        info(_("safety code: {code}").format(code=code))
        return ask(_("Does the newcomer see exactly this code?"))

    approved = membership.approve_member(member_id, confirm=confirm, station=station_of(ctx))
    typer.echo(
        _("approved {member} ({name})").format(
            member=approved.member_id, name=safe(approved.display_name)
        )
    )


def remove_command(
    ctx: typer.Context,
    member: Annotated[
        str,
        typer.Argument(metavar="MEMBER", help="The member id, as in 'station team members'."),
    ],
) -> None:
    """Remove a member: its wrapped persona keys are deleted now, and each persona it
    could read gets a new key at its next seal.

    What removal cannot undo: whatever the member already opened, copied or
    wrote down stays theirs (see docs/team.md).

    Example: station team remove k3q7x2mzp4a6b5cd
    """
    from outreach_station.team import membership
    from outreach_station.team.identity import validate_member_id

    member_id = validate_member_id(member)
    removed, personas = membership.remove_member(member_id, station=station_of(ctx))
    typer.echo(
        _("removed {member}; {count} persona(s) get a new key at next seal").format(
            member=removed.member_id, count=len(personas)
        )
    )


def status_command(ctx: typer.Context, *, json: JsonOption = False) -> None:
    """Show the team this laptop is in: server, team id, your member id and status.

    Example: station team status --json
    """
    from outreach_station.team import membership

    status = membership.team_status(station=station_of(ctx))
    data: dict[str, Any] = {
        "url": status.url,
        "team_id": status.team_id,
        "member_id": status.member_id,
        "status": status.member_status,
        "reachable": status.reachable,
        "problem": status.problem,
        "pending": [
            {
                "persona": p.persona_id,
                "generation": p.generation,
                "token": p.token,
                "recorded": p.recorded,
                "problem": p.problem or None,
            }
            for p in status.pending
        ],
        "set_aside": [
            {"persona": s.persona_id, "generation": s.generation, "path": str(s.path)}
            for s in status.set_aside
        ],
        "leases": None
        if status.leases is None
        else [
            {
                "persona": lease.persona_id,
                "member": lease.member,
                "name": lease.member_name or None,
                "host": lease.host,
                "since": lease.since.isoformat(),
                "expires": lease.expires.isoformat(),
                "expired": lease.expired,
            }
            for lease in status.leases
        ],
        "rekey_due": None if status.rekey_due is None else list(status.rekey_due),
    }
    if json:
        echo_json(data)
        return
    if status.url is None:
        typer.echo(_("not in a team: personas are kept on this laptop only"))
        return
    reach = {True: _("yes"), False: _("no"), None: _("not tried")}[status.reachable]
    rows = [
        (_("server"), status.url),
        (_("team"), status.team_id or "?"),
        (_("member"), status.member_id or "?"),
        (
            _("status"),
            _member_status(status.member_status) if status.member_status else _("unknown"),
        ),
        (_("reachable"), reach),
    ]
    width = max(11, *(len(key) + 2 for key, _value in rows))
    for key, value in rows:
        typer.echo(f"{key + ':':<{width}}{safe(value)}")
    for upload in status.pending:
        typer.echo(
            _(
                "waiting for the server: persona {persona} generation {generation} "
                "(sealed {recorded})"
            ).format(
                persona=upload.persona_id, generation=upload.generation, recorded=upload.recorded
            )
        )
    for kept in status.set_aside:
        typer.echo(
            _(
                "kept aside: persona {persona} generation {generation} in {path} (the server "
                "had a newer one; see docs/team.md)"
            ).format(persona=kept.persona_id, generation=kept.generation, path=safe(str(kept.path)))
        )
    for lease in status.leases or ():
        line = _("open: persona {persona} by {holder}").format(
            persona=lease.persona_id, holder=safe(lease.describe())
        )
        typer.echo(line + (_(" (lease expired)") if lease.expired else ""))
    for persona_id in status.rekey_due or ():
        typer.echo(
            _("re-key due: persona {persona} gets a new key at its next open").format(
                persona=persona_id
            )
        )
    if status.problem:
        info(status.problem)


def unlock_command(
    ctx: typer.Context,
    persona: Annotated[
        str,
        typer.Argument(metavar="PERSONA", help="The persona id, as in 'station persona list'."),
    ],
    *,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", metavar="TEXT", help="Why it is freed (required; in the audit trail)."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (for scripts).")
    ] = False,
) -> None:
    """Free a persona that a crashed or lost laptop still holds, before its lease expires.

    The laptop that held it can no longer upload what it sealed under that
    lease. Recorded in the team's audit trail with your member id, the
    reason and whose lease it was. Asks for confirmation on a terminal.

    Example: station team unlock k7q2m9x4ab3d --reason "laptop 4 crashed"
    """
    from outreach_station.errors import UsageError
    from outreach_station.storage.postgres import Lease
    from outreach_station.team import membership

    if not reason:
        raise UsageError(
            _(
                "station team unlock needs --reason TEXT: why the lease is freed "
                "(it goes into the audit trail)"
            )
        )

    def confirm(held: Lease) -> bool:
        if yes:
            return True
        if not _terminal():
            raise UsageError(_("no terminal to confirm on; run this on a terminal, or pass --yes"))
        info(
            _("persona {persona} is open by {holder}").format(
                persona=held.persona_id, holder=safe(held.describe())
            )
        )
        return ask(_("Free it? That laptop can then no longer upload this session's changes."))

    done = membership.unlock_persona(
        persona, reason=reason, confirm=confirm, station=station_of(ctx)
    )
    typer.echo(
        _("unlocked persona {persona}: it was open by {holder}").format(
            persona=done.persona_id, holder=safe(done.holder.describe())
        )
    )


def push_command(ctx: typer.Context, *, json: JsonOption = False) -> None:
    """Move this laptop's own personas (made before it joined) into the team.

    Each persona keeps its id; its sealed profile is uploaded as a close
    uploads one and its key is wrapped for every approved member, so any
    member's laptop opens it. From then on the team's copy is the persona:
    the laptop's own record of it is retired. A push cut off (server lost,
    process killed) loses nothing: run it again and it continues. Kit
    secrets and proxy passwords go to the team server sealed, and leave this
    laptop's keyring. A laptop in passphrase mode asks for its passphrase once.

    Example: station team push --json
    """
    from outreach_station.cli.open import profile_progress
    from outreach_station.team.push import push

    result = push(
        station=station_of(ctx),
        notify=info,
        progress=profile_progress,
        passphrase_prompt=ask_passphrase,
    )
    if json:
        echo_json(
            {
                "team_id": result.team_id,
                "server": result.server,
                "personas": [p.to_json() for p in result.personas],
            }
        )
    elif not result.personas:
        typer.echo(
            _(
                "nothing to push: every persona of this laptop is in team {team} "
                "already (or retired)"
            ).format(team=safe(result.team_id))
        )
    for done in result.personas:
        if json:
            break
        if done.outcome == "pushed":
            typer.echo(
                _(
                    "pushed persona {persona} ({platform}) to team {team}: {status}, "
                    "generation {generation}, {mb} MB sent"
                ).format(
                    persona=done.persona_id,
                    platform=done.platform,
                    team=safe(result.team_id),
                    status=done.status,
                    generation=done.generation,
                    mb=f"{done.bytes_sent / 1e6:.1f}",
                )
            )
        else:
            info(
                _("not pushed: persona {persona} ({platform}): {problem}").format(
                    persona=done.persona_id, platform=done.platform, problem=safe(done.problem)
                )
            )
    if any(p.outcome == "pushed" for p in result.personas) and not json:
        info(
            _(
                "kit secrets and proxy passwords stay in this laptop's keyring; "
                "colleagues' laptops do not get them"
            )
        )
    if result.refused:
        raise typer.Exit(result.refused[0].exit_code)


for _name, _command in (
    ("init", init_command),
    ("join", join_command),
    ("members", members_command),
    ("approve", approve_command),
    ("remove", remove_command),
    ("status", status_command),
    ("unlock", unlock_command),
    ("push", push_command),
):
    app.command(_name, cls=StationCommand)(_command)
