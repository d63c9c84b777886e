"""Find the browser, build its launch, run one persona session.

Station builds the browser's whole command line itself (Playwright's
defaults are all dropped) so that nothing betrays automation or weakens
security: no `--enable-automation`, no disabled popup blocker or phishing
protection, no partitioning turned off. What a persona presents is set with
the browser's own switches and environment where they exist, because those
reach every scope (frames, workers, HTTP headers) alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from outreach_station import paths
from outreach_station.appearance import Appearance, apply_to_profile, window_switches
from outreach_station.emulation import ScreenEmulation, install_screen, install_window
from outreach_station.errors import BrowserError, EnvironmentProblem
from outreach_station.fingerprint import Fingerprint, fingerprint_args, outer_window
from outreach_station.i18n import _

if TYPE_CHECKING:
    import asyncio

    from playwright.async_api import BrowserContext, Page, Playwright

    from outreach_station.gate import Upstream
    from outreach_station.lockdown import Lockdown, OnViolation
    from outreach_station.network import ProxySetting

BrowserSource = Literal["policy", "STATION_BROWSER", "user config", "playwright", "system"]

SYSTEM_CANDIDATES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
# Debian's /usr/bin/chromium is a shell wrapper that adds its own switches
# (remote extensions, API keys); the real binary is launched directly so that
# station alone decides the command line.
DEBIAN_WRAPPED = {Path("/usr/bin/chromium"): Path("/usr/lib/chromium/chromium")}

# Chromium phones home at start unless told not to; these keep it quiet
# without weakening any protection a person relies on.
QUIET_SWITCHES = (
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-search-engine-choice-screen",
    # Chromium 156 still asked clients2.google.com for the time at every start
    # (tests/browser/test_quiet_start.py). Chromium reads only the last
    # --disable-features switch: add features here, never in a second one.
    "--disable-features=NetworkTimeServiceQuerying",
)
# Chromium 156 sets navigator.webdriver whenever it is driven over
# --remote-debugging-pipe; this switch alone clears it (page and frames;
# workers have no navigator.webdriver).
WEBDRIVER_OFF = "--disable-blink-features=AutomationControlled"

# Where Chromium 156 would look for its on-device model manifest instead of
# asking update.googleapis.com at every start (the rest of the component
# updater is off): a directory that never exists. Pages see the same model
# availability either way.
NO_MODELS_DIR = "no-on-device-models"

# Chromium makes its scratch directory in TMPDIR and binds its singleton socket
# there: TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket must fit a Unix
# socket path (107 bytes) or the browser aborts at start.
SCRATCH_PREFIX = "org.chromium.Chromium."
_SOCKET_TAIL = len(f"/{SCRATCH_PREFIX}XXXXXX/SingletonSocket")
_SOCKET_PATH_MAX = 107


def scratch_dir(candidate: Path) -> Path | None:
    """`candidate` as the browser's TMPDIR, or None when its socket path would not fit."""
    if len(os.fsencode(candidate)) + _SOCKET_TAIL > _SOCKET_PATH_MAX:
        return None
    return candidate


VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class BrowserExecutable:
    path: Path
    source: BrowserSource
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        return _("Chromium {version} at {path} (from {source})").format(
            version=self.version, path=self.path, source=self.source
        )


def _playwright_chromium() -> Path | None:
    """Playwright's own downloaded Chromium, if one was ever installed here."""
    base = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    root = Path(base) if base and base != "0" else Path.home() / ".cache" / "ms-playwright"
    candidates = sorted(root.glob("chromium-*/chrome-linux*/chrome"), reverse=True)
    candidates += sorted(root.glob("chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium"))
    candidates += sorted(root.glob("chromium-*/chrome-win*/chrome.exe"))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _engine_version(executable: Path) -> str:
    """The browser's own version, cached by file identity: asking costs ~0.1 s."""
    stat = executable.stat()
    key = f"{executable}:{stat.st_mtime_ns}:{stat.st_size}"
    cache = paths.cache_dir() / "engine-versions.json"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
    if key in known:
        return known[key]
    try:
        out = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrowserError(
            _("cannot run the browser at {executable}: {exc}").format(
                executable=executable, exc=exc
            )
        ) from None
    match = VERSION_RE.search(out)
    if not match:
        raise BrowserError(
            _("{executable} did not report a Chromium version (said {output!r})").format(
                executable=executable, output=out.strip()[:80]
            )
        )
    known[key] = match.group(0)
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    return known[key]


