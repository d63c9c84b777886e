"""The persona lifecycle: create, list, rotate, status, retire, retention, recovery.

Each use case takes the command's `Station` (built once per command; made
for the call when none is given) and reports progress through its
`notify`. Nothing here prints.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from outreach_station.context import Notify, Station, quiet, using
from outreach_station.errors import BusyError, StateError, UsageError
from outreach_station.events import EventName
from outreach_station.i18n import N_, _
from outreach_station.ids import validate_persona_id
from outreach_station.personas import Persona
from outreach_station.values import validate_label, validate_reason

# The workspace, the network and the platform catalogue are imported where a
# use case needs them: listing personas (what a person types most) needs none.
if TYPE_CHECKING:
    from outreach_station.fingerprint import FingerprintDrawer
    from outreach_station.platforms import PlatformProfile
    from outreach_station.storage import Store
    from outreach_station.storage.postgres import PostgresStore
    from outreach_station.vault import PassphraseCallback, Vault
    from outreach_station.workspace import Recovery


def drawer(store: Store, notify: Notify | None = None) -> FingerprintDrawer:
    """A drawer that avoids every device a persona of this store presents, blocked ones too."""
    from outreach_station.fingerprint import FingerprintDrawer

    return FingerprintDrawer([p.fingerprint for p in store.list()], notify=notify)


def create_persona(
    platform_id: str, *, label: str = "", standby: bool = False, station: Station | None = None
) -> Persona:
    """Create one persona for a platform with a freshly drawn fingerprint."""
    return create_personas(platform_id, label=label, standby=standby, station=station)[0]


def create_personas(
    platform_id: str,
    *,
    label: str = "",
    standby: bool = False,
    count: int = 1,
    notify: Notify = quiet,
    station: Station | None = None,
) -> list[Persona]:
    """Create `count` personas for a platform, each with its own freshly drawn fingerprint."""
    if count < 1 or count > 100:
        raise UsageError(_("--count must be between 1 and 100, got {count}").format(count=count))
    validate_label(label)
    with using(station, notify) as st:
        profile = st.platform(platform_id)
        st.audit.check_appendable()  # the personas must not exist without their records
        draw = drawer(st.store, notify)
        created = []
        for _unused in range(count):
            persona = st.store.create(
                profile.id, fingerprint=draw(profile).to_dict(), label=label, standby=standby
            )
            st.record(EventName.PERSONA_CREATED, persona, status=persona.status)
            created.append(persona)
        return created


def list_personas(
    *, platform_id: str | None = None, station: Station | None = None
) -> list[Persona]:
    with using(station) as st:
        if platform_id is not None:
            st.platform(platform_id)
        return st.store.list(platform=platform_id)


def get_persona(persona_id: str, *, station: Station | None = None) -> Persona:
    validate_persona_id(persona_id)
    with using(station) as st:
        return st.store.get(persona_id)


def init_vault(
    *,
    passphrase: bool = False,
    passphrase_prompt: PassphraseCallback | None = None,
    station: Station | None = None,
) -> Vault:
    """Create the master key (in the OS keyring, or wrapped by a passphrase) if none exists."""
    from outreach_station.vault import Vault, VaultMode, read_settings

    with using(station) as st:
        fresh = read_settings(st.paths) is None
        vault = Vault.init(
            st.paths,
            mode=VaultMode.PASSPHRASE if passphrase else VaultMode.KEYRING,
            allow_passphrase=st.policy.vault.allow_passphrase,
            passphrase_prompt=passphrase_prompt,
        )
        if fresh:
            st.record(EventName.VAULT_INITIALISED, mode=str(vault.settings.mode))
        return vault


def close_open_session(
    persona: Persona,
    *,
    timeout: float = 60.0,
    station: Station | None = None,
    why: str = "rotate",
) -> bool:
    """Ask the station process that has `persona` open to close it; wait until it has.

    Returns whether a session was open. The holder reseals the profile as it
    closes, exactly as when a person closes the window, and tells its person
    `why` (see `session.closing_words`).
    """
    import os
    import signal
    import time

    from outreach_station.storage.locks import note_closing
    from outreach_station.workspace import holder_pid, is_locked

    with using(station) as st:
        where = st.paths
    if not is_locked(where, persona.id):
        return False
    pid = holder_pid(where, persona.id)
    if pid is None or pid == os.getpid():
        raise BusyError(
            _("persona {persona} is open and its station process is unknown").format(
                persona=persona.id
            )
        )
    note_closing(where, persona.id, why)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_locked(where, persona.id):
        if time.monotonic() > deadline:
            raise BusyError(
                _("persona {persona} is still open in process {pid} after {timeout:.0f} s").format(
                    persona=persona.id, pid=pid, timeout=timeout
                )
            )
        time.sleep(0.05)
    return True


ROTATION_GRACE_SECONDS = 30


@dataclass(frozen=True)
class RotateResult:
    platform: str
    blocked: Persona | None
    active: Persona
    created: bool
    closed_session: bool


def rotate(
    platform_id: str,
    *,
    reason: str = "",
    force: bool = False,
    notify: Notify = quiet,
    station: Station | None = None,
) -> RotateResult:
    """Mark the platform's active persona blocked and bring a fresh one in its place.

    The new persona shares nothing with the blocked one: it is a standby
    persona (drawn with its own fingerprint when it was created) or a brand
    new one. Two rotations of one platform at once, or a second one within
    `ROTATION_GRACE_SECONDS` of the first: the second is refused, unless forced.
    """
    validate_reason(reason)
    with using(station, notify) as st:
        return _rotate(st, st.platform(platform_id), reason=reason, force=force, notify=notify)


def _rotate(
    st: Station, profile: PlatformProfile, *, reason: str, force: bool, notify: Notify
) -> RotateResult:
    from outreach_station import network
    from outreach_station.team.remote import held_for_rotation
    from outreach_station.workspace import needs_recovery, platform_lock

    store = st.store
    with (
        platform_lock(st.paths, profile.id, action=N_("opened or rotated")),
        contextlib.ExitStack() as leased,
    ):
        st.audit.check_appendable()  # a rotation without its records must not happen
        current = store.active(profile.id)
        now = store.clock()
        if (
            current is not None
            and not force
            and current.status_reason in ("promoted by rotation", "created by rotation")
            and (now - current.status_changed).total_seconds() < ROTATION_GRACE_SECONDS
        ):
            # Two people reacting to the same block must not burn the fresh persona too.
            raise BusyError(
                _(
                    "platform {platform} was rotated moments ago; persona {current} is the "
                    "fresh one and was left alone. If it is blocked too, run again with --force"
                ).format(platform=profile.id, current=current.id)
            )
        closed = False
        if current is not None:
            closed = close_open_session(current, station=st)
            if closed:
                notify(_("closed the open session of persona {current}").format(current=current.id))
            elif needs_recovery(st.paths, current.id):
                recover_persona(current, notify=notify, station=st)
            # In a team it may be open on another laptop: closed there too, and its
            # lease is held here until it is blocked (`team.remote`).
            held = held_for_rotation(
                st,
                current,
                closed_here=closed,
                reason=reason or "blocked by the platform",
                notify=notify,
            )
            closed = leased.enter_context(held) or closed
        blocked, active, created = store.rotate(
            profile.id,
            reason=reason or "blocked by the platform",
            fresh_fingerprint=lambda: drawer(store, notify)(profile).to_dict(),
        )
        if profile.proxies:
            # The new persona must not leave through the address that was just blocked.
            network.assign_from_pool(store, active, profile.proxies, force_new=True)
    if blocked is not None:
        # The reason is the person's own words: what `station audit` shows of the block.
        st.record(
            EventName.PERSONA_BLOCKED, blocked, closed_session=closed, reason=blocked.status_reason
        )
    if created:
        st.record(EventName.PERSONA_CREATED, active, status=active.status)
    st.record(
        EventName.PERSONA_ROTATED,
        active,
        replaced=blocked.id if blocked else "none",
        created=created,
    )
    return RotateResult(
        platform=profile.id, blocked=blocked, active=active, created=created, closed_session=closed
    )


@dataclass(frozen=True)
class Holder:
    """Who has a team's persona open: its lease on the server (the server's clock)."""

    persona: str
    member: str
    host: str
    since: datetime
    name: str = ""  # the name the member joined with ("" if the server has none)


@dataclass(frozen=True)
class PlatformStatus:
    platform: PlatformProfile
    active: Persona | None
    standby: int
    blocked: int
    open_personas: tuple[str, ...]
    warnings: tuple[str, ...]
    # In a team: who holds which persona, on any laptop.
    held: tuple[Holder, ...] = ()


def status(*, notify: Notify = quiet, station: Station | None = None) -> list[PlatformStatus]:
    """Per platform: the active persona, the standby pool, what is open, and warnings."""
    from outreach_station.platforms import PlatformProfile

    with using(station, notify) as st:
        catalogue = st.catalogue
        enforce_retention(notify=notify, station=st)
        personas = st.store.list()
        holders = _team_holders(st)
        ids = sorted({*catalogue.platforms, *(p.platform for p in personas)})
        result = []
        for platform_id in ids:
            profile = catalogue.platforms.get(platform_id)
            mine = [p for p in personas if p.platform == platform_id]
            if profile is None:
                if all(p.status in ("blocked", "retired") for p in mine):
                    continue
                profile = PlatformProfile(
                    id=platform_id, name="(no profile)", start_url="", source="missing"
                )
            result.append(_platform_status(st, profile, mine, holders))
        return result


def _team_holders(st: Station) -> dict[str, Holder]:
    """The team's live leases by persona (every laptop's); empty outside a team."""
    from outreach_station.team.opening import team_store

    team = team_store(st)
    if team is None:
        return {}
    return {
        lease.persona_id: Holder(
            lease.persona_id, lease.member, lease.host, lease.since, lease.member_name
        )
        for lease in team.leases()
        if not lease.expired
    }


def _platform_status(
    st: Station, profile: PlatformProfile, mine: list[Persona], holders: dict[str, Holder]
) -> PlatformStatus:
    from outreach_station.workspace import SealedState, is_locked, needs_recovery

    where = st.paths
    standby = sum(p.status == "standby" for p in mine)
    warnings = []
    if profile.source == "missing":
        warnings.append(_("its platform profile is missing or broken"))
    if standby < profile.min_standby:
        warnings.append(
            _("standby pool below minimum ({standby} of {minimum})").format(
                standby=standby, minimum=profile.min_standby
            )
        )
    opened = tuple(
        p.id
        for p in mine
        if p.status in ("active", "standby") and (p.id in holders or is_locked(where, p.id))
    )
    warnings.extend(
        _(
            "persona {persona} was not closed cleanly; "
            "'station open {platform} --persona {persona}' recovers it"
        ).format(persona=p.id, platform=profile.id)
        for p in mine
        if p.id not in opened and p.status != "retired" and needs_recovery(where, p.id)
    )
    warnings.extend(
        problem
        for p in mine
        if p.id not in opened
        and p.status != "retired"
        and not needs_recovery(where, p.id)
        and (problem := SealedState(where, p.id, store=st.local_store).problem()) is not None
    )
    return PlatformStatus(
        platform=profile,
        active=next((p for p in mine if p.status == "active"), None),
        standby=standby,
        blocked=sum(p.status == "blocked" for p in mine),
        open_personas=opened,
        warnings=tuple(warnings),
        held=tuple(holders[p.id] for p in mine if p.id in holders),
    )


def recover_persona(
    persona: Persona, *, notify: Notify = quiet, station: Station | None = None
) -> Recovery | None:
    """Reseal what a crash left of a persona's open profile (see `workspace.recover`)."""
    from outreach_station.workspace import persona_lock, recover

    with using(station, notify) as st:
        with persona_lock(st.paths, persona.id):
            from outreach_station.team.opening import data_keys

            recovered = recover(
                st.paths, persona.id, data_keys(st), notify=notify, store=st.local_store
            )
        if recovered is not None:
            st.record(EventName.PERSONA_RECOVERED, persona, resealed=recovered.resealed)
        return recovered


