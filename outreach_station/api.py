"""The core API: everything the `station` command does, callable from Python.

The CLI parses, calls one function here and renders the result. Nothing in
this module prints; it reports progress through a `notify` callback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outreach_station import network, paths
from outreach_station.audit import AuditLog
from outreach_station.browser import (
    BrowserExecutable,
    SessionHook,
    SessionOutcome,
    build_launch,
    find_browser,
    require_display,
    run_session,
    scratch_dir,
)
from outreach_station.errors import (
    BrowserError,
    BusyError,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.fingerprint import Fingerprint, generate
from outreach_station.ids import validate_persona_id
from outreach_station.platforms import (
    INSPECTOR_URL,
    PlatformCatalogue,
    PlatformProfile,
    load_catalogue,
    profile_dirs,
)
from outreach_station.policy import LOOSENING_IGNORED_EVENT, EffectivePolicy, Policy
from outreach_station.registry import Persona, Registry
from outreach_station.values import url_is_plain, validate_label, validate_reason
from outreach_station.workspace import (
    Recovery,
    SealedState,
    is_locked,
    needs_recovery,
    open_workspace,
    persona_lock,
    platform_lock,
    recover,
    sealed_file,
    wipe,
    workspace_dir,
)

if TYPE_CHECKING:
    from outreach_station.inspector import InspectorServer
    from outreach_station.inspector.checks import Check
    from outreach_station.vault import PassphraseCallback, ProgressCallback, Vault

Notify = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def effective_policy(notify: Notify | None = None) -> EffectivePolicy:
    """The policy in force: built-in defaults < user config < system policy."""
    from outreach_station.policy import load_policy

    return load_policy(warn=notify or _quiet)


def platforms(policy: Policy | None = None, *, notify: Notify | None = None) -> PlatformCatalogue:
    policy = policy or effective_policy(notify).policy
    return load_catalogue(
        profile_dirs(policy.platforms.profiles_dir), allowed=policy.platforms.allowed
    )


def platform(platform_id: str, policy: Policy | None = None) -> PlatformProfile:
    return platforms(policy).get(platform_id)


def registry() -> Registry:
    return Registry(paths.current().registry)


def audit_log() -> AuditLog:
    """The audit log, where the system policy puts it (else under STATION_HOME)."""
    from outreach_station.audit import AuditLog, ChainAnchor, default_path

    path = effective_policy().policy.audit.path or default_path()
    return AuditLog(path, anchor=ChainAnchor(paths.current().audit_anchor, path))


def audit(event: str, persona: Persona | None = None, **detail: str | int | bool) -> None:
    audit_log().append(
        event,
        persona=persona.id if persona else None,
        platform=persona.platform if persona else None,
        detail=detail or None,
    )


def create_persona(platform_id: str, *, label: str = "", standby: bool = False) -> Persona:
    """Create one persona for a platform with a freshly drawn fingerprint."""
    return create_personas(platform_id, label=label, standby=standby)[0]


def create_personas(
    platform_id: str,
    *,
    label: str = "",
    standby: bool = False,
    count: int = 1,
    notify: Notify = _quiet,
) -> list[Persona]:
    """Create `count` personas for a platform, each with its own freshly drawn fingerprint."""
    if count < 1 or count > 100:
        raise UsageError(f"--count must be between 1 and 100, got {count}")
    validate_label(label)
    profile = platform(platform_id)
    audit_log().check_appendable()  # the personas must not exist without their records
    created = []
    with registry() as reg:
        draw = FingerprintDrawer(reg, notify=notify)
        for _ in range(count):
            persona = reg.create(
                profile.id, fingerprint=draw(profile).to_dict(), label=label, standby=standby
            )
            audit("persona.created", persona, status=persona.status)
            created.append(persona)
    return created


class FingerprintDrawer:
    """Draws fingerprints that no persona in the registry already presents.

    Blocked and retired personas count too: a rotated persona must not look
    like the device the platform just blocked.
    """

    def __init__(self, reg: Registry, *, notify: Notify = _quiet) -> None:
        from outreach_station.fonts import inventory

        self._fonts = inventory()
        self._notify = notify
        self._taken: set[str] = set()
        for persona in reg.list():
            with contextlib.suppress(StateError, TypeError, ValueError):
                stored = Fingerprint.from_dict(dict(persona.fingerprint))
                self._taken.add(stored.device_key(self._fonts.notable))

    def __call__(self, profile: PlatformProfile) -> Fingerprint:
        fingerprint = generate(profile, fonts=self._fonts, avoid=self._taken)
        key = fingerprint.device_key(self._fonts.notable)
        if key in self._taken:
            self._notify(
                "warning: the new persona looks like the same device as another persona: this "
                "machine offers too few screens, font families or processors to tell them "
                "apart (see 'station doctor')"
            )
        self._taken.add(key)
        return fingerprint


def list_personas(*, platform_id: str | None = None) -> list[Persona]:
    if platform_id is not None:
        platform(platform_id)
    with registry() as reg:
        return reg.list(platform=platform_id)


def get_persona(persona_id: str) -> Persona:
    validate_persona_id(persona_id)
    with registry() as reg:
        return reg.get(persona_id)


@dataclass(frozen=True)
class OpenResult:
    persona: Persona
    created: bool
    outcome: SessionOutcome


def _report_hook(
    server: InspectorServer,
    on_report: Callable[[Mapping[str, Any], list[Check]], None],
) -> SessionHook:
    """The checks `station check` runs, for any session that opens the inspector (the demo too).

    They come from `server.check_report`, the function that gives the page its
    verdicts, against the persona and engine the server was made with.
    """

    async def hook(_context: Any, _page: Any) -> None:
        import asyncio

        report = await await_report(server)
        # Off the loop: the first call reads the installed fonts (fontconfig's tools).
        checks = await asyncio.to_thread(server.check_report, report)
        on_report(report, checks)

    return hook


async def await_report(server: InspectorServer, timeout: float = 30.0) -> Mapping[str, Any]:
    """The inspector's report, awaited in short steps so a signal can end the wait at once."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (report := server.last_report()) is None:
        if loop.time() > deadline:
            raise BrowserError(f"the inspector page sent no report within {timeout:g} s")
        await asyncio.sleep(0.05)
    return report


