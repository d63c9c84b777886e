"""Rendering helpers shared by the CLI commands: JSON, tables, messages."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from outreach_station.cli._help import N_, swedish
from outreach_station.cli._help import tr as _

if TYPE_CHECKING:
    from datetime import datetime

    from outreach_station.context import Station


# The reason rotate offers; station's own, so recorded in English like the others.
DEFAULT_REASON = N_("blocked by the platform")

# Reasons station itself records (stored data, in English); shown in the reader's language.
STATION_REASONS = (
    N_("promoted by rotation"),
    N_("created by rotation"),
    N_("rotation undone"),
    N_("promoted at open"),
    DEFAULT_REASON,
)


def reason_text(reason: str) -> str:
    """A stored status reason as a person reads it: station's own reasons translated."""
    return _(reason) if reason in STATION_REASONS else reason


def echo_json(data: Any) -> None:
    import json  # here: `station --help` and table output need no JSON

    from outreach_station.values import json_safe

    typer.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def safe(value: object) -> str:
    """Text from storage or input, with control and invisible characters escaped.

    The registry and audit log are files anyone with the account can edit:
    what they hold must not reach a terminal as escape codes.
    """
    from outreach_station.values import printable

    return printable(value)


def info(message: str) -> None:
    """A progress or status line for the person: stderr, so stdout stays scriptable."""
    from outreach_station.values import printable_lines

    typer.echo(printable_lines(message), err=True)


def colour_wanted() -> bool:
    """Colour only for a person at a terminal, and never with NO_COLOR set (no-color.org)."""
    import os

    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def platform_colours(platform_ids: Sequence[str]) -> list[str] | None:
    """Each platform's colour (the persona's window frame) as terminal SGR codes, if wanted."""
    if not colour_wanted():
        return None
    from outreach_station.appearance import platform_colour

    return [platform_colour(platform_id).sgr() for platform_id in platform_ids]


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    first_column_sgr: Sequence[str] | None = None,
) -> None:
    """Columns padded to their widest cell; the first column of each row optionally coloured."""
    cells = [
        [str(c) for c in headers],
        *[[("" if c is None else safe(c)) for c in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if first_column_sgr is not None and index > 0:
            # Padded first, so that the escape codes take no column width.
            padded[0] = f"\x1b[{first_column_sgr[index - 1]}m{padded[0]}\x1b[0m"
        typer.echo("  ".join(padded).rstrip(), color=first_column_sgr is not None or None)
        if index == 0:
            typer.echo("  ".join("-" * w for w in widths))


def local_time(moment: datetime, *, seconds: bool = False) -> str:
    """A stored (UTC) time as the person's local time, with its zone: `2026-11-03 10:00 CET`."""
    local = moment.astimezone()
    zone = local.strftime("%Z") or local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {zone}"


def is_tty() -> bool:
    return sys.stderr.isatty()


def is_terminal() -> bool:
    """Whether a person can answer a question: stdin is a terminal (not a pipe or a script)."""
    return sys.stdin.isatty()


class Progress:
    """Progress of a long step on stderr, shown only once it takes more than a moment."""

    def __init__(self, label: str, *, delay: float = 0.5) -> None:
        import time

        self._time = time.monotonic
        self.label = label
        self.started = self._time()
        self.delay = delay
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        if self._time() - self.started < self.delay or total <= 0:
            return
        percent = min(100, done * 100 // total)
        # A line per tenth keeps logs readable; a terminal gets the same lines.
        if percent // 10 > self.shown // 10 or (percent == 100 and self.shown < 100):
            self.shown = percent
            info(
                _("{label}: {percent}% ({done} of {total} MB)").format(
                    label=self.label,
                    percent=percent,
                    done=f"{done / 1e6:.0f}",
                    total=f"{total / 1e6:.0f}",
                )
            )


def progress_for(persona_hint: str = "profile") -> Any:
    """A factory the core calls per step ('sealing', 'unsealing') to get a progress callback."""

    def make(action: str) -> Progress:
        return Progress(f"{action} {persona_hint}")

    return make


def ask_passphrase(purpose: Any) -> str:
    """Ask for the vault passphrase without echo; twice when creating it."""
    from outreach_station.vault import PassphrasePurpose

    creating = purpose is PassphrasePurpose.CREATE
    value: str = typer.prompt(
        _("New vault passphrase") if creating else _("Vault passphrase"),
        hide_input=True,
        confirmation_prompt=creating,
        err=True,
    )
    return value


def station_of(ctx: typer.Context) -> Station:
    """The command's `Station`, made once by the root callback (or here, for a sub-app alone)."""
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and "station" in obj:
        found: Station = obj["station"]
        return found
    from outreach_station.context import Station

    made = Station.load(info)
    ctx.call_on_close(made.close)
    return made


_YES = frozenset({"j", "ja", "y", "yes"})
_NO = frozenset({"n", "nej", "no"})


def confirm(question: str, *, abort: bool = False) -> bool:
    """Ask `question` on stderr; the answer is no unless the person says yes.

    English is click's own `[y/N]`. Swedish asks `[j/N]` and takes j/ja (and
    y/yes, which Swedish keyboards type as well); anything else is asked again.
    With `abort`, a no ends the command (exit 1) as click's abort does.
    """
    if not swedish():
        return bool(typer.confirm(question, abort=abort, err=True))
    while True:
        answer = typer.prompt(
            question, default="", show_default=False, prompt_suffix=" [j/N]: ", err=True
        )
        word = answer.strip().lower()
        if word in _YES:
            return True
        if not word or word in _NO:
            if abort:
                raise typer.Abort
            return False
        info(_("Answer j (yes) or n (no)."))