@dataclass(frozen=True)
class Shredded:
    persona: Persona
    key_destroyed: bool
    profile_deleted: bool
    secrets_deleted: tuple[str, ...]


def shred_persona(
    persona_id: str,
    *,
    reason: str,
    event_reason: str = "retired",
    station: Station | None = None,
) -> Shredded:
    """Retire a persona for good: destroy its data key, sealed profile and kit secrets.

    The registry row stays (as retired) so reports and the audit trail keep
    their history, and its kit details stay reserved so they are never
    handed to another persona. Refused while the persona is open. In a team
    the server's copies go too, for every member (`_shred_on_server`).
    """
    from outreach_station import network
    from outreach_station.kit import delete_kit_secrets
    from outreach_station.storage import open_blob_store
    from outreach_station.team.opening import team_store
    from outreach_station.vault import Vault, new_path, read_settings
    from outreach_station.workspace import persona_lock, sealed_file, wipe, workspace_dir

    validate_reason(reason)  # before anything is destroyed
    with using(station) as st:
        persona = get_persona(persona_id, station=st)
        if persona.status == "retired":
            raise StateError(_("persona {persona} is already retired").format(persona=persona.id))
        team = team_store(st)
        with persona_lock(st.paths, persona.id):
            key_destroyed = profile_deleted = False
            if team is not None:
                key_destroyed, profile_deleted = _shred_on_server(st, team, persona, reason)
            elif read_settings(st.paths) is not None:
                key_destroyed = Vault.open(st.paths).shred(persona.id)
            sealed = sealed_file(st.paths, persona.id)
            profile_deleted = sealed.exists() or profile_deleted
            sealed.unlink(missing_ok=True)
            new_path(sealed).unlink(missing_ok=True)
            profile_deleted = open_blob_store(st.paths, persona.id).remove_all() or profile_deleted
            wipe(workspace_dir(st.paths, persona.id))
            if team is not None:
                # This laptop's cache, its sync record and anything kept aside: all sealed
                # with the key just destroyed, so of no use to anyone.
                _drop_cache(st, persona.id)
            secrets_deleted = tuple(delete_kit_secrets(persona.id))
            # The proxy's address stays on record (the pool avoids it); its password goes.
            network.forget_password(persona.id)
            if team is None:
                persona = st.store.transition(persona.id, "retired", reason=reason)
            else:
                persona = st.store.get(persona.id)
        st.record(
            EventName.PERSONA_SHREDDED,
            persona,
            crypto_shredded=key_destroyed,
            profile_deleted=profile_deleted,
        )
        st.record(EventName.PERSONA_RETIRED, persona, why=event_reason)
    return Shredded(
        persona=persona,
        key_destroyed=key_destroyed,
        profile_deleted=profile_deleted,
        secrets_deleted=secrets_deleted,
    )


