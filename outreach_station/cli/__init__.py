"""The `station` command line: a thin edge over the use cases (`session`, `lifecycle`, ...).

Every `StationError` is caught once, here, and printed as one line on stderr
with its exit code; a traceback appears only with `--debug`. An `OSError` or
registry database error that no more specific message caught is turned into
one line here too, so a full disk or a damaged file never shows a traceback;
so is any other exception (a bug), without its text.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any

import typer

from outreach_station.cli._help import HelpGroup, StationCommand, swedish
from outreach_station.errors import StationError, os_error_problem


def _as_station_error(exc: Exception) -> StationError | None:
    if isinstance(exc, StationError):
        return exc
    if isinstance(exc, OSError):
        return os_error_problem(exc)
    from outreach_station.storage import problem_for

    return problem_for(exc)


class StationGroup(HelpGroup):
    # typer vendors click and exposes its Context only as typer.Context, a subclass.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # typer's own exceptions (usage errors, Exit, Abort) are how it ends a command.
            if type(exc).__module__.partition(".")[0] in ("typer", "click"):
                raise
            from outreach_station.i18n import _  # here: `station --help` needs no catalogue

            error = _as_station_error(exc)
            if error is None:
                # A bug: still one line. Its text is left out, as it may quote any value.
                error = StationError(
                    _(
                        "unexpected internal error ({kind}); run the command "
                        "again with --debug to see where, and report it"
                    ).format(kind=type(exc).__name__)
                )
            if isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
                import traceback  # only with --debug: it costs start-up time

                traceback.print_exc()
            from outreach_station.values import printable_lines

            # Messages quote what people typed and what files hold: escape it.
            line = _("station: error: {message}").format(message=printable_lines(error.message))
            typer.echo(line, err=True)
            raise typer.Exit(int(error.exit_code)) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line; in Swedish, typer's usage errors become one Swedish line.

        Under any other locale typer runs as it always does, output unchanged.
        """
        if not kwargs.get("standalone_mode", True) or not swedish():
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        from typer._click import exceptions as click

        try:
            result = super().main(*args, **kwargs)
        except click.NoArgsIsHelpError as exc:
            exc.show()  # the help itself, translated by HelpGroup
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            from outreach_station.cli._usage import usage_line

            typer.echo(usage_line(exc), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            from outreach_station.i18n import _

            typer.echo(_("Aborted!"), err=True)
            sys.exit(1)
        # Without standalone mode typer returns an ending's exit code instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)


def _typer_app() -> typer.Typer:
    return typer.Typer(
        rich_markup_mode=None,
        name="station",
        cls=StationGroup,
        help=(
            "Organisation-owned, isolated browser personas for outreach work.\n\n"
            "Start of a shift: 'station open PLATFORM'. After a block: "
            "'station rotate PLATFORM'. New here? Try 'station open demo'.\n\n"
            "Example: station open demo"
        ),
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = _typer_app()


def _print_version(value: bool) -> None:
    if value:
        from outreach_station import __version__
        from outreach_station.cli._help import tr as _

        typer.echo(_("station {version}").format(version=__version__))
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    *,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback when something fails.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_print_version,
            help="Print station's version and exit.",
        ),
    ] = False,
) -> None:
    from outreach_station.cli._output import info
    from outreach_station.context import Station

    # One context for the whole command: the policy is loaded once, the store opened once.
    station = Station.load(info)
    ctx.call_on_close(station.close)
    ctx.obj = {"debug": debug, "station": station}


def _register() -> None:
    from outreach_station.cli import audit, lifecycle, persona, platforms, policy
    from outreach_station.cli import init as init_cmd
    from outreach_station.cli import open as open_cmd

    app.add_typer(persona.app, name="persona")
    app.add_typer(audit.app, name="audit")
    app.add_typer(policy.app, name="policy")
    from outreach_station.cli import desktop

    app.add_typer(desktop.app, name="desktop")
    from outreach_station.cli import team as team_cmd

    app.add_typer(team_cmd.app, name="team")
    command = functools.partial(app.command, cls=StationCommand)
    command("init")(init_cmd.init_command)
    command("open")(open_cmd.open_command)
    command("platforms")(platforms.platforms_command)
    from outreach_station.cli import report as report_cmd

    command("report")(report_cmd.report_command)
    command("rotate")(lifecycle.rotate_command)
    command("status")(lifecycle.status_command)
    from outreach_station.cli import check as check_cmd

    command("check")(check_cmd.check_command)
    from outreach_station.cli import doctor as doctor_cmd

    command("doctor")(doctor_cmd.doctor_command)
    from outreach_station.cli import docs as docs_cmd

    command("docs")(docs_cmd.docs_command)


_register()


def _command_name(args: list[str]) -> str | None:
    """The command `args` name, if they name one before any option; else None."""
    if not args or args[0].startswith("-"):
        return None
    return args[0]


def _app_for(name: str | None) -> typer.Typer:
    """`app` with only the command `name`, when it is one of them; else `app` itself.

    typer turns every command's signature into click parameters before it
    runs any of them (about 1.5 ms a command): a command that is not run
    need not be built. Help, errors and unknown names get the whole app.
    """
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        return app
    only = _typer_app()
    only.registered_callback = app.registered_callback
    only.registered_commands = commands
    only.registered_groups = groups
    return only


def _resolve_annotations(typer_app: typer.Typer) -> None:
    """Evaluate the annotations of `typer_app`'s commands once, in place.

    With `from __future__ import annotations` they are strings, which typer
    evaluates twice per command (`inspect.signature(eval_str=True)`, then
    `get_type_hints`), compiling each string every time: about half the cost
    of building the command line. Evaluated once here, both find objects.
    """
    import typing

    infos: list[Any] = [typer_app.registered_callback, *typer_app.registered_commands]
    for info in infos:
        if info is not None and info.callback is not None:
            callback = info.callback
            callback.__annotations__ = typing.get_type_hints(callback, include_extras=True)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _resolve_annotations(group.typer_instance)


def prepared_app(args: list[str]) -> typer.Typer:
    """The app `main` runs for the command line `args`: only what they need, ready to build."""
    chosen = _app_for(_command_name(args))
    _resolve_annotations(chosen)
    return chosen


def main() -> None:
    prepared_app(sys.argv[1:])(prog_name="station")
