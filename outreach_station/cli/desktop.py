"""`station desktop`: launchers that open each platform's persona without a terminal."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from outreach_station.cli._help import HelpGroup, StationCommand
from outreach_station.cli._help import tr as _
from outreach_station.cli._output import echo_json, info, station_of, table

app = typer.Typer(
    rich_markup_mode=None,
    name="desktop",
    cls=HelpGroup,
    help=(
        "Desktop launchers: install (one per allowed platform), remove.\n\n"
        "Each launcher opens the platform's persona without a terminal and shows "
        "errors as desktop notifications. Example: station desktop install"
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
command = functools.partial(app.command, cls=StationCommand)


@command("install")
def install_command(
    ctx: typer.Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Write a launcher with the platform's name and colour for each platform IT allows.

    Launchers of platforms no longer allowed are removed. Run it again after
    IT changes the platforms.

    Example: station desktop install
    """
    from outreach_station import desktop

    station = station_of(ctx)
    catalogue = station.catalogue
    made = desktop.install(catalogue.platforms[p] for p in sorted(catalogue.platforms))
    if as_json:
        echo_json([launcher.to_json() for launcher in made])
        return
    table(
        [_("PLATFORM"), _("LAUNCHER")],
        [[launcher.platform, launcher.entry] for launcher in made],
    )
    info(
        _("{count} launcher(s) installed; they appear in the desktop's application menu").format(
            count=len(made)
        )
    )


@command("remove")
def remove_command(
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Remove every launcher station installed.

    Example: station desktop remove
    """
    from outreach_station import desktop

    gone = desktop.uninstall()
    if as_json:
        echo_json(list(gone))
        return
    if gone:
        info(
            _("removed {count} launcher(s): {names}").format(count=len(gone), names=", ".join(gone))
        )
    else:
        info(_("removed {count} launcher(s)").format(count=0))