def _shred_on_server(
    st: Station, team: PostgresStore, persona: Persona, reason: str
) -> tuple[bool, bool]:
    """Delete the persona's wrapped keys, kit secrets, generations and blobs on the team server.

    Under the persona's lease, so nobody has it open anywhere: someone
    holding it is refused, naming who. Whether a key and a profile were
    there to delete.
    """
    import socket
    from datetime import timedelta

    from outreach_station.team.opening import _team_keys

    keys = _team_keys(st, team)
    keys.check_approved()
    st.audit.check_appendable()  # a shredding the trail cannot record must not happen
    lease = team.acquire_lease(
        persona.id,
        member=keys.member_id,
        host=socket.gethostname() or "unknown-host",
        ttl=timedelta(minutes=st.policy.team.lease_minutes),
    )
    try:
        done = team.shred(persona.id, token=lease.token, reason=reason)
    except BaseException:
        team.release_lease(persona.id, lease.token)
        raise
    return done.wrapped_keys > 0, done.blobs > 0 or done.generations > 0


def _drop_cache(st: Station, persona_id: str) -> None:
    import shutil

    shutil.rmtree(st.paths.persona_dir(persona_id), ignore_errors=True)


def drop_shredded_caches(*, notify: Notify = quiet, station: Station | None = None) -> list[str]:
    """Delete this laptop's sealed copies of team personas retired elsewhere; their ids.

    Another laptop's `persona retire` (or retention) destroyed their keys on
    the server, so the copies are unreadable: they go at this laptop's next
    use. A persona the server does not know (not pushed yet) is never touched.
    """
    from outreach_station.team.opening import team_store
    from outreach_station.workspace import is_locked, persona_lock, wipe, workspace_dir

    with using(station, notify) as st:
        if team_store(st) is None or not st.paths.personas.is_dir():
            return []
        cached = {d.name for d in st.paths.personas.iterdir() if d.is_dir()}
        dropped = []
        for persona in st.store.list(status="retired"):
            if persona.id not in cached or is_locked(st.paths, persona.id):
                continue
            with persona_lock(st.paths, persona.id):
                wipe(workspace_dir(st.paths, persona.id))
                _drop_cache(st, persona.id)
            dropped.append(persona.id)
            notify(
                _(
                    "persona {persona} was retired in the team; its sealed copy on this "
                    "laptop was deleted"
                ).format(persona=persona.id)
            )
        return dropped


