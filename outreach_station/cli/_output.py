"""Rendering helpers shared by the CLI commands: JSON, tables, messages."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def info(message: str) -> None:
    """A progress or status line for the person: stderr, so stdout stays scriptable."""
    typer.echo(message, err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            typer.echo("  ".join("-" * w for w in widths))


def is_tty() -> bool:
    return sys.stderr.isatty()
