"""A persona's identity kit: organisation-owned account details, and its secrets.

Staff once signed up on platforms with their private payment cards, so the
platforms took them for buyers. A kit records the organisation's own details
for one persona instead: account username, email alias, phone number and a
*reference* to the organisation's payment instrument (an internal label and
the last four digits; never a card number). The details live in the registry
(`kits` table); the account password and the one-time-code (TOTP) seed live
only in the OS keyring, under service "outreach-station" and entries
``kit:<persona_id>:password`` / ``kit:<persona_id>:totp-seed``. In a team
a keyring would keep them on one laptop, so they live on the team's server
instead, sealed with the persona's data key (`team.kit_secrets`).

Rules enforced here, the one writer of kits:

- No value that looks like a full card number (a run of 12 or more digits,
  optionally split by spaces, dashes or dots) is accepted in any field, secrets
  included, whether or not it passes the Luhn check: a rule that depends on a
  checksum lets one mistyped number through and refuses its neighbour.
- Two personas never share a username, email or phone, whatever their status
  or platform (`kit_in_use_elsewhere`; unique indexes back it against races).
- The kit of a blocked or retired persona is frozen, so its details cannot be
  cleared and handed to a new persona.
- Secrets never reach argv, logs, exception messages or the audit trail; every
  reveal and every change is audited with field names only.

Copying to the clipboard and clearing it afterwards is `clipboard`'s job.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from outreach_station import clipboard, secret_store
from outreach_station.audit import AuditLog
from outreach_station.clock import iso as _iso
from outreach_station.clock import parse_iso
from outreach_station.errors import (
    EnvironmentProblem,
    NotFoundError,
    SecurityError,
    StateError,
    UsageError,
)
from outreach_station.events import EventName
from outreach_station.i18n import _
from outreach_station.ids import validate_persona_id
from outreach_station.personas import Persona
from outreach_station.storage import Store, UniqueConflict

if TYPE_CHECKING:
    from outreach_station.team.kit_secrets import TeamKitSecrets

# Public field names, as typed on the command line; columns use underscores.
DETAIL_FIELDS: Final = ("username", "email", "phone", "card-label", "card-last4")
SECRET_FIELDS: Final = ("password", "totp-seed")
SecretField = Literal["password", "totp-seed"]
RevealHow = Literal["clipboard", "print"]

CLIPBOARD_CLEAR_SECONDS: Final = 30.0
MAX_FIELD_LENGTH: Final = 200
MAX_SECRET_LENGTH: Final = 1024

_COLUMNS: Final = {field: field.replace("-", "_") for field in DETAIL_FIELDS}
# Identity details no two personas may share (the payment reference may be shared:
# an organisation often has one card).
UNIQUE_FIELDS: Final = ("username", "email", "phone")

# Twelve or more digits with at most two separators between neighbours: every
# payment card number (12-19 digits) however it is grouped, and anything longer.
_CARD_LIKE: Final = re.compile(r"\d(?:[\s.\-]{0,2}\d){11,}")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE: Final = re.compile(r"\+?[0-9][0-9 ()\-]*")
_LAST4: Final = re.compile(r"[0-9]{4}")
_BASE32: Final = re.compile(r"[A-Z2-7]+=*")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_BLOCKED_STATES: Final = ("blocked", "retired")


@dataclass(frozen=True)
class Kit:
    """The non-secret identity details of one persona ('' means not set)."""

    persona_id: str
    username: str = ""
    email: str = ""
    phone: str = ""
    card_label: str = ""
    card_last4: str = ""
    updated: datetime | None = None

    def value(self, field: str) -> str:
        return str(getattr(self, _COLUMNS[field]))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {field: self.value(field) or None for field in DETAIL_FIELDS}
        data["persona"] = self.persona_id
        data["updated"] = _iso(self.updated) if self.updated else None
        return data


@dataclass(frozen=True)
class KitView:
    """A kit as shown to a person: details plus whether each secret is stored.

    A secret's state is None when the keyring could not be asked.
    """

    kit: Kit
    secrets: Mapping[str, bool | None] = dataclasses.field(hash=False)

    def to_json(self) -> dict[str, Any]:
        data = self.kit.to_json()
        data["secrets"] = {
            field: ("unknown" if state is None else "set" if state else "not set")
            for field, state in self.secrets.items()
        }
        return data


# ---------------------------------------------------------------- validation


def looks_like_card_number(value: str) -> bool:
    """True if `value` holds a run of 12 or more digits, however grouped."""
    return _CARD_LIKE.search(value) is not None


def _refuse_card_number(field: str, value: str) -> None:
    if looks_like_card_number(value):
        raise UsageError(
            _(
                "{field}: refused, it contains what looks like a full payment card number "
                "(12 or more digits). Station never stores card numbers: record the card's "
                "internal label with card-label and its last four digits with card-last4. "
                "Nothing was written."
            ).format(field=field)
        )


def normalise_detail(field: str, raw: str) -> str:
    """The stored form of one kit detail, or `UsageError` if it is not acceptable.

    An empty string clears the field.
    """
    if field in SECRET_FIELDS:
        raise UsageError(
            _(
                "{field} is a secret and is never taken from the command line; "
                "use --set-secret {field}, which asks for it"
            ).format(field=field)
        )
    if field not in DETAIL_FIELDS:
        raise UsageError(
            _("unknown kit field {field!r}; the fields are {fields}").format(
                field=field, fields=", ".join(DETAIL_FIELDS)
            )
        )
    value = raw.strip()
    _refuse_card_number(field, value)
    if not value:
        return ""
    if len(value) > MAX_FIELD_LENGTH:
        raise UsageError(
            _("{field}: longer than {limit} characters").format(field=field, limit=MAX_FIELD_LENGTH)
        )
    if _CONTROL.search(value):
        raise UsageError(_("{field}: contains control characters").format(field=field))
    if field == "email":
        if not _EMAIL.fullmatch(value):
            raise UsageError(
                _("email: {value!r} is not an email address (name@example.org)").format(value=value)
            )
        return value.lower()
    if field == "phone":
        digits = re.sub(r"\D", "", value)
        if not _PHONE.fullmatch(value) or not 6 <= len(digits) <= 11:
            raise UsageError(
                _(
                    "phone: {value!r} is not a phone number (6 to 11 digits, optionally "
                    "starting with + and grouped by spaces, dashes or brackets)"
                ).format(value=value)
            )
        return ("+" if value.startswith("+") else "") + digits
    if field == "card-last4" and not _LAST4.fullmatch(value):
        raise UsageError(
            _("card-last4: must be exactly the last 4 digits of the organisation's card")
        )
    return value


def _check_secret_field(field: str) -> None:
    if field not in SECRET_FIELDS:
        raise UsageError(
            _("unknown kit secret {field!r}; the secrets are {secrets}").format(
                field=field, secrets=", ".join(SECRET_FIELDS)
            )
        )


def normalise_secret(field: str, raw: str) -> str:
    """The stored form of a secret, or `UsageError` (never naming the value)."""
    _check_secret_field(field)
    value = raw.rstrip("\r\n")
    if not value.strip():
        raise UsageError(_("{field}: empty; nothing was stored").format(field=field))
    if len(value) > MAX_SECRET_LENGTH:
        raise UsageError(
            _("{field}: longer than {limit} characters").format(
                field=field, limit=MAX_SECRET_LENGTH
            )
        )
    if _CONTROL.search(value):
        raise UsageError(_("{field}: contains control characters").format(field=field))
    _refuse_card_number(field, value)
    if field == "totp-seed":
        # Authenticator apps show seeds in groups and in either case.
        value = re.sub(r"[\s-]", "", value).upper()
        if not _BASE32.fullmatch(value) or len(value.rstrip("=")) < 16:
            raise UsageError(
                _("totp-seed: not a base32 seed (letters A-Z and digits 2-7, at least 16 of them)")
            )
    return value


# ---------------------------------------------------------------- registry access


@contextmanager
def _registry(registry: Store | None) -> Iterator[Store]:
    if registry is not None:
        yield registry
        return
    from outreach_station.context import Station

    # The home's store: in a team the server's, where the team's personas are.
    with Station.load() as station:
        yield station.store


def _persona(reg: Store, persona_id: str) -> Persona:
    return reg.get(validate_persona_id(persona_id))


def _kit_from_row(persona_id: str, row: Mapping[str, Any] | None) -> Kit:
    if row is None:
        return Kit(persona_id=persona_id)
    return Kit(
        persona_id=persona_id,
        username=row["username"],
        email=row["email"],
        phone=row["phone"],
        card_label=row["card_label"],
        card_last4=row["card_last4"],
        updated=parse_iso(row["updated"]),
    )


def _same(field: str, a: str, b: str) -> bool:
    # Usernames and emails are case-insensitive on every platform we know.
    return a.lower() == b.lower() if field in ("username", "email") else a == b


def kit_in_use_elsewhere(registry: Store, persona_id: str, field: str, value: str) -> bool:
    """Whether another persona (any status, any platform) already carries this detail.

    `value` is compared in its stored form, so "+46 70-123 45 67" matches
    "+46701234567" and email case does not matter.
    """
    if field not in DETAIL_FIELDS:
        raise UsageError(_("unknown kit field {field!r}").format(field=field))
    wanted = normalise_detail(field, value)
    if not wanted:
        return False
    column = _COLUMNS[field]
    return any(
        row["persona_id"] != persona_id and _same(field, row[column], wanted)
        for row in registry.kit_rows()
    )


def get_kit(persona_id: str, *, registry: Store | None = None) -> Kit:
    """The persona's kit (all fields empty if none was recorded)."""
    with _registry(registry) as reg:
        _persona(reg, persona_id)
        return _kit_from_row(persona_id, reg.kit_row(persona_id))


