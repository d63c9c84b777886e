"""`station open`: the start of a shift."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station import api
from outreach_station.cli._output import info


def open_command(
    platform: Annotated[str, typer.Argument(help="Platform id, e.g. 'demo'.")],
    *,
    persona: Annotated[
        str | None,
        typer.Option(help="Open this persona of the platform instead of the active one."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Start at this http(s) address instead of the start page.")
    ] = None,
    headless: Annotated[
        bool,
        typer.Option("--headless", help="No window (for machines without a display and checks)."),
    ] = False,
) -> None:
    """Open a platform in its persona's own isolated browser.

    Stays in the foreground until you close the last window (or press
    Ctrl-C); the session is saved either way. The first open of a platform
    creates its persona.

    Example: station open demo
    """
    result = api.open_platform(
        platform, persona_id=persona, url=url, headless=headless, notify=info
    )
    info(f"persona {result.persona.id} closed ({result.outcome.ended_by})")
