"""`station persona kit <id>`: show, change and reveal a persona's identity kit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station import ids
from outreach_station.cli._help import tr as _
from outreach_station.cli._lazy import lazy_module
from outreach_station.cli._output import echo_json, info, local_time, safe
from outreach_station.cli._params import PersonaArgument, find_persona
from outreach_station.errors import UsageError

if TYPE_CHECKING:
    from outreach_station import kit
else:
    kit = lazy_module("outreach_station.kit")

# Spelled out rather than read from the kit module, which would load it (and
# the registry) for every `station --help`; tests/cli/test_kit_cli.py checks they agree.
_FIELDS = "username, email, phone, card-label, card-last4"
_SECRETS = "password, totp-seed"


def _read_secret(persona_id: str, field: str) -> str:
    """Ask for a secret: hidden prompt on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        value: str = typer.prompt(
            _("{field} for persona {persona}").format(field=field, persona=persona_id),
            hide_input=True,
            confirmation_prompt=True,
            err=True,
        )
        return value
    line = sys.stdin.readline()
    if not line:
        raise UsageError(
            _("no {field} on stdin; pipe it in, one line per --set-secret").format(field=field)
        )
    return line


def _render(view: kit.KitView) -> None:
    states = {
        field: _("unknown (keyring unavailable)")
        if state is None
        else _("set")
        if state
        else _("not set")
        for field, state in view.secrets.items()
    }
    rows = [
        (_("persona"), view.kit.persona_id),
        *((field, view.kit.value(field) or "-") for field in kit.DETAIL_FIELDS),
        *states.items(),
        (_("updated"), local_time(view.kit.updated) if view.kit.updated else _("never")),
    ]
    width = max(12, *(len(key) + 1 for key, _value in rows))
    for key, value in rows:
        typer.echo(f"{key + ':':<{width}} {safe(value)}")


def kit_command(
    ctx: typer.Context,
    persona_id: PersonaArgument,
    *,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Set a detail (username, email, phone, card-label, card-last4); repeatable; "
            "an empty VALUE clears it. card-last4 takes exactly 4 digits: full card numbers "
            "are refused.",
        ),
    ] = None,
    set_secret: Annotated[
        list[str] | None,
        typer.Option(
            "--set-secret",
            metavar="SECRET",
            help="Store a secret (password, totp-seed) in the OS keyring; it is asked for "
            "(hidden), or read as one line of stdin when that is not a terminal.",
        ),
    ] = None,
    reveal: Annotated[
        str | None,
        typer.Option(
            "--reveal",
            metavar="SECRET",
            help="Copy a secret to the clipboard, cleared after 30 seconds. Audited.",
        ),
    ] = None,
    print_: Annotated[
        bool,
        typer.Option("--print", help="With --reveal: print the secret to stdout instead."),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the kit as JSON.")] = False,
) -> None:
    """Show or change a persona's organisation-owned identity kit.

    Secrets are shown only as set / not set; they are never taken from the
    command line.

    Example: station persona kit k7q2m9x4ab3d --set email=k7@example.org --set card-last4=4821
    """
    ids.persona_reference(persona_id)
    if print_ and reveal is None:
        raise UsageError(_("--print only works together with --reveal SECRET"))
    secret_fields = list(dict.fromkeys(set_secret or []))
    for field in [*secret_fields, *([reveal] if reveal else [])]:
        if field not in kit.SECRET_FIELDS:
            raise UsageError(
                _("unknown kit secret {field}; the secrets are {secrets}").format(
                    field=repr(field), secrets=_SECRETS
                )
            )
    changes = kit.parse_assignments(assignments or [])
    persona_id = find_persona(ctx, persona_id)
    # Every input is read and checked before anything is written.
    kit.get_kit(persona_id)
    for field, raw in changes.items():
        kit.normalise_detail(field, raw)
    secret_values = {
        field: kit.normalise_secret(field, _read_secret(persona_id, field))
        for field in secret_fields
    }

    if changes:
        kit.update_kit(persona_id, changes)
        info(
            _("kit of persona {persona} updated: {fields}").format(
                persona=persona_id, fields=", ".join(changes)
            )
        )
    for field, value in secret_values.items():
        kit.set_secret(persona_id, field, value)
        info(
            _("{field} of persona {persona} stored in the OS keyring").format(
                field=field, persona=persona_id
            )
        )

    if reveal is not None:
        if print_:
            typer.echo(kit.reveal_for_print(persona_id, reveal))
            return
        copied = kit.reveal_to_clipboard(persona_id, reveal)
        info(
            _(
                "{field} of persona {persona} copied to the clipboard ({tool}); "
                "it is cleared in {seconds} seconds unless you copy something else"
            ).format(
                field=reveal,
                persona=persona_id,
                tool=copied.tool,
                seconds=f"{copied.clear_after:g}",
            )
        )
        return

    view = kit.show_kit(persona_id)
    if json:
        echo_json(view.to_json())
    else:
        _render(view)
