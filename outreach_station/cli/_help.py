"""How `--help` looks: one metavar style, command lists never cut, the reader's language.

typer writes a required argument as `{PLATFORM}` in the usage line and click
cuts each command's summary at 45 characters with "..."; a person reading
`station --help` on a laptop gets neither. Every command uses `StationCommand`
and every group `HelpGroup` (tests/cli/test_help.py walks them all).

Help texts (`help=`, docstrings) and the words click writes itself ("Usage:",
"Options", ...) are translated here, as the command is built and its help
formatted. Under an English locale nothing is looked up, and the catalogue
module is never loaded: `station --help` is what a person types first.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import HelpFormatter  # typer vendors click


def N_(message: str) -> str:
    # The same marker as i18n.N_: importing that module would load it for every `--help`.
    return message


USAGE = N_("Usage: ")
ARGUMENTS = N_("Arguments")
OPTIONS = N_("Options")
COMMANDS = N_("Commands")
SHOW_HELP = N_("Show this message and exit.")
REQUIRED = N_("required")
DEFAULT = N_("default: {default}")

_LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def swedish() -> bool:
    """Whether the reader's locale asks for Swedish (`i18n.language()` decides).

    No locale variable mentioning "sv" means English, without loading `i18n`.
    """
    if not any("sv" in os.environ.get(name, "").lower() for name in _LOCALE_VARIABLES):
        return False
    from outreach_station import i18n

    return i18n.language() == "sv"


def tr(message: str) -> str:
    """`message` in the reader's language; English costs no import and no lookup."""
    if not swedish():
        return message
    from outreach_station import i18n

    return i18n._(message)


def tr_n(singular: str, plural: str, n: int) -> str:
    """`singular` or `plural` for `n`, in the reader's language."""
    if not swedish():
        return singular if n == 1 else plural
    from outreach_station import i18n

    return i18n.ngettext(singular, plural, n)


def _translated(text: str | None) -> str | None:
    if not text:
        return text
    import inspect

    from outreach_station import i18n

    # typer passes docstrings through inspect.getdoc, and help= texts through cleandoc.
    return i18n._(inspect.cleandoc(text))


_EXTRA = re.compile(r"  \[([^\[\]]*)\]$")


def _extra_in_swedish(text: str) -> str:
    """typer's `[default: X; required]` after an option's help, in the reader's language."""
    match = _EXTRA.search(text)
    if match is None:
        return text
    parts = []
    for part in match.group(1).split("; "):
        if part == "required":
            parts.append(tr(REQUIRED))
        elif part.startswith("default: "):
            parts.append(tr(DEFAULT).format(default=part[len("default: ") :]))
        else:
            parts.append(part)
    return f"{text[: match.start()]}  [{'; '.join(parts)}]"


# click's own placeholders in a usage line.
USAGE_PIECES = (N_("[OPTIONS]"), N_("COMMAND [ARGS]..."))


def _plain(piece: str) -> str:
    # `{PLATFORM}` is typer's mark for "required"; a bare PLATFORM already says it.
    if piece in USAGE_PIECES:
        return tr(piece)
    return piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece


class _Translated:
    """What commands and groups share: help texts and click's own words translated."""

    help: str | None
    short_help: str | None
    epilog: str | None
    params: list[Any]

    def _translate_texts(self) -> None:
        if not swedish():
            return
        self.help = _translated(self.help)
        self.short_help = _translated(self.short_help)
        self.epilog = _translated(self.epilog)
        for param in self.params:
            if getattr(param, "help", None):
                param.help = _translated(param.help)

    def _format_options_translated(self, ctx: typer.Context, formatter: HelpFormatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            record = param.get_help_record(ctx)
            if record is not None:
                record = (record[0], _extra_in_swedish(record[1]))
                if param.param_type_name == "argument":
                    arguments.append(record)
                elif param.param_type_name == "option":
                    options.append(record)
        for title, rows in ((ARGUMENTS, arguments), (OPTIONS, options)):
            if rows:
                with formatter.section(tr(title)):
                    formatter.write_dl(rows)


class StationCommand(_Translated, TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._translate_texts()

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]

    def format_usage(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        pieces = self.collect_usage_pieces(ctx)
        formatter.write_usage(ctx.command_path, " ".join(pieces), prefix=tr(USAGE))

    def format_options(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        if swedish():
            self._format_options_translated(ctx, formatter)
        else:
            super().format_options(ctx, formatter)

    def get_help_option(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        option = super().get_help_option(ctx)
        if option is not None and option.help == SHOW_HELP:
            option.help = tr(SHOW_HELP)
        return option


class HelpGroup(_Translated, TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._translate_texts()

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]

    def format_usage(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        pieces = self.collect_usage_pieces(ctx)
        formatter.write_usage(ctx.command_path, " ".join(pieces), prefix=tr(USAGE))

    def format_options(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        if swedish():
            self._format_options_translated(ctx, formatter)
            self.format_commands(ctx, formatter)
        else:
            super().format_options(ctx, formatter)

    def get_help_option(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        option = super().get_help_option(ctx)
        if option is not None and option.help == SHOW_HELP:
            option.help = tr(SHOW_HELP)
        return option

    def format_commands(self, ctx: typer.Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                # Its whole first sentence, wrapped by the formatter, never cut with "...".
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section(tr(COMMANDS)):
                formatter.write_dl(rows)
