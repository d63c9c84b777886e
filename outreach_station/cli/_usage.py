"""typer's usage errors as one line in the reader's language.

click (vendored by typer) writes its usage errors in English only, as a
usage line, a hint and "Error: ...". Under a Swedish locale the CLI shows
them as one line instead, built here from the exception's own fields; a
message this module does not know stays as click wrote it.
"""

from __future__ import annotations

import re
from typing import Any

from outreach_station.i18n import _

_EXTRA_ARGUMENTS = re.compile(r"^Got unexpected extra argument(?:\(s\)|s)? \((.*)\)$", re.DOTALL)
_NO_SUCH_COMMAND = re.compile(r"^No such command (.+?)\.(?: Did you mean (.+)\?)?$", re.DOTALL)
_REQUIRES = re.compile(r"^Option (.+) requires (?:an argument|\d+ arguments)\.$", re.DOTALL)
_NO_VALUE = re.compile(r"^Option (.+) does not take a value\.$", re.DOTALL)
_NOT_VALID = re.compile(r"^(.+) is not a valid (int|integer|float)\.$", re.DOTALL)


def _hint(exc: Any) -> str | None:
    """The parameter an error is about, as click names it (`'--count'`, `'PLATFORM'`)."""
    from typer._click.exceptions import _join_param_hints

    if getattr(exc, "param_hint", None) is not None:
        hint: str | None = _join_param_hints(exc.param_hint)
        return hint
    param = getattr(exc, "param", None)
    if param is not None:
        named: str | None = _join_param_hints(param.get_error_hint(exc.ctx))
        return named
    return None


def _problem(message: str) -> str:
    """What click's parameter types say is wrong with a value."""
    found = _NOT_VALID.match(message)
    if found:
        return _("{value} is not a whole number").format(value=found.group(1))
    return message


def message_of(exc: Any) -> str:  # noqa: PLR0911 - one return per kind of error
    """The text of a click usage error in the reader's language."""
    from typer._click import exceptions as click

    if isinstance(exc, click.NoSuchOption):
        if exc.possibilities:
            return _("unknown option {option}; did you mean {options}?").format(
                option=exc.option_name, options=", ".join(sorted(exc.possibilities))
            )
        return _("unknown option {option}").format(option=exc.option_name)
    if isinstance(exc, click.MissingParameter):
        missing = _hint(exc) or ""
        kind = exc.param_type or (exc.param.param_type_name if exc.param else "")
        if kind == "argument":
            return _("missing argument {name}").format(name=missing)
        return _("missing option {name}").format(name=missing)
    if isinstance(exc, click.BadParameter):
        hint = _hint(exc)
        if hint is None:
            return _("invalid value: {problem}").format(problem=_problem(exc.message))
        return _("invalid value for {name}: {problem}").format(
            name=hint, problem=_problem(exc.message)
        )
    text: str = exc.message
    for pattern, message in (
        (_EXTRA_ARGUMENTS, _("unexpected argument(s): {value}")),
        (_REQUIRES, _("option {value} needs a value")),
        (_NO_VALUE, _("option {value} takes no value")),
    ):
        found = pattern.match(text)
        if found:
            return message.format(value=found.group(1))
    found = _NO_SUCH_COMMAND.match(text)
    if found:
        if found.group(2):
            return _("no command named {name} (did you mean {suggestion}?)").format(
                name=found.group(1), suggestion=found.group(2)
            )
        return _("no command named {name}").format(name=found.group(1))
    if text == "Missing command.":
        return _("a command is missing")
    return str(exc.format_message())


def usage_line(exc: Any) -> str:
    """`station: error: ...; 'station open -h' shows help`, in the reader's language."""
    from outreach_station.values import printable_lines

    message = message_of(exc)
    ctx = exc.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message = _("{message}; '{command} {option}' shows help").format(
            message=message, command=ctx.command_path, option=ctx.help_option_names[0]
        )
    return _("station: error: {message}").format(message=printable_lines(message))
