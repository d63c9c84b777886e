"""`station docs`: the guides that come with station, readable on a laptop without the source."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station.cli._help import tr as _
from outreach_station.cli._output import echo_json, table


def docs_command(
    name: Annotated[
        str | None,
        typer.Argument(metavar="DOCUMENT", help="A document's name, e.g. it-deployment."),
    ] = None,
    *,
    path_only: Annotated[
        bool, typer.Option("--path", help="Print only where the file is.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the guides shipped with station, or print one.

    Messages name guides as docs/NAME.md; this finds them on any laptop.

    Example: station docs it-deployment
    """
    from outreach_station import docs

    if name is None:
        shipped = docs.documents()
        if as_json:
            echo_json([d.to_json() for d in shipped])
            return
        table([_("NAME"), _("TITLE"), _("FILE")], [[d.name, d.title, d.path] for d in shipped])
        return
    document = docs.find(name)
    if as_json:
        echo_json(document.to_json())
    elif path_only:
        typer.echo(str(document.path))
    else:
        typer.echo(document.path.read_text(encoding="utf-8"), nl=False)