def _browser(effective: EffectivePolicy) -> BrowserExecutable:
    from outreach_station.policy import SourceKind

    setting = effective.setting("browser.executable")
    chosen = setting.value if isinstance(setting.value, Path) else None
    by_system = setting.source.kind is SourceKind.SYSTEM
    return find_browser(
        policy_executable=chosen if by_system else None,
        user_executable=None if by_system else chosen,
    )


PLATFORM_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def _platform_turn(
    station: paths.StationPaths, platform_id: str, *, timeout: float = PLATFORM_WAIT_SECONDS
) -> Iterator[None]:
    """The platform's lock, waited for: another open holds it only while it unseals."""
    import time

    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(platform_lock(station, platform_id, action="opened or rotated"))
            except BusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            else:
                break
        yield


def _choose_in_turn(
    station: paths.StationPaths,
    policy: Policy,
    profile: PlatformProfile,
    persona_id: str | None,
    notify: Notify,
) -> tuple[ExitStack, Persona, bool, _Egress]:
    """Choose (or create) the persona to open while holding the platform's lock.

    Choosing and taking the persona's lock are one step to other stations:
    ten first opens at once make one persona and one browser, and the other
    nine are told it is already open. The returned stack holds the platform
    lock; the caller closes it once it holds the persona's lock.
    """
    choosing = ExitStack()
    choosing.enter_context(_platform_turn(station, profile.id))
    try:
        # Opening, promoting or creating a persona must not happen without its records.
        audit_log().check_appendable()
        with registry() as reg:
            required = _proxy_required(reg, policy, profile, persona_id)
            persona, created = _choose_persona(reg, profile, persona_id, notify)
            if is_locked(station, persona.id):
                holder = _holder_pid(station, persona.id)
                raise BusyError(
                    f"persona {persona.id} is already open in another station session "
                    f"(process {holder or '?'}); close that browser first"
                )
            egress = _egress(reg, persona, profile, required=required)
    except BaseException:
        choosing.close()
        raise
    return choosing, persona, created, egress


