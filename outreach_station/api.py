"""The core API: everything the `station` command does, callable from Python.

The CLI parses, calls one function here and renders the result. Nothing in
this module prints; it reports progress through a `notify` callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from outreach_station import paths
from outreach_station.browser import (
    SessionHook,
    SessionOutcome,
    build_launch,
    find_browser,
    require_display,
    run_session,
)
from outreach_station.errors import StateError, UsageError
from outreach_station.fingerprint import Fingerprint, generate
from outreach_station.platforms import (
    INSPECTOR_URL,
    PlatformCatalogue,
    PlatformProfile,
    load_catalogue,
)
from outreach_station.registry import Persona, Registry, validate_persona_id
from outreach_station.workspace import persona_lock, profile_dir

Notify = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def platforms() -> PlatformCatalogue:
    return load_catalogue()


def platform(platform_id: str) -> PlatformProfile:
    return load_catalogue().get(platform_id)


def registry() -> Registry:
    return Registry(paths.current().registry)


def create_persona(platform_id: str, *, label: str = "", standby: bool = False) -> Persona:
    """Create a persona for a platform with a freshly drawn fingerprint."""
    profile = platform(platform_id)
    fingerprint = generate(profile)
    with registry() as reg:
        return reg.create(
            profile.id, fingerprint=fingerprint.to_dict(), label=label, standby=standby
        )


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


def _choose_persona(
    reg: Registry, profile: PlatformProfile, persona_id: str | None
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
    fingerprint = generate(profile)
    return reg.create(profile.id, fingerprint=fingerprint.to_dict()), True


def open_platform(
    platform_id: str,
    *,
    persona_id: str | None = None,
    url: str | None = None,
    headless: bool = False,
    notify: Notify = _quiet,
    hook: SessionHook | None = None,
    close_after_hook: bool = False,
    on_inspector: Callable[[Any], SessionHook] | None = None,
) -> OpenResult:
    """Open a platform in its persona's own browser and wait until the session ends.

    `hook` (for tests and self-checks) runs against the live browser once the
    start page has loaded; with `close_after_hook` the session ends when it
    returns. `on_inspector` receives the demo inspector server, when one is
    started, and returns a hook to run.
    """
    profile = platform(platform_id)
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be an http:// or https:// address, got {url!r}")
    require_display(headless)
    browser = find_browser()
    station = paths.current()
    with registry() as reg:
        persona, created = _choose_persona(reg, profile, persona_id)
    if created:
        notify(f"created persona {persona.id} for {profile.id}")
    with ExitStack() as stack:
        stack.enter_context(persona_lock(station, persona.id))
        target = url or profile.start_url
        if target == INSPECTOR_URL:
            from outreach_station.inspector import InspectorServer

            server = stack.enter_context(InspectorServer())
            target = server.url
            if on_inspector is not None and hook is None:
                hook = on_inspector(server)
        fingerprint = Fingerprint.from_dict(persona.fingerprint)
        spec = build_launch(
            browser=browser,
            fingerprint=fingerprint,
            user_data_dir=profile_dir(station, persona.id),
            headless=headless,
        )
        notify(f"using {browser.describe()}")
        with registry() as reg:
            reg.mark_opened(persona.id)
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
            )
        )
    if outcome.start_page_error:
        notify(f"the start page did not load: {outcome.start_page_error}")
    with registry() as reg:
        persona = reg.get(persona.id)
    return OpenResult(persona=persona, created=created, outcome=outcome)
