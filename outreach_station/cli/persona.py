"""`station persona ...`: create and inspect personas."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_station import ids
from outreach_station.cli._help import N_, HelpGroup, StationCommand
from outreach_station.cli._help import tr as _
from outreach_station.cli._lazy import lazy_module
from outreach_station.cli._output import (
    confirm,
    echo_json,
    info,
    local_time,
    reason_text,
    safe,
    station_of,
    table,
)
from outreach_station.cli._params import (
    JsonOption,
    PersonaArgument,
    PlatformArgument,
    find_persona,
)
from outreach_station.errors import StateError, UsageError

if TYPE_CHECKING:
    from outreach_station import lifecycle, network, values
    from outreach_station.personas import Persona
else:
    lifecycle = lazy_module("outreach_station.lifecycle")
    network = lazy_module("outreach_station.network")
    values = lazy_module("outreach_station.values")

app = typer.Typer(
    rich_markup_mode=None,
    cls=HelpGroup,
    help=(
        "Create and inspect personas (new, list, show, kit, retire, refresh-fingerprint, "
        "proxy).\n\nExample: station persona list"
    ),
    no_args_is_help=True,
)
command = functools.partial(app.command, cls=StationCommand)


def _summary(persona: Persona) -> str:

    try:
        return persona.presents.summary()
    except Exception:
        return _("(outdated fingerprint)")


STATUSES = {
    "active": N_("active"),
    "standby": N_("standby"),
    "blocked": N_("blocked"),
    "retired": N_("retired"),
}


def _status(status: str) -> str:
    """A persona's status in the reader's language (--json keeps the stored word)."""
    return _(STATUSES[status]) if status in STATUSES else status


def _as_json(persona: Persona) -> dict[str, Any]:
    data = persona.to_json()
    data["fingerprint_summary"] = _summary(persona)
    return data


def _when(persona: Persona, attr: str) -> str:
    moment = getattr(persona, attr)
    return local_time(moment) if moment else _("never")


@command("new")
def new(
    ctx: typer.Context,
    platform: PlatformArgument,
    *,
    label: Annotated[
        str, typer.Option(metavar="TEXT", help="A name for staff, e.g. 'Anna evening'.")
    ] = "",
    standby: Annotated[
        bool, typer.Option("--standby", help="Keep it in the standby pool even if none is active.")
    ] = False,
    count: Annotated[int, typer.Option(metavar="N", help="How many to create (1-100).")] = 1,
    json: JsonOption = False,
) -> None:
    """Create personas for a platform and print their ids, one a line.

    A persona becomes the platform's active persona if there is none (and
    --standby is not given), else it waits as standby for 'station rotate'.

    Example: station persona new demo --standby --count 3
    """
    platform = ids.platform_id(platform)
    values.validate_label(label)
    personas = lifecycle.create_personas(
        platform,
        label=label,
        standby=standby,
        count=count,
        notify=info,
        station=station_of(ctx),
    )
    if json:
        echo_json(_as_json(personas[0]) if count == 1 else [_as_json(p) for p in personas])
    else:
        for persona in personas:
            typer.echo(persona.id)


@command("list")
def list_(
    ctx: typer.Context,
    *,
    platform: Annotated[
        str | None, typer.Option(metavar="PLATFORM", help="Only this platform's personas.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List personas: id, platform, status, label, created, last opened.

    Example: station persona list --platform demo
    """
    if platform is not None:
        platform = ids.platform_id(platform)
    personas = lifecycle.list_personas(platform_id=platform, station=station_of(ctx))
    if json:
        echo_json([_as_json(p) for p in personas])
        return
    if not personas:
        typer.echo(_("no personas yet; 'station persona new PLATFORM' creates one"))
        return
    table(
        [
            _("ID"),
            _("PLATFORM"),
            _("STATUS"),
            _("LABEL"),
            _("CREATED"),
            _("LAST OPENED"),
            _("FINGERPRINT"),
        ],
        [
            [
                p.id,
                p.platform,
                _status(p.status),
                p.label,
                _when(p, "created"),
                _when(p, "last_opened"),
                _summary(p),
            ]
            for p in personas
        ],
    )