def find_browser(
    policy_executable: Path | None = None, user_executable: Path | None = None
) -> BrowserExecutable:
    """Find Chromium.

    In order: the system policy's `browser.executable` (staff cannot change
    it), `STATION_BROWSER`, the user config's, Playwright's own Chromium, then
    the system's Chromium or Chrome on PATH.
    """
    found: tuple[Path, BrowserSource] | None = None
    override = paths.browser_override()
    if policy_executable is not None:
        found = (policy_executable, "policy")
    elif override:
        found = (Path(override), "STATION_BROWSER")
    elif user_executable is not None:
        found = (user_executable, "user config")
    elif (own := _playwright_chromium()) is not None:
        found = (own, "playwright")
    else:
        for name in SYSTEM_CANDIDATES:
            hit = shutil.which(name)
            if hit:
                found = (Path(hit), "system")
                break
    if found is None:
        raise BrowserError(
            _(
                "no Chromium found. Install the distribution's package "
                "(Debian/Ubuntu: 'sudo apt-get install chromium chromium-l10n') "
                "or point {variable} at a Chromium or Chrome executable"
            ).format(variable=paths.ENV_BROWSER)
        )
    path, source = found
    path = DEBIAN_WRAPPED.get(path, path)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BrowserError(
            _("the browser {path} (from {source}) is not an executable file").format(
                path=path, source=source
            )
        )
    return BrowserExecutable(path=path, source=source, version=_engine_version(path))


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one persona's browser; built without side effects."""

    executable: Path
    user_data_dir: Path
    args: tuple[str, ...]
    env: dict[str, str | float | bool] = field(hash=False)
    headless: bool
    context_options: dict[str, Any] = field(hash=False)
    # Outer window size set per page through the protocol (headless desktop only).
    window: tuple[int, int] | None = None
    # Headed desktop: the screen presented per page while the window stays real.
    screen: ScreenEmulation | None = None
    # The font families the browser may see (fonts.write_config); (): all installed.
    fonts: tuple[str, ...] = ()
    # How text is rasterised (fonts.RENDERINGS); "": the machine's own.
    font_rendering: str = ""
    # Logical processors the browser runs on (its hardwareConcurrency); 0: all.
    cpus: int = 0
    # The host allowlist's gate goes in front of the persona's proxy (gate.py).
    gated: bool = False
    upstream: Upstream | None = field(default=None, hash=False)
    # The persona's name and colour in the browser's own frame (appearance.py).
    appearance: Appearance | None = None