def show_kit(persona_id: str, *, registry: Store | None = None) -> KitView:
    """The kit with each secret's state; 'unknown' rather than failing without a keyring."""
    kit = get_kit(persona_id, registry=registry)
    states: dict[str, bool | None] = {}
    with _team_secrets() as team:
        if team is not None:
            # In a team the server says which secrets exist; no key is needed for that.
            held = team.fields(kit.persona_id)
            return KitView(kit=kit, secrets={field: field in held for field in SECRET_FIELDS})
    for field in SECRET_FIELDS:
        try:
            states[field] = _read_secret(persona_id, field) is not None
        except (EnvironmentProblem, SecurityError):
            states[field] = None
    return KitView(kit=kit, secrets=states)


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``FIELD=VALUE`` strings into a mapping; a repeated field is an error."""
    changes: dict[str, str] = {}
    for item in items:
        field, sep, value = item.partition("=")
        field = field.strip().lower()
        if not sep:
            raise UsageError(
                _(
                    "--set expects FIELD=VALUE (fields: {fields}); an empty VALUE clears the field"
                ).format(fields=", ".join(DETAIL_FIELDS))
            )
        if field in SECRET_FIELDS:
            # The value is already in argv by now; at least it goes no further.
            raise UsageError(
                _(
                    "{field} is a secret and is never taken from the command line; "
                    "use --set-secret {field}, which asks for it"
                ).format(field=field)
            )
        if field in changes:
            raise UsageError(_("--set {field}=... given twice").format(field=field))
        changes[field] = value
    return changes


def update_kit(
    persona_id: str,
    changes: Mapping[str, str],
    *,
    registry: Store | None = None,
    log: AuditLog | None = None,
) -> Kit:
    """Set (or, with '', clear) kit details; all or nothing, audited as `kit.updated`.

    Every value is checked before anything is written, so one refused value
    leaves the kit exactly as it was.
    """
    if not changes:
        raise UsageError(_("nothing to change"))
    normalised = {field: normalise_detail(field, raw) for field, raw in changes.items()}
    with _registry(registry) as reg:
        persona = _persona(reg, persona_id)
        _require_changeable(persona)
        for field in UNIQUE_FIELDS:
            value = normalised.get(field)
            if value and kit_in_use_elsewhere(reg, persona.id, field, value):
                raise StateError(
                    _(
                        "{field}: another persona already uses this {field}; two personas "
                        "never share identity details (a blocked persona's details stay "
                        "reserved too). Nothing was written."
                    ).format(field=field)
                )
        current = _kit_from_row(persona.id, reg.kit_row(persona.id))
        merged = {col: current.value(field) for field, col in _COLUMNS.items()}
        merged.update({_COLUMNS[field]: value for field, value in normalised.items()})
        changed = sorted(f for f in normalised if normalised[f] != current.value(f))
        if not changed:
            return current
        try:
            with reg.transaction():
                reg.put_kit(persona.id, merged)
                # Inside the transaction: a change the audit trail cannot record
                # is rolled back rather than made silently.
                _audit_log(log).append(
                    EventName.KIT_UPDATED,
                    persona=persona.id,
                    platform=persona.platform,
                    detail={"fields": ",".join(changed)},
                )
        except UniqueConflict:
            # Another process took the same detail between our check and write.
            raise StateError(
                _("another persona already uses one of these details; nothing was written")
            ) from None
        return _kit_from_row(persona.id, reg.kit_row(persona.id))


def _require_changeable(persona: Persona) -> None:
    if persona.status in _BLOCKED_STATES:
        raise StateError(
            _(
                "persona {persona} is {status}: its kit is kept as it was, so its "
                "details can never move to another persona"
            ).format(persona=persona.id, status=persona.status)
        )


# ---------------------------------------------------------------- secrets (keyring)


def _team_secrets() -> AbstractContextManager[TeamKitSecrets | None]:
    """The team's kit secrets when this home is in a team, else None (the OS keyring)."""
    from outreach_station.team.kit_secrets import home_team_secrets

    return home_team_secrets()


