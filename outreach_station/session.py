"""Sessions: open a platform in its persona's browser (`open`), or check a persona (`check`).

The path of one open, step by step: the arguments are checked, the policy
and platform come from the command's `Station`, the display and browser are
found, the vault is opened, expired blocked personas are shredded, the
platform's turn is taken and its persona chosen (or created), the
workspace unseals the profile, the browser runs until the person closes it,
and the workspace reseals. The audit trail records each step that matters.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from outreach_station import network
from outreach_station.appearance import appearance_for
from outreach_station.browser import (
    SessionHook,
    SessionOutcome,
    build_launch,
    require_display,
    run_session,
    scratch_dir,
)
from outreach_station.clock import utcnow
from outreach_station.context import Notify, Station, quiet, using
from outreach_station.errors import (
    BusyError,
    EnvironmentProblem,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.events import EventName
from outreach_station.i18n import N_, _
from outreach_station.ids import validate_persona_id
from outreach_station.lifecycle import drawer, enforce_retention
from outreach_station.personas import Persona
from outreach_station.platforms import INSPECTOR_URL, PlatformProfile
from outreach_station.policy import Policy
from outreach_station.team.opening import team_session, team_store
from outreach_station.values import url_is_plain
from outreach_station.workspace import (
    DataKeys,
    DeferredSignals,
    holder_pid,
    is_locked,
    open_workspace,
    platform_lock,
)

if TYPE_CHECKING:
    from outreach_station.inspector.checks import Check
    from outreach_station.inspector.hooks import OnReport
    from outreach_station.storage import Store
    from outreach_station.vault import PassphraseCallback, ProgressCallback


@dataclass(frozen=True)
class OpenResult:
    persona: Persona
    created: bool
    outcome: SessionOutcome
    # The sealed profile's size on disk once saved, and when it was saved.
    saved_bytes: int = 0
    saved_at: datetime | None = None
    # Why another station asked this session to close ("rotate"), if it said.
    closed_for: str | None = None


PLATFORM_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def _platform_turn(
    st: Station, platform_id: str, *, timeout: float = PLATFORM_WAIT_SECONDS
) -> Iterator[None]:
    """The platform's lock, waited for: another open holds it only while it unseals."""
    import time

    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(
                    platform_lock(st.paths, platform_id, action=N_("opened or rotated"))
                )
            except BusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            else:
                break
        yield


@dataclass(frozen=True)
class _Egress:
    args: list[str]
    login: dict[str, str] | None
    setting: network.ProxySetting | None = None


def _choose_in_turn(
    st: Station, profile: PlatformProfile, persona_id: str | None
) -> tuple[ExitStack, Persona, bool, _Egress]:
    """Choose (or create) the persona to open while holding the platform's lock.

    Choosing and taking the persona's lock are one step to other stations:
    ten first opens at once make one persona and one browser, and the other
    nine are told it is already open. The returned stack holds the platform
    lock; the caller closes it once it holds the persona's lock.
    """
    choosing = ExitStack()
    choosing.enter_context(_platform_turn(st, profile.id))
    try:
        # Opening, promoting or creating a persona must not happen without its records.
        st.audit.check_appendable()
        required = _proxy_required(st.store, st.policy, profile, persona_id)
        persona, created = _choose_persona(st, profile, persona_id)
        if is_locked(st.paths, persona.id):
            holder = holder_pid(st.paths, persona.id)
            raise BusyError(
                _(
                    "persona {persona} is already open in another station session "
                    "(process {process}); close that browser first"
                ).format(persona=persona.id, process=holder or "?")
            )
        egress = _egress(st.store, persona, profile, required=required)
    except BaseException:
        choosing.close()
        raise
    return choosing, persona, created, egress


def _choose_persona(
    st: Station, profile: PlatformProfile, persona_id: str | None
) -> tuple[Persona, bool]:
    store = st.store
    if persona_id is not None:
        persona = store.get(validate_persona_id(persona_id))
        if persona.platform != profile.id:
            raise UsageError(
                _("persona {persona} belongs to platform '{platform}', not '{requested}'").format(
                    persona=persona.id, platform=persona.platform, requested=profile.id
                )
            )
        if persona.status in ("blocked", "retired"):
            raise StateError(
                _("persona {persona} is {status} and cannot be opened").format(
                    persona=persona.id, status=persona.status
                )
            )
        return persona, False
    active = store.active(profile.id)
    if active is not None:
        return active, False
    standby = store.list(platform=profile.id, status="standby")
    if standby:
        # The pool exists to be used: the oldest standby persona becomes active.
        try:
            return store.transition(standby[0].id, "active", reason="promoted at open"), False
        except StateError:
            # Another station promoted one at the same moment: use that one.
            if (active := store.active(profile.id)) is not None:
                return active, False
            raise
    persona = store.create(profile.id, fingerprint=drawer(store, st.notify)(profile).to_dict())
    st.record(EventName.PERSONA_CREATED, persona, status=persona.status)
    return persona, True