def _choose_persona(
    reg: Registry, profile: PlatformProfile, persona_id: str | None, notify: Notify
) -> tuple[Persona, bool]:
    if persona_id is not None:
        persona = reg.get(validate_persona_id(persona_id))
        if persona.platform != profile.id:
            raise UsageError(
                f"persona {persona.id} belongs to platform '{persona.platform}', not '{profile.id}'"
            )
        if persona.status in ("blocked", "retired"):
            raise StateError(f"persona {persona.id} is {persona.status} and cannot be opened")
        return persona, False
    active = reg.active(profile.id)
    if active is not None:
        return active, False
    standby = reg.list(platform=profile.id, status="standby")
    if standby:
        # The pool exists to be used: the oldest standby persona becomes active.
        try:
            return reg.transition(standby[0].id, "active", reason="promoted at open"), False
        except StateError:
            # Another station promoted one at the same moment: use that one.
            if (active := reg.active(profile.id)) is not None:
                return active, False
            raise
    fingerprint = FingerprintDrawer(reg, notify=notify)(profile)
    persona = reg.create(profile.id, fingerprint=fingerprint.to_dict())
    audit("persona.created", persona, status=persona.status)
    return persona, True


@dataclass(frozen=True)
class _Egress:
    args: list[str]
    login: dict[str, str] | None
    setting: network.ProxySetting | None = None


def _egress(
    reg: Registry, persona: Persona, profile: PlatformProfile, *, required: bool = False
) -> _Egress:
    """The persona's proxy (assigned from the platform's pool if it has none).

    `required`: the system policy's `platform.<id>.require_proxy`, on top of the profile's.
    """
    setting = network.assign_from_pool(reg, persona, profile.proxies)
    if setting is None and (required or profile.require_proxy):
        raise StateError(
            f"platform {profile.id} requires a proxy and persona {persona.id} has none; "
            f"set one with 'station persona proxy {persona.id} URL' or add 'proxies' "
            "to the platform profile"
        )
    return _Egress(
        args=[*network.webrtc_args(), *network.browser_args(setting)],
        login=network.playwright_proxy(setting, persona.id),
        setting=setting,
    )


def _proxy_required(
    reg: Registry, policy: Policy, profile: PlatformProfile, persona_id: str | None
) -> bool:
    """Whether the profile or the policy requires a proxy; refused early if none can be had.

    A fresh persona would have no proxy to go out through, so that case is
    refused before one is created.
    """
    required = policy.rules_for(profile.id).require_proxy or profile.require_proxy
    if required and not profile.proxies and persona_id is None and not reg.active(profile.id):
        raise StateError(
            f"platform {profile.id} requires a proxy and has no proxy pool for a new "
            "persona; add 'proxies' to the platform profile, or create a persona "
            "('station persona new') and set its proxy ('station persona proxy ID URL')"
        )
    return required


def open_vault(
    *, passphrase_prompt: PassphraseCallback | None = None, policy: Policy | None = None
) -> Vault:
    """The vault of this station home, created (master key in the keyring) on first use."""
    from outreach_station.vault import Vault, VaultMode, read_settings

    policy = policy or effective_policy().policy
    station = paths.current()
    settings = read_settings(station)
    # A home set up with `station init --passphrase` is opened in that mode;
    # asking for keyring mode there would refuse it at every open.
    vault = Vault.init(
        station,
        mode=settings.mode if settings is not None else VaultMode.KEYRING,
        allow_passphrase=policy.vault.allow_passphrase,
        passphrase_prompt=passphrase_prompt,
    )
    return vault


def init_vault(
    *, passphrase: bool = False, passphrase_prompt: PassphraseCallback | None = None
) -> Vault:
    """Create the master key (in the OS keyring, or wrapped by a passphrase) if none exists."""
    from outreach_station.vault import Vault, VaultMode, read_settings

    station = paths.current()
    fresh = read_settings(station) is None
    vault = Vault.init(
        station,
        mode=VaultMode.PASSPHRASE if passphrase else VaultMode.KEYRING,
        allow_passphrase=effective_policy().policy.vault.allow_passphrase,
        passphrase_prompt=passphrase_prompt,
    )
    if fresh:
        audit("vault.initialised", mode=str(vault.settings.mode))
    return vault