def secret_entry(persona_id: str, field: str) -> str:
    """The keyring entry (the 'username' in keyring's terms) of one kit secret."""
    return f"kit:{validate_persona_id(persona_id)}:{field}"


def _read_secret(persona_id: str, field: str) -> str | None:
    with _team_secrets() as team:
        if team is not None:
            return team.read(persona_id, field)
    return secret_store.read(secret_entry(persona_id, field), what=field)


def set_secret(
    persona_id: str,
    field: str,
    value: str,
    *,
    registry: Store | None = None,
    log: AuditLog | None = None,
) -> None:
    """Store a kit secret in the OS keyring (checked, then read back); audited."""
    stored = normalise_secret(field, value)
    with _registry(registry) as reg:
        persona = _persona(reg, persona_id)
    _require_changeable(persona)
    with _team_secrets() as team:
        if team is not None:
            team.write(persona.id, field, stored)
        else:
            secret_store.write(secret_entry(persona.id, field), stored, what=field)
    _audit_log(log).append(
        EventName.KIT_UPDATED,
        persona=persona.id,
        platform=persona.platform,
        detail={"fields": field},
    )


def delete_kit_secrets(persona_id: str) -> list[str]:
    """Remove the persona's secrets from the OS keyring; the fields that were there.

    Used when a persona is shredded; missing entries are not an error, so it is
    safe to call twice.
    """
    backend = secret_store.check_backend()
    return [
        field
        for field in SECRET_FIELDS
        if secret_store.delete(secret_entry(persona_id, field), what=field, backend=backend)
    ]