def build_launch(
    *,
    browser: BrowserExecutable,
    fingerprint: Fingerprint,
    user_data_dir: Path,
    home: Path,
    headless: bool,
    base_env: dict[str, str] | None = None,
    is_root: bool | None = None,
    lockdown: Lockdown | None = None,
    network_args: tuple[str, ...] = (),
    proxy: dict[str, str] | None = None,
    scratch: Path | None = None,
    upstream: ProxySetting | None = None,
    appearance: Appearance | None = None,
) -> LaunchSpec:
    """The command line, environment and emulation for a persona's browser.

    The browser gets `home` as its HOME and XDG directories: Chromium keeps
    some state outside the profile (crash reports, the NSS certificate
    store), and that must belong to the persona, not to the person.
    `scratch` (an existing private directory, see `scratch_dir`) is its TMPDIR.

    With a host allowlist the browser's proxy is station's gate, started
    with the session; the persona's proxy (`upstream`, and its login in
    `proxy`) is then the gate's way out instead of the browser's.
    """
    gated = lockdown is not None and lockdown.allowlist is not None
    gate_upstream: Upstream | None = None
    if gated:
        from outreach_station.gate import Upstream

        network_args = tuple(a for a in network_args if not a.startswith("--proxy-server="))
        if upstream is not None:
            gate_upstream = Upstream(upstream, password=(proxy or {}).get("password"))
        proxy = None
    env: dict[str, str | float | bool] = dict(os.environ if base_env is None else base_env)
    for name, sub in (
        ("HOME", ""),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
    ):
        env[name] = str(home / sub) if sub else str(home)
    # The zone and language are the process's own, so every frame and worker
    # agrees on them without any per-page override.
    if scratch is not None:
        # Chromium's scratch files (org.chromium.Chromium.*, left behind when it
        # is killed) belong in the persona's private workspace, not in /tmp.
        env["TMPDIR"] = str(scratch)
    env["TZ"] = fingerprint.timezone
    env["LANGUAGE"] = fingerprint.locale.replace("-", "_")
    args = [
        f"--user-data-dir={user_data_dir}",
        "--remote-debugging-pipe",
        *QUIET_SWITCHES,
        f"--optimization-guide-manifest-override={home / NO_MODELS_DIR}",
        # The pipe above turns navigator.webdriver on; this turns it off again.
        # Chromium warns about it in a bar on every window unless the managed
        # policy (station policy apply-browser) says not to.
        WEBDRIVER_OFF,
        # The cookie key stays in the profile (sealed by station), not in the
        # person's keyring, where it was shared by every persona and their own
        # Chromium, and deleting it lost every persona's cookies.
        "--password-store=basic",
        f"--lang={fingerprint.locale}",
        f"--accept-lang={','.join(fingerprint.languages)}",
        *fingerprint_args(fingerprint, browser.major, headless=headless),
        *network_args,
    ]
    if headless:
        args.append("--headless")
        if not fingerprint.mobile:
            # A headless renderer has no pointing device; present a mouse like a desktop.
            args.append(
                "--blink-settings=primaryHoverType=2,availableHoverTypes=2,"
                "primaryPointerType=4,availablePointerTypes=4"
            )
    if os.geteuid() == 0 if is_root is None else is_root:
        # Chromium refuses to start as root with its sandbox on; only then is it off.
        args.append("--no-sandbox")
    if lockdown is not None:
        args.extend(lockdown.switches())
    args.extend(window_switches(appearance))
    args.append("about:blank")
    screen: ScreenEmulation | None = None
    context_options: dict[str, Any] = {"accept_downloads": False}
    if headless or fingerprint.mobile:
        context_options.update(
            viewport={"width": fingerprint.viewport_width, "height": fingerprint.viewport_height},
            screen={"width": fingerprint.screen_width, "height": fingerprint.screen_height},
            device_scale_factor=fingerprint.device_scale_factor,
            is_mobile=fingerprint.mobile,
            has_touch=fingerprint.touch,
        )
    else:
        # A person's desktop window: the page gets the real window's size, which
        # follows resizing and never runs off the display; only the screen and
        # pixel ratio are the persona's (emulation.ScreenGuard).
        context_options["no_viewport"] = True
        screen_w, screen_h = fingerprint.screen_width, fingerprint.screen_height
        screen = ScreenEmulation(
            width=screen_w,
            height=screen_h,
            ratio=fingerprint.device_scale_factor,
            window=outer_window(fingerprint)
            or (fingerprint.screen_width, fingerprint.screen_height),
        )
    if lockdown is not None:
        context_options.update(lockdown.context_options())
    if proxy is not None:
        # Playwright answers the proxy's login over the pipe; network_args name the server.
        context_options["proxy"] = proxy
    return LaunchSpec(
        executable=browser.path,
        user_data_dir=user_data_dir,
        args=tuple(args),
        env=env,
        headless=headless,
        context_options=context_options,
        window=outer_window(fingerprint) if headless else None,
        screen=screen,
        fonts=fingerprint.fonts,
        font_rendering=fingerprint.font_rendering,
        cpus=fingerprint.hardware_concurrency,
        gated=gated,
        upstream=gate_upstream,
        appearance=appearance,
    )