class _DeferredSignals:
    """Hold SIGINT/SIGTERM/SIGHUP while a profile is unsealed or sealed.

    A shift ending in the middle of sealing must not leave half a
    generation: the signal is remembered and acted on once sealing is done.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(
                sig, lambda number, _frame: self.received.append(signal.Signals(number).name)
            )

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_open_args(url: str | None, persona_id: str | None) -> None:
    """Refuse a bad --url or --persona before the vault or the browser is touched."""
    if url is not None and not (url.startswith(("http://", "https://")) and url_is_plain(url)):
        raise UsageError(
            "--url must be an http:// or https:// address of at most 2048 printable "
            "characters without spaces"
        )
    if persona_id is not None:
        validate_persona_id(persona_id)


def open_platform(  # noqa: PLR0915 - one session, step by step, reads best in one place
    platform_id: str,
    *,
    persona_id: str | None = None,
    url: str | None = None,
    headless: bool = False,
    notify: Notify = _quiet,
    hook: SessionHook | None = None,
    close_after_hook: bool = False,
    on_report: Callable[[Mapping[str, Any], list[Check]], None] | None = None,
    passphrase_prompt: PassphraseCallback | None = None,
    progress: Callable[[str], ProgressCallback | None] | None = None,
    minute_seconds: float = 60.0,
) -> OpenResult:
    """Open a platform in its persona's own browser and wait until the session ends.

    The persona's sealed profile is unsealed into a private RAM-backed
    workspace for the session and sealed again afterwards. `hook` (for tests
    and self-checks) runs against the live browser once the start page has
    loaded; with `close_after_hook` the session ends when it returns. When the
    start page is the built-in inspector, `on_report` gets what it saw of the
    persona and the coherence checks over it. `progress(action)` may return a
    callback that is told how sealing or unsealing proceeds. `minute_seconds`
    is how long a policy minute lasts for the session limits (tests, drills).
    """
    from outreach_station.lockdown import check_start_url, lockdown_for

    effective = effective_policy(notify)
    profile = platform(platform_id, effective.policy)
    _check_open_args(url, persona_id)
    lockdown = lockdown_for(effective.policy, profile.id, minute=minute_seconds)
    if url is not None:
        check_start_url(lockdown, url)
    for ignored in effective.ignored:
        # Which key and why, never the value: an allowlist would name hosts.
        audit_log().append(LOOSENING_IGNORED_EVENT, detail=ignored.audit_detail())
    require_display(headless)
    browser = _browser(effective)
    vault = open_vault(passphrase_prompt=passphrase_prompt, policy=effective.policy)
    # The start of a shift is when expired blocked personas go (once everything
    # above has said yes); a failure here must not keep staff offline.
    try:
        enforce_retention(notify=notify)
    except StationError as exc:
        notify(f"warning: blocked personas past their retention were not shredded: {exc}")
    station = paths.current()
    # Held until the persona's own lock is taken (closing it again is harmless).
    choosing, persona, created, egress = _choose_in_turn(
        station, effective.policy, profile, persona_id, notify
    )
    if created:
        notify(f"created persona {persona.id} for {profile.id}")
    fingerprint = Fingerprint.from_dict(persona.fingerprint)
    deferred = _DeferredSignals()
    deferred.install()
    opened = False
    outcome: SessionOutcome | None = None
    try:
        with ExitStack() as stack:
            workspace = stack.enter_context(
                open_workspace(
                    station,
                    persona.id,
                    vault,
                    notify=notify,
                    progress=progress,
                    on_recovered=lambda r: audit("persona.recovered", persona, resealed=r.resealed),
                )
            )
            choosing.close()  # the persona's own lock now keeps other stations off it
            spec = build_launch(
                browser=browser,
                fingerprint=fingerprint,
                user_data_dir=workspace.profile,
                home=workspace.home,
                headless=headless,
                lockdown=lockdown,
                network_args=tuple(egress.args),
                proxy=egress.login,
                scratch=scratch_dir(workspace.directory),
                upstream=egress.setting,
            )
            target = url or profile.start_url
            if target == INSPECTOR_URL:
                from outreach_station.inspector import InspectorServer

                # What the checks need, so that the page shows `station check`'s verdicts.
                server = stack.enter_context(
                    InspectorServer(
                        fingerprint=fingerprint,
                        engine_major=browser.major,
                        # Headed desktop: the page has the real window, not a viewport.
                        real_window=spec.screen is not None,
                    )
                )
                target = server.url
                if on_report is not None and hook is None:
                    hook = _report_hook(server, on_report)
            notify(f"using {browser.describe()}")
            with registry() as reg:
                reg.mark_opened(persona.id)
            audit("persona.opened", persona, headless=headless)
            opened = True
            if deferred.received:
                outcome = SessionOutcome(ended_by="signal", signal_name=deferred.received[0])
            else:
                import asyncio  # here: keeps it off the start-up path of other commands

                outcome = asyncio.run(
                    run_session(
                        spec,
                        target,
                        hook=hook,
                        close_after_hook=close_after_hook,
                        on_ready=lambda where: notify(
                            f"persona {persona.id} open at {where}"
                            + (
                                " (headless: no window; press Ctrl-C to end)"
                                if headless
                                else " (close the window to end)"
                            )
                        ),
                        lockdown=lockdown,
                        on_violation=lambda kind, host: audit(
                            "policy.violation", persona, kind=kind, host=host
                        ),
                    )
                )
            # asyncio put the default handlers back; sealing must not be interrupted.
            deferred.install()
    finally:
        choosing.close()
        deferred.restore()
        if opened and outcome is None:
            # The browser failed to start or the session broke off: every opened
            # persona is closed in the audit trail, after its profile was resealed.
            with contextlib.suppress(StationError, OSError):
                audit("persona.closed", persona, ended_by="failed")
    audit("persona.closed", persona, ended_by=outcome.ended_by)
    if outcome.start_page_error:
        notify(f"the start page did not load: {outcome.start_page_error}")
    with registry() as reg:
        persona = reg.get(persona.id)
    return OpenResult(persona=persona, created=created, outcome=outcome)


@dataclass(frozen=True)
class RotateResult:
    platform: str
    blocked: Persona | None
    active: Persona
    created: bool
    closed_session: bool


def _holder_pid(station: paths.StationPaths, persona_id: str) -> int | None:
    try:
        text = station.persona_lock(persona_id).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def close_open_session(persona: Persona, *, timeout: float = 60.0) -> bool:
    """Ask the station process that has `persona` open to close it; wait until it has.

    Returns whether a session was open. The holder reseals the profile as it
    closes, exactly as when a person closes the window.
    """
    import os
    import signal
    import time

    station = paths.current()
    if not is_locked(station, persona.id):
        return False
    pid = _holder_pid(station, persona.id)
    if pid is None or pid == os.getpid():
        raise BusyError(f"persona {persona.id} is open and its station process is unknown")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_locked(station, persona.id):
        if time.monotonic() > deadline:
            raise BusyError(
                f"persona {persona.id} is still open in process {pid} after {timeout:.0f} s"
            )
        time.sleep(0.05)
    return True


ROTATION_GRACE_SECONDS = 30


def rotate(
    platform_id: str, *, reason: str = "", force: bool = False, notify: Notify = _quiet
) -> RotateResult:
    """Mark the platform's active persona blocked and bring a fresh one in its place.

    The new persona shares nothing with the blocked one: it is a standby
    persona (drawn with its own fingerprint when it was created) or a brand
    new one. Two rotations of one platform at once, or a second one within
    `ROTATION_GRACE_SECONDS` of the first: the second is refused, unless forced.
    """
    validate_reason(reason)
    profile = platform(platform_id)
    station = paths.current()
    with platform_lock(station, profile.id, action="opened or rotated"):
        audit_log().check_appendable()  # a rotation without its records must not happen
        with registry() as reg:
            current = reg.active(profile.id)
            now = reg.clock()
        if (
            current is not None
            and not force
            and current.status_reason in ("promoted by rotation", "created by rotation")
            and (now - current.status_changed).total_seconds() < ROTATION_GRACE_SECONDS
        ):
            # Two people reacting to the same block must not burn the fresh persona too.
            raise BusyError(
                f"platform {profile.id} was rotated moments ago; persona {current.id} is the "
                "fresh one and was left alone. If it is blocked too, run again with --force"
            )
        closed = False
        if current is not None:
            closed = close_open_session(current)
            if closed:
                notify(f"closed the open session of persona {current.id}")
            elif needs_recovery(station, current.id):
                recover_persona(current, notify=notify)
        with registry() as reg:
            blocked, active, created = reg.rotate(
                profile.id,
                reason=reason or "blocked by the platform",
                fresh_fingerprint=lambda: FingerprintDrawer(reg, notify=notify)(profile).to_dict(),
            )
            if profile.proxies:
                # The new persona must not leave through the address that was just blocked.
                network.assign_from_pool(reg, active, profile.proxies, force_new=True)
    if blocked is not None:
        audit("persona.blocked", blocked, closed_session=closed)
    if created:
        audit("persona.created", active, status=active.status)
    audit(
        "persona.rotated",
        active,
        replaced=blocked.id if blocked else "none",
        created=created,
    )
    return RotateResult(
        platform=profile.id, blocked=blocked, active=active, created=created, closed_session=closed
    )


@dataclass(frozen=True)
class PlatformStatus:
    platform: PlatformProfile
    active: Persona | None
    standby: int
    blocked: int
    open_personas: tuple[str, ...]
    warnings: tuple[str, ...]


def status(*, notify: Notify = _quiet) -> list[PlatformStatus]:
    """Per platform: the active persona, the standby pool, what is open, and warnings."""
    catalogue = platforms()
    station = paths.current()
    enforce_retention(notify=notify)
    with registry() as reg:
        personas = reg.list()
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
        active = next((p for p in mine if p.status == "active"), None)
        standby = sum(p.status == "standby" for p in mine)
        warnings = []
        if profile.source == "missing":
            warnings.append("its platform profile is missing or broken")
        if standby < profile.min_standby:
            warnings.append(f"standby pool below minimum ({standby} of {profile.min_standby})")
        opened = tuple(
            p.id for p in mine if p.status in ("active", "standby") and is_locked(station, p.id)
        )
        warnings.extend(
            f"persona {p.id} was not closed cleanly; 'station open {platform_id} --persona "
            f"{p.id}' recovers it"
            for p in mine
            if p.id not in opened and p.status != "retired" and needs_recovery(station, p.id)
        )
        warnings.extend(
            problem
            for p in mine
            if p.id not in opened
            and p.status != "retired"
            and not needs_recovery(station, p.id)
            and (problem := SealedState(station, p.id).problem()) is not None
        )
        result.append(
            PlatformStatus(
                platform=profile,
                active=active,
                standby=standby,
                blocked=sum(p.status == "blocked" for p in mine),
                open_personas=opened,
                warnings=tuple(warnings),
            )
        )
    return result


def recover_persona(persona: Persona, *, notify: Notify = _quiet) -> Recovery | None:
    """Reseal what a crash left of a persona's open profile (see `workspace.recover`)."""
    station = paths.current()
    with persona_lock(station, persona.id):
        recovered = recover(station, persona.id, open_vault(), notify=notify)
    if recovered is not None:
        audit("persona.recovered", persona, resealed=recovered.resealed)
    return recovered