def _stored_secret(persona_id: str, field: str, registry: Store | None) -> tuple[Persona, str]:
    """The persona and its stored secret, or NotFoundError saying how to set one."""
    _check_secret_field(field)
    with _registry(registry) as reg:
        persona = _persona(reg, persona_id)
    value = _read_secret(persona.id, field)
    if value is None:
        raise NotFoundError(
            _(
                "no {field} is stored for persona {persona}; set one with "
                "'station persona kit {persona} --set-secret {field}'"
            ).format(field=field, persona=persona.id)
        )
    return persona, value


def _audit_reveal(persona: Persona, field: str, how: RevealHow, log: AuditLog | None) -> None:
    # Audited before it is shown: a reveal the trail cannot record does not happen.
    _audit_log(log).append(
        EventName.KIT_SECRET_REVEALED,
        persona=persona.id,
        platform=persona.platform,
        detail={"field": field, "how": how},
    )


def reveal_for_print(
    persona_id: str, field: str, *, registry: Store | None = None, log: AuditLog | None = None
) -> str:
    """The secret itself, for an explicit `--print`; audited as a print reveal."""
    persona, value = _stored_secret(persona_id, field, registry)
    _audit_reveal(persona, field, "print", log)
    return value


def reveal_to_clipboard(
    persona_id: str,
    field: str,
    *,
    clear_after: float = CLIPBOARD_CLEAR_SECONDS,
    registry: Store | None = None,
    log: AuditLog | None = None,
) -> clipboard.ClipboardCopy:
    """Copy the secret to the clipboard and start a detached clearer; audited.

    The clearer empties the clipboard after `clear_after` seconds, but only if
    it still holds this secret, and survives this process exiting.
    """
    # Whether there is a secret at all comes first: "no clipboard tool" would
    # send a person installing one for nothing.
    persona, value = _stored_secret(persona_id, field, registry)
    tool = clipboard.find_clipboard()
    if tool is None:
        raise EnvironmentProblem(
            _(
                "no clipboard tool found (wl-copy for Wayland, xclip or xsel for X11, with "
                "WAYLAND_DISPLAY or DISPLAY set); install one, e.g. 'sudo apt install xclip', "
                "or add --print to print the secret to the terminal instead"
            )
        )
    _audit_reveal(persona, field, "clipboard", log)
    return clipboard.copy_and_clear_later(tool, value.encode("utf-8"), clear_after)


# ---------------------------------------------------------------- audit


def _audit_log(log: AuditLog | None) -> AuditLog:
    """The given log, else the one the policy names (`Station.audit`)."""
    if log is not None:
        return log
    from outreach_station.context import Station

    return Station.load().audit