def enforce_retention(
    *, now: datetime | None = None, notify: Notify = quiet, station: Station | None = None
) -> list[Shredded]:
    """Shred blocked personas older than the policy's `retention.blocked_days` (0: keep).

    In a team, also drop this laptop's copies of personas shredded elsewhere;
    a persona someone holds anywhere waits for the next time.
    """
    from outreach_station.team.opening import team_store
    from outreach_station.workspace import is_locked

    with using(station, notify) as st:
        in_team = team_store(st) is not None
        if in_team:
            drop_shredded_caches(notify=notify, station=st)
        days = st.policy.retention.blocked_days
        if days <= 0:
            return []
        moment = now or st.store.clock()
        expired = [
            p
            for p in st.store.list(status="blocked")
            if (moment - p.status_changed).total_seconds() >= days * 86400
        ]
        done = []
        for persona in expired:
            if is_locked(st.paths, persona.id):
                continue  # open right now (evidence being looked at): next time
            try:
                shredded = shred_persona(
                    persona.id,
                    reason=f"retention of {days} days after the block expired",
                    event_reason="retention",
                    station=st,
                )
            except (BusyError, StateError):
                if not in_team:
                    raise
                # Open on another laptop, or another laptop shredded it first: next time.
                continue
            done.append(shredded)
            notify(
                _("persona {persona} ({platform}) shredded: blocked over {days} days ago").format(
                    persona=persona.id, platform=persona.platform, days=days
                )
            )
        return done


