"""`station open`: the start of a shift."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_station.cli._help import N_
from outreach_station.cli._help import tr as _
from outreach_station.cli._output import Progress, ask_passphrase, info, safe, station_of
from outreach_station.cli._params import find_persona
from outreach_station.errors import UsageError

if TYPE_CHECKING:
    from outreach_station.inspector.checks import Check
    from outreach_station.vault import ProgressCallback

# Sealing 150 MB takes a third of a second on a fast disk and many seconds on
# a slow one: from this size on, progress is shown however fast it goes, so
# a log shows why closing took a while and a person always sees it moving.
LARGE_PROFILE_BYTES = 100_000_000
BAD_URL = N_(
    "--url must be an http:// or https:// address of at most 2048 printable "
    "characters without spaces"
)


PROGRESS = {
    "sealing": N_("sealing profile"),
    "unsealing": N_("unsealing profile"),
    "downloading": N_("downloading profile from the team server"),
    "uploading": N_("uploading profile to the team server"),
}


def profile_progress(action: str) -> ProgressCallback:
    """Progress of sealing or unsealing: after a moment, or at once for a large profile."""
    known = PROGRESS.get(action)
    bar = Progress(_(known) if known else _("{action} profile").format(action=action))

    def report(done: int, total: int) -> None:
        if total >= LARGE_PROFILE_BYTES:
            bar.delay = 0.0
        bar(done, total)

    return report


def open_command(
    ctx: typer.Context,
    platform: Annotated[
        str | None,
        typer.Argument(
            metavar="[PLATFORM]",
            help="Platform id, e.g. 'demo' (any case); without it, the platforms are listed.",
            show_default=False,
        ),
    ] = None,
    *,
    persona: Annotated[
        str | None,
        typer.Option(
            metavar="PERSONA",
            help="Open this persona of the platform (id, first letters of it, or label) "
            "instead of the active one.",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="Start at this http(s) address instead of the start page."
        ),
    ] = None,
    headless: Annotated[
        bool,
        typer.Option("--headless", help="No window (for machines without a display and checks)."),
    ] = False,
) -> None:
    """Open a platform in its persona's own isolated browser.

    Stays in the foreground until you close the last window (or press
    Ctrl-C); the session is saved either way. The first open of a platform
    creates its persona. Headless, the demo platform prints what it saw.
    Without a platform, lists the platforms to choose from.

    Example: station open demo
    """
    from outreach_station import ids, session
    from outreach_station.values import url_is_plain

    if platform is None:
        if persona is not None or url is not None:
            raise UsageError(_("--persona and --url need a platform: station open PLATFORM"))
        from outreach_station.cli.platforms import platforms_command

        platforms_command(ctx)
        info(_("open one with: station open PLATFORM"))
        return
    # Checked before the vault or the browser is touched.
    platform = ids.platform_id(platform)
    if persona is not None:
        ids.persona_reference(persona)
    if url is not None and not (url.startswith(("http://", "https://")) and url_is_plain(url)):
        raise UsageError(_(BAD_URL))
    if persona is not None and not ids.is_persona_id(persona):
        # A whole id goes as it is: the session says when it is another platform's.
        persona = find_persona(ctx, persona, platform=platform)
    result = session.open_platform(
        platform,
        persona_id=persona,
        url=url,
        headless=headless,
        notify=info,
        on_report=print_findings if headless else None,
        passphrase_prompt=ask_passphrase,
        progress=profile_progress,
        station=station_of(ctx),
    )
    info(
        _("persona {persona} closed ({why}); saved at {time}, {size} sealed").format(
            persona=result.persona.id,
            why=session.closing_words(result),
            time=_local_time(result.saved_at),
            size=_size(result.saved_bytes),
        )
    )


def _local_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%H:%M %Z")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return _("{count} bytes").format(count=count)


def print_findings(report: Mapping[str, Any], checks: list[Check]) -> None:
    """What the demo's inspector saw, for a person without a window to look at."""
    main = report.get("scopes", {}).get("main") or {}
    screen = report.get("screen", {})
    typer.echo(_("What a website sees of this persona:"))
    cookies = ", ".join(report.get("storage", {}).get("cookies") or []) or _("none")
    rows = [
        (_("user agent"), main.get("user_agent")),
        (_("languages"), ", ".join(main.get("languages") or [])),
        ("Accept-Language", report.get("headers", {}).get("accept-language")),
        (_("time zone"), main.get("time_zone")),
        (_("screen"), f"{screen.get('width')}x{screen.get('height')}"),
        (_("window"), f"{screen.get('inner_width')}x{screen.get('inner_height')}"),
        ("webdriver", main.get("webdriver")),
        (_("cookies present"), cookies),
        (_("fingerprint hash"), report.get("hash")),
    ]
    width = max(17, *(len(key) + 1 for key, _value in rows))
    for key, value in rows:
        # What the page reported is the page's word: escaped before it reaches the terminal.
        typer.echo(f"  {key + ':':<{width}} {safe(value)}")
    failed = [c for c in checks if not c.ok]
    typer.echo(
        _("Coherence checks: {passed} of {total} pass").format(
            passed=len(checks) - len(failed), total=len(checks)
        )
    )
    for check in failed:
        typer.echo(
            _("  FAIL {check}: expected {expected}, saw {seen}").format(
                check=check.title, expected=safe(check.expected), seen=safe(check.seen)
            )
        )
    typer.echo(_("Press Ctrl-C to end the session."))
