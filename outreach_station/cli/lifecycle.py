"""`station rotate` and `station status`: after a block, and at a glance."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station import ids
from outreach_station.cli._output import echo_json, info, station_of, table

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def rotate_command(
    ctx: typer.Context,
    platform: Annotated[str, typer.Argument(help="The platform that blocked its persona.")],
    *,
    reason: Annotated[
        str, typer.Option(help="What happened, for the record (no personal data).")
    ] = "",
    force: Annotated[
        bool,
        typer.Option("--force", help="Rotate even if the platform was rotated seconds ago."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Replace a blocked persona: mark it blocked and activate a fresh one.

    Closes the blocked persona if it is open, promotes a standby persona (or
    creates a new one) that shares nothing with it, and records it all.

    Example: station rotate demo --reason "account suspended at login"
    """
    from outreach_station import lifecycle
    from outreach_station.values import validate_reason

    ids.validate_platform_id(platform)
    validate_reason(reason)
    result = lifecycle.rotate(
        platform, reason=reason, force=force, notify=info, station=station_of(ctx)
    )
    if json:
        echo_json(
            {
                "platform": result.platform,
                "blocked": result.blocked.id if result.blocked else None,
                "active": result.active.id,
                "created": result.created,
                "closed_session": result.closed_session,
            }
        )
        return
    if result.blocked is None:
        typer.echo(f"{platform}: there was no active persona; nothing marked blocked")
    else:
        typer.echo(f"{platform}: persona {result.blocked.id} marked blocked")
    how = "created" if result.created else "promoted from standby"
    typer.echo(f"{platform}: persona {result.active.id} is now active ({how})")
    typer.echo(f"next: station open {platform}")


def status_command(ctx: typer.Context, *, json: JsonOption = False) -> None:
    """Show, per platform, the active persona, standby pool, what is open, and warnings.

    Example: station status
    """
    from outreach_station import lifecycle

    rows = lifecycle.status(notify=info, station=station_of(ctx))
    for s in rows:
        for warning in s.warnings:
            info(f"station: warning: {s.platform.id}: {warning}")
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
                    "warnings": list(s.warnings),
                }
                for s in rows
            ]
        )
        return
    table(
        ["PLATFORM", "ACTIVE", "STANDBY", "BLOCKED", "OPEN", "WARNINGS"],
        [
            [
                s.platform.id,
                s.active.id if s.active else "-",
                f"{s.standby}/{s.platform.min_standby}" if s.platform.min_standby else s.standby,
                s.blocked,
                ", ".join(s.open_personas) or "-",
                "; ".join(s.warnings) or "-",
            ]
            for s in rows
        ],
    )
