"""The arguments many commands share, spelled one way: metavars in capitals, one help each."""

from __future__ import annotations

from typing import Annotated

import typer

PersonaArgument = Annotated[
    str,
    typer.Argument(
        metavar="PERSONA",
        help="The persona: its id, the first letters of it, or its label.",
        show_default=False,
    ),
]
PlatformArgument = Annotated[
    str,
    typer.Argument(
        metavar="PLATFORM", help="Platform id, as listed by 'station platforms' (any case)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def find_persona(ctx: typer.Context, text: str, *, platform: str | None = None) -> str:
    """The id of the one persona `text` names; refused (exit 2) when malformed or ambiguous."""
    from outreach_station import lookup
    from outreach_station.cli._output import station_of
    from outreach_station.ids import persona_reference

    persona_reference(text)  # before anything opens
    return lookup.find_persona(text, platform=platform, station=station_of(ctx)).id
