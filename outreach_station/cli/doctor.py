"""`station doctor`: check that this machine is ready, with a fix for every problem."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station.cli._output import echo_json, table
from outreach_station.errors import CheckFailed


def doctor_command(
    *,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON list of {check, verdict, detail, fix}."),
    ] = False,
) -> None:
    """Check the browser, keyring, workspace, policy, audit log, disk, clock and personas.

    Every item gets a verdict (ok, warn or fail) and, when not ok, how to fix
    it. Exits non-zero when anything fails; warnings alone do not.

    Example: station doctor
    """
    from outreach_station.doctor import run_doctor

    report = run_doctor()
    if as_json:
        echo_json([finding.to_json() for finding in report.findings])
    else:
        table(
            ["CHECK", "VERDICT", "DETAIL", "FIX"],
            [[f.name, f.verdict.upper(), f.detail, f.fix] for f in report.findings],
        )
    if not report.ok:
        names = ", ".join(f.name for f in report.failed)
        raise CheckFailed(f"{len(report.failed)} check(s) failed: {names}")
