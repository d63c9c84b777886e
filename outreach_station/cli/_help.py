"""How `--help` looks: one metavar style, and command lists that are never cut.

typer writes a required argument as `{PLATFORM}` in the usage line and click
cuts each command's summary at 45 characters with "..."; a person reading
`station --help` on a laptop gets neither. Every command uses `StationCommand`
and every group `HelpGroup` (tests/cli/test_help.py walks them all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import HelpFormatter  # typer vendors click


def _plain(piece: str) -> str:
    # `{PLATFORM}` is typer's mark for "required"; a bare PLATFORM already says it.
    return piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece


class StationCommand(TyperCommand):
    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]


class HelpGroup(TyperGroup):
    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]

    def format_commands(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                # Its whole first sentence, wrapped by the formatter, never cut with "...".
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