@dataclass(frozen=True)
class Shredded:
    persona: Persona
    key_destroyed: bool
    profile_deleted: bool
    secrets_deleted: tuple[str, ...]


def shred_persona(persona_id: str, *, reason: str, event_reason: str = "retired") -> Shredded:
    """Retire a persona for good: destroy its data key, sealed profile and kit secrets.

    The registry row stays (as retired) so reports and the audit trail keep
    their history, and its kit details stay reserved so they are never
    handed to another persona. Refused while the persona is open.
    """
    from outreach_station.kit import delete_kit_secrets
    from outreach_station.vault import Vault, new_path, read_settings

    validate_reason(reason)  # before anything is destroyed
    station = paths.current()
    persona = get_persona(persona_id)
    if persona.status == "retired":
        raise StateError(f"persona {persona.id} is already retired")
    with persona_lock(station, persona.id):
        key_destroyed = False
        if read_settings(station) is not None:
            key_destroyed = Vault.open(station).shred(persona.id)
        sealed = sealed_file(station, persona.id)
        profile_deleted = sealed.exists()
        sealed.unlink(missing_ok=True)
        new_path(sealed).unlink(missing_ok=True)
        wipe(workspace_dir(station, persona.id))
        secrets_deleted = tuple(delete_kit_secrets(persona.id))
        # The proxy's address stays on record (the pool avoids it); its password goes.
        network.forget_password(persona.id)
        with registry() as reg:
            persona = reg.transition(persona.id, "retired", reason=reason)
    audit(
        "persona.shredded", persona, crypto_shredded=key_destroyed, profile_deleted=profile_deleted
    )
    audit("persona.retired", persona, why=event_reason)
    return Shredded(
        persona=persona,
        key_destroyed=key_destroyed,
        profile_deleted=profile_deleted,
        secrets_deleted=secrets_deleted,
    )


