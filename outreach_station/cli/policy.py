"""`station policy`: see the policy in force, check a policy file before rollout."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station.cli._help import HelpGroup, StationCommand
from outreach_station.cli._help import tr as _
from outreach_station.cli._lazy import lazy_module
from outreach_station.cli._output import echo_json, info, table

if TYPE_CHECKING:
    from outreach_station import policy as core
else:
    core = lazy_module("outreach_station.policy")

app = typer.Typer(
    rich_markup_mode=None,
    name="policy",
    cls=HelpGroup,
    help=(
        "See the policy in force (show), check a policy file before rollout (check), "
        "install Chromium's managed policy (apply-browser).\n\n"
        "Built-in defaults < your user config < the system policy set by IT; "
        "a user config may only tighten.\n\nExample: station policy show"
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
command = functools.partial(app.command, cls=StationCommand)


def _warn(message: str) -> None:
    info(_("station: warning: {message}").format(message=message))


def _state(path: Path, loaded: bool) -> str:
    return f"{path}" if loaded else _("{path} (not present)").format(path=path)


@command("show")
def show(
    *,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON object {key: {value, source}} for scripts."),
    ] = False,
) -> None:
    """Show the effective policy and where each value comes from.

    Sources are 'default', 'user config <path>' or 'system policy <path>'.
    User config values that would loosen the policy are ignored, with a
    warning on stderr.

    Example: station policy show --json
    """
    effective = core.load_policy(warn=_warn)
    if as_json:
        echo_json(effective.as_json())
        return
    system = _("System policy:")
    user = _("User config:")
    width = max(len(system), len(user)) + 1
    typer.echo(f"{system:<{width}}{_state(effective.system_path, effective.system_loaded)}")
    typer.echo(f"{user:<{width}}{_state(effective.user_path, effective.user_loaded)}")
    typer.echo("")
    table(
        [_("KEY"), _("VALUE"), _("SOURCE")],
        [[s.key, s.render(), str(s.source)] for s in effective.settings],
    )


@command("check")
def check(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="The policy file to validate.", show_default=False),
    ],
    *,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed",
            help="Also require the file to be trusted where it lies: owned by root, "
            "writable by root only, in directories only root can change.",
        ),
    ] = False,
) -> None:
    """Validate a policy file before rolling it out to laptops.

    Reports every unknown key, wrong type or out-of-range value with its file
    and line, and exits non-zero; prints 'OK: FILE is a valid policy'
    otherwise.

    Example: station policy check ./policy.toml
    """
    core.validate_policy_file(file)
    if installed:
        core.check_trusted(file)
    typer.echo(_("OK: {file} is a valid policy").format(file=file))


@command("apply-browser")
def apply_browser(
    *,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the file and where it goes; write nothing."),
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIRECTORY",
            help="Chromium's managed policy directory "
            "(default /etc/chromium/policies/managed; Chrome: /etc/opt/chrome/policies/managed).",
        ),
    ] = None,
) -> None:
    """Install the Chromium managed policy that backs the station policy machine-wide.

    Blocks downloads, extension installs, file:// addresses and (when the
    policy says so) printing in every Chromium window, including what station
    cannot reach per launch such as Ctrl-P, and turns off Chromium's warning
    bar about the switch that keeps navigator.webdriver false. Needs root;
    run it when building the image and after changing the system policy.

    Example: sudo station policy apply-browser --dry-run
    """
    from outreach_station import lockdown

    effective = core.load_policy(warn=_warn)
    target = lockdown.managed_policy_file(directory)
    if dry_run:
        info(_("would write {path} (root-owned, mode 0644):").format(path=target))
        typer.echo(lockdown.render_managed_policy(effective.policy), nl=False)
        return
    written = lockdown.install_managed_policy(effective.policy, directory)
    typer.echo(_("wrote {path}").format(path=written))
