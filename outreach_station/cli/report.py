"""`station report`: figures for management on personas created, blocked and their lifetimes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station.cli._help import tr as _
from outreach_station.cli._lazy import lazy_module
from outreach_station.cli._output import echo_json, info
from outreach_station.errors import UsageError

if TYPE_CHECKING:
    from outreach_station import report
else:
    report = lazy_module("outreach_station.report")


def parse_since(text: str) -> datetime:
    from outreach_station.audit import parse_since as parse

    return parse(text)


def report_command(
    *,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only personas created and blocks from this date (YYYY-MM-DD or ISO-8601).",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also write one self-contained HTML page with charts, for management.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="With --html: overwrite an existing file.")
    ] = False,
    open_page: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Show the HTML page in your web browser (served on 127.0.0.1 until Ctrl+C; "
            "works where file:// is blocked).",
        ),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Report per platform: personas created, blocks, lifetime until block, blocks per month.

    Aggregates only: no persona ids, labels or kit details appear, so the
    output can be passed on as it is.

    --open shows the page in your web browser; --html FILE writes it for e-mail.

    Example: station report --since 2026-01-01 --open
    """
    if force and html is None:
        raise UsageError(_("--force only applies to --html FILE"))
    if open_page and json:
        raise UsageError(_("--open shows the page in a browser; leave out --json"))
    figures = report.management_report(since=parse_since(since) if since else None)
    if html is not None:
        written = report.write_report_file(html, report.render_html(figures), force=force)
        info(_("wrote {path}").format(path=written))
    if open_page:
        from outreach_station.showpage import show

        show(report.render_html(figures), tell=info)
        return
    if json:
        echo_json(figures.to_json())
    else:
        from outreach_station.values import printable_lines

        # Platform ids come from the registry, a file that can be edited by hand.
        typer.echo(printable_lines(report.render_text(figures)))
