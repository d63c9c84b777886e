"""`station platforms`: the platform profiles station knows."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station.cli._help import tr as _
from outreach_station.cli._output import echo_json, info, platform_colours, station_of, table


def platforms_command(
    ctx: typer.Context,
    *,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the platforms (built-in demo and profile files) and any broken profiles.

    Example: station platforms --json
    """
    catalogue = station_of(ctx).catalogue
    for problem in catalogue.problems:
        info(_("station: warning: {message}").format(message=problem.message))
    items = sorted(catalogue.platforms.values(), key=lambda p: (not p.builtin, p.id))
    if json:
        echo_json(
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "start_url": p.start_url,
                    "device": p.device,
                    "locale": p.locale,
                    "languages": list(p.accept_languages),
                    "timezone": p.timezone,
                    "min_standby": p.min_standby,
                    "source": p.source,
                }
                for p in items
            ]
        )
        return
    table(
        [_("ID"), _("NAME"), _("DEVICE"), _("LOCALE"), _("TIMEZONE"), _("START URL")],
        [[p.id, p.name, p.device, p.locale, p.timezone, p.start_url] for p in items],
        first_column_sgr=platform_colours([p.id for p in items]),
    )
