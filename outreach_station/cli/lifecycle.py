"""`station rotate` and `station status`: after a block, and at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station import ids
from outreach_station.cli._help import tr as _
from outreach_station.cli._output import (
    DEFAULT_REASON,
    confirm,
    echo_json,
    info,
    is_terminal,
    platform_colours,
    reason_text,
    safe,
    station_of,
    table,
)
from outreach_station.errors import UsageError

if TYPE_CHECKING:
    from outreach_station.context import Station
    from outreach_station.lifecycle import PlatformStatus
    from outreach_station.personas import Persona

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def rotate_command(
    ctx: typer.Context,
    platform: Annotated[
        str, typer.Argument(metavar="PLATFORM", help="The platform that blocked its persona.")
    ],
    *,
    reason: Annotated[
        str,
        typer.Option(
            metavar="TEXT",
            help="What happened, for the record (no personal data); asked if not given.",
        ),
    ] = "",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
    undo: Annotated[
        bool,
        typer.Option(
            "--undo",
            help="Take the last rotation back: the blocked persona active again, the new one "
            "standby (within the policy's rotation.undo_minutes, 15 by default).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Rotate even if the platform was rotated seconds ago."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Replace a blocked persona: mark it blocked and activate a fresh one.

    Closes the blocked persona if it is open, promotes a standby persona (or
    creates a new one) that shares nothing with it, and records it all. On a
    terminal it shows what it will block and asks first; scripts pass --yes.
    A mistaken rotation can be undone for a while with --undo.

    Example: station rotate demo --reason "account suspended at login"
    """
    from outreach_station import lifecycle
    from outreach_station.values import validate_reason

    platform = ids.platform_id(platform)
    validate_reason(reason)
    if undo and (reason or force):
        raise UsageError(
            _("--undo takes no --reason or --force: it only takes the last rotation back")
        )
    # Refused before anything is read or written: a script that forgot --yes changes nothing.
    if not yes and not is_terminal():
        if undo:
            raise UsageError(
                _("undoing a rotation: confirm on a terminal, or pass --yes in scripts")
            )
        raise UsageError(
            _(
                "rotating blocks the platform's active persona: confirm on a terminal, "
                "or pass --yes in scripts"
            )
        )
    station = station_of(ctx)
    if undo:
        _undo(platform, station, yes=yes, json=json)
        return
    if not yes:
        reason = _confirm_rotation(platform, reason, station)
    result = lifecycle.rotate(platform, reason=reason, force=force, notify=info, station=station)
    if json:
        echo_json(
            {
                "platform": result.platform,
                "blocked": result.blocked.id if result.blocked else None,
                "active": result.active.id,
                "created": result.created,
                "closed_session": result.closed_session,
                "reason": result.blocked.status_reason if result.blocked else None,
            }
        )
        return
    if result.blocked is None:
        typer.echo(
            _("{platform}: there was no active persona; nothing marked blocked").format(
                platform=platform
            )
        )
    else:
        typer.echo(
            _("{platform}: persona {persona} marked blocked ({reason})").format(
                platform=platform,
                persona=named(result.blocked),
                reason=safe(reason_text(result.blocked.status_reason)),
            )
        )
    if result.created:
        now = _("{platform}: persona {persona} is now active (created)")
    else:
        now = _("{platform}: persona {persona} is now active (promoted from standby)")
    typer.echo(now.format(platform=platform, persona=named(result.active)))
    if result.blocked is not None:
        typer.echo(_("a mistake? station rotate {platform} --undo").format(platform=platform))
    typer.echo(_("next: station open {platform}").format(platform=platform))


def named(persona: Persona) -> str:
    """A persona as a person knows it: its id, and its label when it has one."""
    return f"{persona.id} ({safe(persona.label)})" if persona.label else persona.id