def _egress(
    store: Store, persona: Persona, profile: PlatformProfile, *, required: bool = False
) -> _Egress:
    """The persona's proxy (assigned from the platform's pool if it has none).

    `required`: the system policy's `platform.<id>.require_proxy`, on top of the profile's.
    """
    setting = network.assign_from_pool(store, persona, profile.proxies)
    if setting is None and (required or profile.require_proxy):
        raise StateError(
            _(
                "platform {platform} requires a proxy and persona {persona} has none; "
                "set one with 'station persona proxy {persona} URL' or add 'proxies' "
                "to the platform profile"
            ).format(platform=profile.id, persona=persona.id)
        )
    return _Egress(
        args=[*network.webrtc_args(), *network.browser_args(setting)],
        login=network.playwright_proxy(setting, persona.id),
        setting=setting,
    )


def _proxy_required(
    store: Store, policy: Policy, profile: PlatformProfile, persona_id: str | None
) -> bool:
    """Whether the profile or the policy requires a proxy; refused early if none can be had.

    A fresh persona would have no proxy to go out through, so that case is
    refused before one is created.
    """
    required = policy.rules_for(profile.id).require_proxy or profile.require_proxy
    if required and not profile.proxies and persona_id is None and not store.active(profile.id):
        raise StateError(
            _(
                "platform {platform} requires a proxy and has no proxy pool for a new "
                "persona; add 'proxies' to the platform profile, or create a persona "
                "('station persona new') and set its proxy ('station persona proxy ID URL')"
            ).format(platform=profile.id)
        )
    return required


def check_open_args(url: str | None, persona_id: str | None) -> None:
    """Refuse a bad --url or --persona before the vault or the browser is touched."""
    if url is not None and not (url.startswith(("http://", "https://")) and url_is_plain(url)):
        raise UsageError(
            _(
                "--url must be an http:// or https:// address of at most 2048 printable "
                "characters without spaces"
            )
        )
    if persona_id is not None:
        validate_persona_id(persona_id)


