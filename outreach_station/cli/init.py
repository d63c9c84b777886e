"""`station init`: create the vault's master key."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_station.cli._help import tr as _
from outreach_station.cli._output import ask_passphrase, echo_json, station_of


def init_command(
    ctx: typer.Context,
    *,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="No keyring service here: wrap the master key with a passphrase "
            "(asked at every open). Only if the policy allows it.",
        ),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create the master key that seals every persona's profile (once per machine user).

    The key goes into the OS keyring (Secret Service, Keychain, Credential
    Manager); a plaintext or missing keyring is refused. 'station open' does
    this by itself the first time.

    Example: station init
    """
    from outreach_station import lifecycle

    vault = lifecycle.init_vault(
        passphrase=passphrase, passphrase_prompt=ask_passphrase, station=station_of(ctx)
    )
    if json:
        echo_json({"mode": str(vault.settings.mode), "backend": vault.backend_description()})
    else:
        typer.echo(
            _("vault ready: master key in {backend}").format(backend=vault.backend_description())
        )