def _confirm_rotation(platform: str, reason: str, station: Station) -> str:
    from outreach_station import rotation

    seen = rotation.preview(platform, station=station)
    name = f"{safe(seen.platform.name)} ({seen.platform.id})"
    if seen.current is None:
        info(
            _(
                "{platform} has no active persona: nothing is blocked, "
                "a fresh persona becomes active."
            ).format(platform=name)
        )
    else:
        label = safe(seen.current.label) or _("no label")
        user = safe(seen.username) or _("none recorded")
        info(_("Rotate {platform}?").format(platform=name))
        info(
            _("  blocks persona {persona} ({label}), kit username: {user}").format(
                persona=seen.current.id, label=label, user=user
            )
        )
    if not reason:
        # Offered in the reader's language; taken as is, it is recorded as station's
        # own English reason (the audit trail stays English; persona show translates it).
        offered = _(DEFAULT_REASON)
        reason = typer.prompt(
            _("Reason, for the record (no personal data)"), default=offered, err=True
        ).strip()
        if reason == offered:
            reason = DEFAULT_REASON
    confirm(_("Rotate now?"), abort=True)
    return reason


def _undo(platform: str, station: Station, *, yes: bool, json: bool) -> None:
    from outreach_station import rotation

    if not yes:
        confirm(
            _(
                "Undo the last rotation of {platform} (the blocked persona becomes active again)?"
            ).format(platform=platform),
            abort=True,
        )
    result = rotation.undo(platform, notify=info, station=station)
    if json:
        echo_json(
            {
                "platform": result.platform,
                "active": result.restored.id,
                "standby": result.demoted.id,
            }
        )
        return
    typer.echo(
        _("{platform}: persona {persona} is active again").format(
            platform=platform, persona=named(result.restored)
        )
    )
    typer.echo(
        _("{platform}: persona {persona} is back in standby").format(
            platform=platform, persona=named(result.demoted)
        )
    )


def _opened(s: PlatformStatus) -> list[str]:
    """Each open persona, in a team with who holds it: `k7q2m9x4ab3d (NAME on HOST)`.

    The member's name as they joined the team, or their member id if the server has none.
    """
    held = {h.persona: h for h in s.held}
    return [
        _("{persona} ({member} on {host})").format(
            persona=p, member=safe(held[p].name or held[p].member), host=safe(held[p].host)
        )
        if p in held
        else p
        for p in s.open_personas
    ]


def status_command(ctx: typer.Context, *, json: JsonOption = False) -> None:
    """Show, per platform, the active persona, standby pool, what is open, and warnings.

    Example: station status
    """
    from outreach_station import lifecycle

    rows = lifecycle.status(notify=info, station=station_of(ctx))
    for s in rows:
        for warning in s.warnings:
            info(
                _("station: warning: {platform}: {warning}").format(
                    platform=s.platform.id, warning=warning
                )
            )
    if json:
        echo_json(
            [
                {
                    "platform": s.platform.id,
                    "active": s.active.id if s.active else None,
                    "standby": s.standby,
                    "min_standby": s.platform.min_standby,
                    "blocked": s.blocked,
                    "open": list(s.open_personas),
                    # In a team: who holds each open persona, on which laptop, since when.
                    "held": [
                        {
                            "persona": h.persona,
                            "member": h.member,
                            "name": h.name or None,
                            "host": h.host,
                            "since": h.since.isoformat(),
                        }
                        for h in s.held
                    ],
                    "warnings": list(s.warnings),
                }
                for s in rows
            ]
        )
        return
    table(
        [_("PLATFORM"), _("ACTIVE"), _("STANDBY"), _("BLOCKED"), _("OPEN"), _("WARNINGS")],
        [
            [
                s.platform.id,
                s.active.id if s.active else "-",
                f"{s.standby}/{s.platform.min_standby}" if s.platform.min_standby else s.standby,
                s.blocked,
                ", ".join(_opened(s)) or "-",
                "; ".join(s.warnings) or "-",
            ]
            for s in rows
        ],
        first_column_sgr=platform_colours([s.platform.id for s in rows]),
    )