def open_platform(
    platform_id: str,
    *,
    persona_id: str | None = None,
    url: str | None = None,
    headless: bool = False,
    notify: Notify = quiet,
    hook: SessionHook | None = None,
    close_after_hook: bool = False,
    on_report: OnReport | None = None,
    passphrase_prompt: PassphraseCallback | None = None,
    progress: Callable[[str], ProgressCallback | None] | None = None,
    minute_seconds: float = 60.0,
    station: Station | None = None,
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
    check_open_args(url, persona_id)
    with using(station, notify) as st:
        return _open(
            st,
            platform_id,
            _Options(
                persona_id=persona_id,
                url=url,
                headless=headless,
                notify=notify,
                hook=hook,
                close_after_hook=close_after_hook,
                on_report=on_report,
                passphrase_prompt=passphrase_prompt,
                progress=progress,
                minute_seconds=minute_seconds,
            ),
        )


@dataclass(frozen=True)
class _Options:
    persona_id: str | None
    url: str | None
    headless: bool
    notify: Notify
    hook: SessionHook | None
    close_after_hook: bool
    on_report: OnReport | None
    passphrase_prompt: PassphraseCallback | None
    progress: Callable[[str], ProgressCallback | None] | None
    minute_seconds: float


def _open(st: Station, platform_id: str, opts: _Options) -> OpenResult:  # noqa: PLR0915 - one session, step by step, reads best in one place
    from outreach_station.lockdown import check_start_url, lockdown_for

    notify = opts.notify
    hook = opts.hook
    # In a team the server is reached first: without it no lease can be proven.
    team = team_store(st)
    profile = st.platform(platform_id)
    lockdown = lockdown_for(st.policy, profile.id, minute=opts.minute_seconds)
    if opts.url is not None:
        check_start_url(lockdown, opts.url)
    for ignored in st.effective.ignored:
        # Which key and why, never the value: an allowlist would name hosts.
        st.audit.append(EventName.POLICY_LOOSENING_IGNORED, detail=ignored.audit_detail())
    require_display(opts.headless)
    browser = st.browser
    vault = st.vault(opts.passphrase_prompt)
    # The start of a shift is when expired blocked personas go (once everything
    # above has said yes); a failure here must not keep staff offline.
    try:
        enforce_retention(notify=notify, station=st)
    except StationError as exc:
        notify(
            _("warning: blocked personas past their retention were not shredded: {exc}").format(
                exc=exc
            )
        )
    # Held until the persona's own lock is taken (closing it again is harmless).
    choosing, persona, created, egress = _choose_in_turn(st, profile, opts.persona_id)
    if created:
        notify(
            _("created persona {persona} for {platform}").format(
                persona=persona.id, platform=profile.id
            )
        )
    fingerprint = persona.presents
    deferred = DeferredSignals()
    deferred.install()
    opened = False
    outcome: SessionOutcome | None = None
    try:
        with ExitStack() as stack:
            keys: DataKeys = vault
            registry = st.store
            if team is not None:
                # The lease, the team's key and the current generation, before the unseal.
                joined = stack.enter_context(
                    team_session(st, team, persona.id, notify=notify, progress=opts.progress)
                )
                keys, registry = joined.keys, joined.registry
            workspace = stack.enter_context(
                open_workspace(
                    st.paths,
                    persona.id,
                    keys,
                    notify=notify,
                    progress=opts.progress,
                    on_recovered=lambda r: st.record(
                        EventName.PERSONA_RECOVERED, persona, resealed=r.resealed
                    ),
                    store=registry,
                )
            )
            choosing.close()  # the persona's own lock now keeps other stations off it
            spec = build_launch(
                browser=browser,
                fingerprint=fingerprint,
                user_data_dir=workspace.profile,
                home=workspace.home,
                headless=opts.headless,
                lockdown=lockdown,
                network_args=tuple(egress.args),
                proxy=egress.login,
                scratch=scratch_dir(workspace.directory),
                upstream=egress.setting,
                appearance=appearance_for(
                    label=persona.label,
                    persona_id=persona.id,
                    platform_id=profile.id,
                    platform_name=profile.name,
                ),
            )
            target = opts.url or profile.start_url
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
                if opts.on_report is not None and hook is None:
                    from outreach_station.inspector.hooks import report_hook

                    hook = report_hook(server, opts.on_report)
            notify(_("using {browser}").format(browser=browser.describe()))
            st.store.mark_opened(persona.id)
            st.record(EventName.PERSONA_OPENED, persona, headless=opts.headless)
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
                        close_after_hook=opts.close_after_hook,
                        on_ready=lambda where, error: _announce_open(
                            notify, persona, where, error, headless=opts.headless
                        ),
                        lockdown=lockdown,
                        on_violation=lambda kind, host: st.record(
                            EventName.POLICY_VIOLATION, persona, kind=kind, host=host
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
                st.record(EventName.PERSONA_CLOSED, persona, ended_by="failed")
    st.record(EventName.PERSONA_CLOSED, persona, ended_by=outcome.ended_by)
    from outreach_station.storage.locks import take_closing_note

    # Taken even when not used, so that it cannot explain a later session's end.
    note = take_closing_note(st.paths, persona.id)
    try:
        final = st.store.get(persona.id)
    except EnvironmentProblem:
        # The team server was lost during the session: the profile is sealed here,
        # pending (the person was told); the session did not fail.
        final = persona
    return OpenResult(
        persona=final,
        created=created,
        outcome=outcome,
        closed_for=note if outcome.ended_by == "signal" else None,
        saved_bytes=_sealed_bytes(st, persona.id),
        saved_at=utcnow(),
    )


# What Chromium's network errors mean to a person at the keyboard.
_NET_ERRORS: Final = {
    "ERR_NAME_NOT_RESOLVED": N_("the address was not found (no internet, or a wrong address)"),
    "ERR_INTERNET_DISCONNECTED": N_("there is no internet connection"),
    "ERR_NETWORK_CHANGED": N_("the network changed while loading"),
    "ERR_CONNECTION_REFUSED": N_("the website refused the connection"),
    "ERR_CONNECTION_TIMED_OUT": N_("the website did not answer in time"),
    "ERR_TIMED_OUT": N_("the website did not answer in time"),
    "ERR_CONNECTION_RESET": N_("the connection was cut"),
    "ERR_CONNECTION_CLOSED": N_("the connection was cut"),
    "ERR_PROXY_CONNECTION_FAILED": N_("the persona's proxy could not be reached"),
    "ERR_TUNNEL_CONNECTION_FAILED": N_("the persona's proxy could not reach the website"),
    "ERR_BLOCKED_BY_ADMINISTRATOR": N_("IT's policy blocks this address"),
    "ERR_BLOCKED_BY_CLIENT": N_("station's allowlist for this platform blocks this address"),
    "ERR_CERT_AUTHORITY_INVALID": N_("the website's certificate is not trusted"),
    "ERR_CERT_COMMON_NAME_INVALID": N_("the website's certificate is for another name"),
    "ERR_CERT_DATE_INVALID": N_("the website's certificate has expired (or the clock is wrong)"),
}


def start_page_problem(error: str) -> str:
    """A Playwright navigation error in plain words, with Chromium's code kept for IT."""
    code = re.search(r"net::(ERR_[A-Z_]+)", error)
    if code is None:
        return _("the page did not load")
    meaning = _NET_ERRORS.get(code.group(1))
    return _("{meaning} ({code})").format(
        meaning=_(meaning) if meaning else _("the page did not load"), code=code.group(1)
    )


def _announce_open(
    notify: Notify, persona: Persona, where: str, error: str | None, *, headless: bool
) -> None:
    how = (
        _(" (headless: no window; press Ctrl-C to end)")
        if headless
        else _(" (close the window to end)")
    )
    if error is None:
        notify(
            _("persona {persona} open at {where}{how}").format(
                persona=persona.id, where=where, how=how
            )
        )
        return
    notify(
        _(
            "persona {persona} is open and safe, but the start page could not be reached: "
            "{problem}; try again in the browser{how}"
        ).format(persona=persona.id, problem=start_page_problem(error), how=how)
    )


def _sealed_bytes(st: Station, persona_id: str) -> int:
    """What the persona's sealed profile takes on disk now (manifest and blobs)."""
    total = 0
    for directory, _dirs, files in os.walk(st.paths.persona_dir(persona_id)):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


# Why another station closed the session (`storage.locks.note_closing`), in the person's words.
_CLOSED_FOR: Final = {
    "rotate": N_("station rotate replaced this persona, from another terminal"),
    "team-rotate": N_("station rotate on another laptop of the team replaced this persona"),
    "lease-lost": N_(
        "another laptop of the team has this persona now; this session's work is "
        "kept sealed on this laptop"
    ),
}


def closing_words(result: OpenResult) -> str:
    """Who ended the session, in the words of the person who was using it."""
    outcome = result.outcome
    if outcome.ended_by == "signal":
        asked = _CLOSED_FOR.get(result.closed_for or "")
        if asked is not None:
            return _(asked)
        if outcome.signal_name == "SIGINT":
            return _("you pressed Ctrl-C")
        if outcome.signal_name == "SIGHUP":
            return _("the terminal or the desktop session was closed")
        return _("the computer asked station to stop, as at logout or shutdown")
    words = {
        "window-closed": N_("you closed the window"),
        "browser-exited": N_("the browser quit"),
        "hook-done": N_("the check is done"),
        "time-limit": N_("IT's limit on a session's length was reached"),
        "idle-limit": N_("it was not used for the time IT allows"),
    }.get(outcome.ended_by)
    return _(words) if words else outcome.ended_by


@dataclass(frozen=True)
class CheckResult:
    persona: Persona
    checks: list[Check]
    report: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def device_hash(self) -> str | None:
        """The device hash the page computed (no screen, window, languages, zone or UA)."""
        device = self.report.get("device")
        value = device.get("hash") if isinstance(device, Mapping) else None
        return value if isinstance(value, str) else None


def check_persona(
    persona_id: str,
    *,
    notify: Notify = quiet,
    stun: str | None = None,
    station: Station | None = None,
) -> CheckResult:
    """Open the persona headless against the built-in inspector and run every check."""
    from outreach_station.inspector import InspectorServer
    from outreach_station.inspector.hooks import report_hook

    validate_persona_id(persona_id)
    got: dict[str, Any] = {}

    def on_report(report: Mapping[str, Any], checks: list[Check]) -> None:
        got["report"], got["checks"] = report, checks

    with using(station, notify) as st:
        persona = st.store.get(persona_id)
        fingerprint = persona.presents
        with InspectorServer(fingerprint=fingerprint, engine_major=st.browser.major) as server:
            # One hook for both: `station check` and the demo give the same verdicts.
            open_platform(
                persona.platform,
                persona_id=persona.id,
                url=server.page_url(stun=stun),
                headless=True,
                notify=notify,
                hook=report_hook(server, on_report),
                close_after_hook=True,
                station=st,
            )
    if "checks" not in got:
        raise StateError(
            _("the inspector got no report from persona {persona}").format(persona=persona.id)
        )
    return CheckResult(persona=persona, checks=got["checks"], report=got["report"])
