"""`station doctor`: check that this machine is ready, with a fix for every problem."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station.cli._help import N_
from outreach_station.cli._help import tr as _
from outreach_station.cli._help import tr_n as ngettext
from outreach_station.cli._output import echo_json
from outreach_station.errors import CheckFailed

if TYPE_CHECKING:
    from outreach_station.doctor import Finding

_COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}
# The verdict as a person reads it; --json keeps "ok", "warn", "fail".
_LABELS = {"ok": N_("OK"), "warn": N_("WARN"), "fail": N_("FAIL")}
_LABEL_WIDTH = 6  # "FAIL  "
_NAME_WIDTH = 17


def _width() -> int:
    """The terminal's width, at most 100 so lines stay readable; 80 when not a terminal."""
    if not sys.stdout.isatty():
        return 80
    return max(60, min(100, shutil.get_terminal_size((80, 24)).columns))


def render(findings: tuple[Finding, ...], *, width: int, colour: bool) -> list[str]:
    """Each check on lines of at most `width` characters; its fix on a line of its own."""
    # Translated names can be longer than the English ones: the column grows to fit.
    name_width = max([_NAME_WIDTH, *(len(_(f.name)) + 1 for f in findings)])
    indent = " " * (_LABEL_WIDTH + name_width)
    fix_prefix = _("fix: ")
    lines: list[str] = []
    for finding in findings:
        label = _(_LABELS[finding.verdict]).ljust(_LABEL_WIDTH)
        if colour:
            label = typer.style(label, fg=_COLOURS[finding.verdict], bold=finding.verdict != "ok")
        head = f"{label}{_(finding.name).ljust(name_width)}"
        body = textwrap.wrap(
            finding.detail, width - len(indent), break_on_hyphens=False, break_long_words=True
        ) or [""]
        lines.append(head + body[0])
        lines += [indent + line for line in body[1:]]
        if finding.fix and finding.verdict != "ok":
            lines += textwrap.wrap(
                fix_prefix + finding.fix,
                width,
                initial_indent=indent,
                subsequent_indent=indent + " " * len(fix_prefix),
                break_on_hyphens=False,
                break_long_words=True,
            )
    return lines


def doctor_command(
    *,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON list of {check, verdict, detail, fix}."),
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Skip the sample persona (a headless browser, a few seconds)."
        ),
    ] = False,
) -> None:
    """Check the browser, keyring, workspace, policy, platforms, disk, clock and personas.

    Every item gets a verdict (ok, warn or fail) and, when not ok, how to fix
    it. Exits non-zero when anything fails; warnings alone do not. Last, a
    fresh sample persona (never stored) runs every check `station check` runs.

    Example: station doctor
    """
    from outreach_station.doctor import run_doctor

    report = run_doctor(sample=not quick)
    if as_json:
        echo_json([finding.to_json() for finding in report.findings])
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        for line in render(report.findings, width=_width(), colour=colour):
            typer.echo(line)
        counts = {v: sum(1 for f in report.findings if f.verdict == v) for v in _COLOURS}
        typer.echo(
            "\n"
            + _("{ok} ok, {warn} warnings, {fail} failed").format(
                ok=counts["ok"], warn=counts["warn"], fail=counts["fail"]
            )
        )
    if not report.ok:
        names = ", ".join(_(f.name) for f in report.failed)
        failed = len(report.failed)
        raise CheckFailed(
            ngettext("{n} check(s) failed: {names}", "{n} check(s) failed: {names}", failed).format(
                n=failed, names=names
            )
        )