def enforce_retention(*, now: datetime | None = None, notify: Notify = _quiet) -> list[Shredded]:
    """Shred blocked personas older than the policy's `retention.blocked_days` (0: keep)."""
    days = effective_policy().policy.retention.blocked_days
    if days <= 0:
        return []
    with registry() as reg:
        moment = now or reg.clock()
        expired = [
            p
            for p in reg.list(status="blocked")
            if (moment - p.status_changed).total_seconds() >= days * 86400
        ]
    done = []
    for persona in expired:
        if is_locked(paths.current(), persona.id):
            continue  # open right now (evidence being looked at): next time
        done.append(
            shred_persona(
                persona.id,
                reason=f"retention of {days} days after the block expired",
                event_reason="retention",
            )
        )
        notify(f"persona {persona.id} ({persona.platform}) shredded: blocked over {days} days ago")
    return done


def refresh_fingerprint(persona_id: str) -> Persona:
    """Draw a new fingerprint for a persona (its platform's constraints, today's tables)."""
    validate_persona_id(persona_id)
    with registry() as reg:
        persona = reg.get(persona_id)
    if persona.status in ("blocked", "retired"):
        raise StateError(f"persona {persona.id} is {persona.status}; its fingerprint stays")
    profile = platform(persona.platform)
    if is_locked(paths.current(), persona.id):
        raise BusyError(f"persona {persona.id} is open; close it before refreshing its fingerprint")
    with registry() as reg:
        updated = reg.set_fingerprint(persona.id, FingerprintDrawer(reg)(profile).to_dict())
    audit("persona.fingerprint_refreshed", updated)
    return updated