def refresh_fingerprint(persona_id: str, *, station: Station | None = None) -> Persona:
    """Draw a new fingerprint for a persona (its platform's constraints, today's tables)."""
    from outreach_station.workspace import is_locked

    validate_persona_id(persona_id)
    with using(station) as st:
        persona = st.store.get(persona_id)
        if persona.status in ("blocked", "retired"):
            raise StateError(
                _("persona {persona} is {status}; its fingerprint stays").format(
                    persona=persona.id, status=persona.status
                )
            )
        profile = st.platform(persona.platform)
        if is_locked(st.paths, persona.id):
            raise BusyError(
                _("persona {persona} is open; close it before refreshing its fingerprint").format(
                    persona=persona.id
                )
            )
        updated = st.store.set_fingerprint(persona.id, drawer(st.store)(profile).to_dict())
        st.record(EventName.PERSONA_FINGERPRINT_REFRESHED, updated)
        return updated


def set_proxy(
    persona_id: str,
    url: str | None,
    *,
    password: str | None = None,
    station: Station | None = None,
) -> str:
    """Set (or with None, clear) a persona's own proxy; returns what is now in force."""
    from outreach_station import network

    validate_persona_id(persona_id)
    with using(station) as st:
        persona = st.store.get(persona_id)
        if url is None:
            network.clear_persona_proxy(st.store, persona.id)
            st.record(EventName.PERSONA_PROXY_CLEARED, persona)
            return "none"
        setting = network.set_persona_proxy(st.store, persona, url, password=password)
        # The audit names the server only: the user name may identify a paid account.
        st.record(
            EventName.PERSONA_PROXY_SET,
            persona,
            scheme=setting.scheme,
            host=setting.host,
            port=setting.port,
        )
        return setting.describe()
