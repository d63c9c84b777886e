"""`station check <persona>`: what a website would catch, checked headless."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station.cli._help import tr as _
from outreach_station.cli._lazy import lazy_module
from outreach_station.cli._output import echo_json, info, station_of, table
from outreach_station.cli._params import PersonaArgument, find_persona
from outreach_station.errors import CheckFailed

if TYPE_CHECKING:
    from outreach_station import session
else:
    session = lazy_module("outreach_station.session")


def check_command(
    ctx: typer.Context,
    persona_id: PersonaArgument,
    *,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Open a persona headless against the built-in inspector and check its coherence.

    Every value a website can read is collected from the page, an iframe,
    dedicated, shared and service workers, the HTTP headers and WebRTC, and
    compared. Prints the device hash: what a fingerprinter that ignores the
    screen, window, languages, time zone and user agent sees. Exits non-zero
    if any check fails.

    Example: station check k7q2m9x4ab3d
    """
    persona = find_persona(ctx, persona_id)
    result = session.check_persona(persona, notify=info, station=station_of(ctx))
    if json:
        echo_json(
            {
                "persona": result.persona.id,
                "ok": result.ok,
                "device_hash": result.device_hash,
                "checks": [
                    {"name": c.name, "ok": c.ok, "expected": c.expected, "seen": c.seen}
                    for c in result.checks
                ],
            }
        )
    else:
        table(
            [_("CHECK"), _("RESULT"), _("EXPECTED"), _("SEEN")],
            [
                [c.title, _("pass") if c.ok else _("FAIL"), c.expected, c.seen]
                for c in result.checks
            ],
        )
        typer.echo(
            _("device hash: {hash}").format(
                hash=result.device_hash or _("none (the page computed none)")
            )
        )
    failed = [c.title for c in result.checks if not c.ok]
    if failed:
        raise CheckFailed(
            _("{count} check(s) failed: {names}").format(count=len(failed), names=", ".join(failed))
        )