def set_proxy(persona_id: str, url: str | None, *, password: str | None = None) -> str:
    """Set (or with None, clear) a persona's own proxy; returns what is now in force."""
    validate_persona_id(persona_id)
    with registry() as reg:
        persona = reg.get(persona_id)
        if url is None:
            network.clear_persona_proxy(reg, persona.id)
            audit("persona.proxy_cleared", persona)
            return "none"
        setting = network.set_persona_proxy(reg, persona, url, password=password)
    # The audit names the server only: the user name may identify a paid account.
    audit("persona.proxy_set", persona, scheme=setting.scheme, host=setting.host, port=setting.port)
    return setting.describe()


@dataclass(frozen=True)
class CheckResult:
    persona: Persona
    checks: list[Check]
    report: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def check_persona(
    persona_id: str, *, notify: Notify = _quiet, stun: str | None = None
) -> CheckResult:
    """Open the persona headless against the built-in inspector and run every check."""
    persona = get_persona(persona_id)
    got: dict[str, Any] = {}

    def on_report(report: Mapping[str, Any], checks: list[Check]) -> None:
        got["report"], got["checks"] = report, checks

    from outreach_station.inspector import InspectorServer

    engine = _browser(effective_policy()).major
    fingerprint = Fingerprint.from_dict(persona.fingerprint)
    with InspectorServer(fingerprint=fingerprint, engine_major=engine) as server:
        url = server.page_url(stun=stun)
        # One hook for both: `station check` and the demo give the same verdicts.
        hook = _report_hook(server, on_report)
        open_platform(
            persona.platform,
            persona_id=persona.id,
            url=url,
            headless=True,
            notify=notify,
            hook=hook,
            close_after_hook=True,
        )
    if "checks" not in got:
        raise StateError(f"the inspector got no report from persona {persona.id}")
    return CheckResult(persona=persona, checks=got["checks"], report=got["report"])