@command("show")
def show(
    ctx: typer.Context,
    persona_id: PersonaArgument,
    *,
    json: JsonOption = False,
) -> None:
    """Show one persona in full, with why its status last changed.

    Example: station persona show k7q2
    """
    persona = lifecycle.get_persona(find_persona(ctx, persona_id), station=station_of(ctx))
    if json:
        echo_json(_as_json(persona))
        return
    rows = [
        (_("id"), persona.id),
        (_("platform"), persona.platform),
        (_("label"), persona.label),
        (_("status"), _status(persona.status)),
        (_("since"), _when(persona, "status_changed")),
        (_("reason"), reason_text(persona.status_reason) or "-"),
        (_("created"), _when(persona, "created")),
        (_("last opened"), _when(persona, "last_opened")),
        (_("fingerprint"), _summary(persona)),
        (_("fonts"), ", ".join(persona.fingerprint.get("fonts") or ()) or _("the machine's")),
    ]
    width = max(13, *(len(key) + 2 for key, _value in rows))
    for key, value in rows:
        typer.echo(f"{key + ':':<{width}} {safe(value)}")


def _register_kit() -> None:
    # The kit command lives in its own module; it joins this group here.
    from outreach_station.cli import kit as kit_cli

    command("kit")(kit_cli.kit_command)


_register_kit()


@command("retire")
def retire(
    ctx: typer.Context,
    persona_id: PersonaArgument,
    *,
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why, for the record.")
    ] = "retired by staff",
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (for scripts).")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Retire a persona for good: its profile and kit secrets are destroyed at once.

    Its data key is destroyed (crypto-shredding), so its sealed profile can
    never be read again; the record of it stays. Asks for confirmation.

    Example: station persona retire k7q2m9x4ab3d
    """
    values.validate_reason(reason)
    persona = lifecycle.get_persona(find_persona(ctx, persona_id), station=station_of(ctx))
    if persona.status == "retired":
        raise StateError(_("persona {id} is already retired").format(id=persona.id))
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(_("retiring destroys the profile for good: confirm with --yes"))
        confirm(
            _("Destroy persona {id} ({platform}, {status}) for good?").format(
                id=persona.id, platform=persona.platform, status=_status(persona.status)
            ),
            abort=True,
        )
    done = lifecycle.shred_persona(persona.id, reason=reason, station=station_of(ctx))
    if json:
        echo_json(
            {
                "id": done.persona.id,
                "status": done.persona.status,
                "key_destroyed": done.key_destroyed,
                "profile_deleted": done.profile_deleted,
                "secrets_deleted": list(done.secrets_deleted),
            }
        )
    else:
        typer.echo(
            _("persona {id} retired; its profile can no longer be read").format(id=done.persona.id)
        )


@command("refresh-fingerprint")
def refresh_fingerprint(
    ctx: typer.Context,
    persona_id: PersonaArgument,
) -> None:
    """Draw a new fingerprint for a persona (websites will see a different browser).

    Example: station persona refresh-fingerprint k7q2m9x4ab3d
    """
    persona = lifecycle.refresh_fingerprint(find_persona(ctx, persona_id), station=station_of(ctx))
    typer.echo(f"{persona.id}: {_summary(persona)}")


@command("proxy")
def proxy(
    ctx: typer.Context,
    persona_id: PersonaArgument,
    url: Annotated[
        str | None,
        typer.Argument(
            metavar="[URL]", help="http://[user@]host:port or socks5://host:port; no password."
        ),
    ] = None,
    *,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the persona's proxy.")] = False,
) -> None:
    """Send a persona's traffic through its own proxy.

    With a user name in the URL, the password is asked for with a hidden
    prompt and kept in the OS keyring, never on the command line.

    Example: station persona proxy k7q2m9x4ab3d http://outreach@proxy.example:3128
    """
    if clear == (url is not None):
        raise typer.BadParameter(_("give either a proxy URL or --clear"))
    ids.persona_reference(persona_id)
    if url is not None:
        network.parse_proxy_url(url)  # before the registry is opened
    persona_id = find_persona(ctx, persona_id)
    password = None
    if url is not None:
        # The id, the persona's state and the URL are judged before a password is asked for.
        setting = network.check_persona_proxy(
            lifecycle.get_persona(persona_id, station=station_of(ctx)), url
        )
        if setting.username:
            password = typer.prompt(
                _("proxy password"), hide_input=True, default="", show_default=False
            )
    typer.echo(
        lifecycle.set_proxy(persona_id, url, password=password or None, station=station_of(ctx))
    )
