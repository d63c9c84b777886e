"""outreach-station as a library: everything the `station` command does, callable from Python.

A short facade over the use cases (`session`, `lifecycle`): each function
takes an optional `station=` context (`outreach_station.context.Station`)
and makes one for the call when none is given. Nothing here prints;
progress goes to a `notify` callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach_station import paths
from outreach_station.audit import AuditLog
from outreach_station.context import Notify, Station
from outreach_station.events import EventName
from outreach_station.lifecycle import (
    ROTATION_GRACE_SECONDS,
    PlatformStatus,
    RotateResult,
    Shredded,
    close_open_session,
    create_persona,
    create_personas,
    enforce_retention,
    get_persona,
    init_vault,
    list_personas,
    recover_persona,
    refresh_fingerprint,
    rotate,
    set_proxy,
    shred_persona,
    status,
)
from outreach_station.personas import Persona
from outreach_station.session import CheckResult, OpenResult, check_persona, open_platform

if TYPE_CHECKING:
    from outreach_station.platforms import PlatformCatalogue, PlatformProfile
    from outreach_station.policy import EffectivePolicy, Policy
    from outreach_station.storage import Store
    from outreach_station.vault import PassphraseCallback, Vault

__all__ = [
    "ROTATION_GRACE_SECONDS",
    "CheckResult",
    "EventName",
    "Notify",
    "OpenResult",
    "Persona",
    "PlatformStatus",
    "RotateResult",
    "Shredded",
    "Station",
    "audit",
    "audit_log",
    "check_persona",
    "close_open_session",
    "create_persona",
    "create_personas",
    "effective_policy",
    "enforce_retention",
    "get_persona",
    "init_vault",
    "list_personas",
    "open_platform",
    "open_vault",
    "platform",
    "platforms",
    "recover_persona",
    "refresh_fingerprint",
    "registry",
    "rotate",
    "set_proxy",
    "shred_persona",
    "status",
]


def effective_policy(notify: Notify | None = None) -> EffectivePolicy:
    """The policy in force: built-in defaults < user config < system policy."""
    return Station.load(notify).effective


def platforms(policy: Policy | None = None, *, notify: Notify | None = None) -> PlatformCatalogue:
    """The platforms this policy allows (the policy in force when none is given)."""
    if policy is None:
        return Station.load(notify).catalogue
    from outreach_station.platforms import load_catalogue, profile_dirs

    return load_catalogue(
        profile_dirs(policy.platforms.profiles_dir), allowed=policy.platforms.allowed
    )


def platform(platform_id: str, policy: Policy | None = None) -> PlatformProfile:
    return platforms(policy).get(platform_id)


def registry() -> Store:
    """The store of the station home in force; use it as a context manager."""
    from outreach_station.storage import open_store

    return open_store(paths.current())


def audit_log() -> AuditLog:
    """The audit log, where the system policy puts it (else under the station home)."""
    return Station.load().audit


def audit(event: str, persona: Persona | None = None, **detail: str | int | bool) -> None:
    """Append one audit record (`event` is an `EventName` or its value)."""
    Station.load().record(EventName(event), persona, **detail)


def open_vault(*, passphrase_prompt: PassphraseCallback | None = None) -> Vault:
    """The vault of this station home, created (master key in the keyring) on first use."""
    return Station.load().vault(passphrase_prompt)