def limit_cpus(count: int) -> set[int] | None:
    """Run the calling thread, and the processes it starts, on `count` of its CPUs.

    Chromium reports the CPUs it may run on as navigator.hardwareConcurrency
    in every renderer, so the browser started under this affinity presents
    `count` in the page and in every worker alike. Returns the previous set
    for `restore_cpus`, or None when nothing changed (0, or not fewer than
    the machine has).
    """
    if count <= 0 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if count >= len(allowed):
        return None
    os.sched_setaffinity(0, sorted(allowed)[:count])
    return allowed


def restore_cpus(previous: set[int] | None) -> None:
    if previous is not None:
        os.sched_setaffinity(0, previous)


def require_display(headless: bool) -> None:
    if headless or sys.platform in ("win32", "darwin"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise EnvironmentProblem(
            _(
                "no display: run station inside a desktop session, or pass --headless "
                "(no window; end the session with Ctrl-C)"
            )
        )


SessionHook = Callable[["BrowserContext", "Page"], Awaitable[None]]


@dataclass(frozen=True)
class SessionOutcome:
    """How a browser session ended."""

    ended_by: Literal[
        "window-closed", "signal", "hook-done", "browser-exited", "time-limit", "idle-limit"
    ]
    signal_name: str | None = None
    start_page_error: str | None = None


async def run_session(  # noqa: PLR0915 - the session loop reads best in one place
    spec: LaunchSpec,
    url: str,
    *,
    hook: SessionHook | None = None,
    close_after_hook: bool = False,
    on_ready: Callable[[str, str | None], None] | None = None,
    lockdown: Lockdown | None = None,
    on_violation: OnViolation | None = None,
) -> SessionOutcome:
    """Run the browser until the person closes it, a signal arrives, or the hook is done.

    SIGINT, SIGTERM and SIGHUP close the browser through the protocol, the
    way a person quitting would, so Chromium writes its cookie store out
    before it exits.
    """
    import asyncio

    from playwright.async_api import Error as PlaywrightError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    closed = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    from outreach_station.fonts import write_config as write_font_config

    cpus_before: set[int] | None = None
    try:
        write_font_config(Path(str(spec.env["XDG_CONFIG_HOME"])), spec.fonts, spec.font_rendering)
        apply_to_profile(spec.user_data_dir, spec.appearance)
        # The Playwright driver and the browser it starts inherit this thread's
        # CPUs; the thread gets all of them back once the browser runs.
        cpus_before = limit_cpus(spec.cpus)
        guard = _guard(spec, lockdown, on_violation)
        async with _playwright() as pw, contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(guard.close)
            gate = await guard.start_gate(spec.upstream) if spec.gated else None
            context = await _launch(pw, spec, cpus_before, gate)
            cpus_before = None
            context.on("close", lambda _ctx: closed.set())
            await install_window(context, spec.window)
            screen_guard = await install_screen(context, spec.screen)
            await guard.install(context)

            def watch(page: Page) -> None:
                page.on("close", lambda _p: None if context.pages else closed.set())

            for existing in context.pages:
                watch(existing)
            context.on("page", watch)
            page = context.pages[0] if context.pages else await context.new_page()
            start_error: str | None = None
            try:
                await page.goto(url, wait_until="load")
            except PlaywrightError as exc:
                # The person sees the browser's own error page and can retry by hand.
                start_error = str(exc).splitlines()[0]
            if on_ready is not None:
                # At once, with the start page's error: the person must not wait for the end.
                on_ready(page.url, start_error)
            ended_by: Literal[
                "window-closed", "signal", "hook-done", "browser-exited", "time-limit", "idle-limit"
            ]
            if hook is not None and not stop.is_set():
                await _race(hook(context, page), stop, closed, *guard.events)
            if close_after_hook and hook is not None and not (stop.is_set() or closed.is_set()):
                ended_by = "hook-done"
            else:
                await _first(stop, closed, *guard.events)
                ended_by = "signal" if stop.is_set() else guard.reason or "window-closed"
            await guard.close()
            if screen_guard is not None:
                await screen_guard.close()
            if not closed.is_set():
                with contextlib.suppress(PlaywrightError):
                    await context.close()
            elif ended_by == "window-closed" and context.pages:
                ended_by = "browser-exited"
            return SessionOutcome(
                ended_by=ended_by,
                signal_name=received[0] if received else None,
                start_page_error=start_error,
            )
    finally:
        restore_cpus(cpus_before)
        for sig in handled:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _playwright() -> AsyncIterator[Playwright]:
    """Playwright, its driver started in a session (and process group) of its own.

    A logout or a service stop signals station's whole process group. The
    driver would then send the browser `Browser.close` on its own, at once,
    and a cookie or localStorage item a page had just set was lost. Out of
    the group, only station hears the signal, and it closes the context
    (pages first, so the stores are written) before it seals the profile.
    The browser itself is already in its own group (Playwright starts it
    detached).
    """
    import asyncio

    from playwright.async_api import async_playwright

    manager = async_playwright()
    spawn = asyncio.create_subprocess_exec

    async def in_own_session(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        kwargs.setdefault("start_new_session", True)
        return await spawn(*args, **kwargs)

    # Playwright starts its driver with asyncio.create_subprocess_exec and no
    # way to ask for a new session; only that one call runs while this is set.
    asyncio.create_subprocess_exec = in_own_session
    try:
        pw = await manager.__aenter__()
    finally:
        asyncio.create_subprocess_exec = spawn
    try:
        yield pw
    except BaseException as exc:
        await manager.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        await manager.__aexit__(None, None, None)


async def _launch(
    pw: Playwright,
    spec: LaunchSpec,
    cpus_before: set[int] | None,
    gate: tuple[tuple[str, ...], dict[str, str]] | None = None,
) -> BrowserContext:
    """Start the browser; this thread gets its CPUs back whether or not it started.

    `gate`: the allowlist gate's switches and the browser's login to it.
    """
    from playwright.async_api import Error as PlaywrightError

    extra: tuple[str, ...] = ()
    options = dict(spec.context_options)
    if gate is not None:
        extra, options["proxy"] = gate
    try:
        return await pw.chromium.launch_persistent_context(
            str(spec.user_data_dir),
            executable_path=str(spec.executable),
            headless=spec.headless,
            ignore_default_args=True,
            # The start page stays the last argument.
            args=[*spec.args[:-1], *extra, spec.args[-1]],
            env=dict(spec.env),
            handle_sigint=False,
            handle_sigterm=True,
            handle_sighup=True,
            **options,
        )
    except PlaywrightError as exc:
        raise BrowserError(
            _("the browser at {executable} failed to start: {reason}").format(
                executable=spec.executable, reason=str(exc).splitlines()[0]
            )
        ) from None
    finally:
        restore_cpus(cpus_before)


class _NoGuard:
    events: tuple[asyncio.Event, ...] = ()
    reason: None = None

    async def start_gate(
        self, _upstream: Upstream | None
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        raise BrowserError(_("a host allowlist needs the lockdown it came from"))

    async def install(self, _context: BrowserContext) -> None:
        return None

    async def close(self) -> None:
        return None


def _guard(spec: LaunchSpec, lockdown: Lockdown | None, on_violation: OnViolation | None) -> Any:
    """The IT policy's enforcement on the browser (see lockdown.py), before it starts."""
    if lockdown is None:
        return _NoGuard()
    from outreach_station.lockdown import SessionGuard

    return SessionGuard(
        lockdown, downloads_dir=Path(str(spec.env["HOME"])) / "Downloads", on_violation=on_violation
    )


async def _first(*events: asyncio.Event) -> None:
    import asyncio

    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _race(work: Awaitable[None], *events: asyncio.Event) -> None:
    """Run `work` unless one of `events` fires first (then `work` is cancelled)."""
    import asyncio

    task = asyncio.ensure_future(work)
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
    finally:
        task.cancel()
        for waiter in waiters:
            waiter.cancel()
