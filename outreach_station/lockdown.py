"""The IT policy turned into browser enforcement.

Two layers, because neither alone is enough:

* **Per launch** (no root needed; what `build_launch` and `run_session` do):
  launch switches (`--disable-extensions`), the protocol station already
  drives the browser with (downloads denied through
  `Browser.setDownloadBehavior`, developer-tools windows closed as they
  appear), a watcher that replaces `file://` pages, `window.print`
  neutralised, and session time limits. The host allowlist is held by the
  gate (gate.py), the proxy every request of the browser must pass; request
  interception only draws station's page for a blocked navigation, which
  the gate alone could not do for an HTTPS address. Station sees each
  attempt and audits it.
* **Managed browser policy** (root, once per image; `managed_policy`): the
  Chromium enterprise policy file. It reaches what the protocol cannot
  (Ctrl-P and the print menu, `file://` in every scope, extension installs,
  downloads in any window) and binds every Chromium on the machine.

`DeveloperToolsAvailability = 2` is deliberately *not* in the managed file:
Chromium 156 then also refuses the DevTools protocol pipe station drives the
browser through, and no persona could open at all. Developer tools are closed
per launch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote, urlsplit

from outreach_station import fsutil, paths
from outreach_station.errors import SecurityError
from outreach_station.i18n import N_, _

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Download, Frame, Page, Request, Route

    from outreach_station.gate import Gate, Upstream
    from outreach_station.policy import Policy

ViolationKind = Literal[
    "navigation", "subresource", "connection", "download", "file_url", "devtools"
]
OnViolation = Callable[[str, str], None]  # (kind, host): never a whole URL
LimitReason = Literal["time-limit", "idle-limit"]

MANAGED_FILE_NAME: Final = "outreach-station.json"
# The page shown instead of a blocked address; `.invalid` never resolves,
# so only station's interception can answer it.
BLOCKED_ORIGIN: Final = "https://blocked.station.invalid"
IDLE_WORLD: Final = "station-activity"
_ACTIVITY_BINDING: Final = "stationActivity"
# One activity report per this many seconds is plenty to judge idleness.
_ACTIVITY_THROTTLE_MS: Final = 2000

_ACTIVITY_SCRIPT: Final = f"""(() => {{
  let last = 0;
  const seen = () => {{
    const now = Date.now();
    if (now - last > {_ACTIVITY_THROTTLE_MS}) {{ last = now; {_ACTIVITY_BINDING}(''); }}
  }};
  for (const type of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) {{
    addEventListener(type, seen, {{capture: true, passive: true}});
  }}
}})();"""

_NO_PRINT_SCRIPT: Final = "window.print = function print() {};"


@dataclass(frozen=True)
class Lockdown:
    """What the policy asks of one platform's browser, in units the browser uses."""

    platform_id: str
    downloads: bool = False
    devtools: bool = False
    extensions: bool = False
    printing: bool = True
    file_urls: bool = False
    allowlist: tuple[str, ...] | None = None  # None: any host
    max_seconds: float = 0.0  # 0: no limit
    idle_seconds: float = 0.0  # 0: never close when idle

    def allows_host(self, host: str) -> bool:
        from outreach_station.policy import host_matches

        if self.allowlist is None:
            return True
        return any(host_matches(host, pattern) for pattern in self.allowlist)

    def switches(self) -> tuple[str, ...]:
        """Launch switches for `build_launch`."""
        return () if self.extensions else ("--disable-extensions",)

    def context_options(self) -> dict[str, Any]:
        """Playwright options; a denied download is refused by the browser itself."""
        return {"accept_downloads": self.downloads}


def lockdown_for(policy: Policy, platform_id: str, *, minute: float = 60.0) -> Lockdown:
    """The lockdown of `platform_id` under `policy`.

    `minute` is how many seconds a policy minute lasts: 60 in use; tests and
    drills shorten it instead of waiting for real minutes.
    """
    rules = policy.rules_for(platform_id)
    browser = policy.browser
    return Lockdown(
        platform_id=platform_id,
        downloads=browser.downloads,
        devtools=browser.devtools,
        extensions=browser.extensions,
        printing=browser.printing,
        file_urls=browser.file_urls,
        allowlist=rules.allowlist,
        max_seconds=policy.session.max_minutes * minute,
        idle_seconds=policy.session.idle_minutes * minute,
    )


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def check_start_url(lockdown: Lockdown, url: str) -> None:
    """Refuse a start address the platform's allowlist does not cover, before any launch."""
    host = host_of(url)
    if not lockdown.allows_host(host):
        raise SecurityError(
            _(
                "the IT policy does not allow platform '{platform}' to open the host "
                "{host}; allowed: {allowed}"
            ).format(
                platform=lockdown.platform_id,
                host=host or _("(none)"),
                allowed=", ".join(lockdown.allowlist or ()) or _("no host"),
            )
        )


THIS_ADDRESS: Final = N_("this address")
LOCAL_FILES: Final = N_("local files (file://)")


def blocked_page(host: str, platform_id: str, what: str = THIS_ADDRESS) -> str:
    """The page a person sees instead of an address the IT policy blocks.

    In station's language: it is made in the session's own process and shown
    in place of the blocked address, whose website never gets to read it.
    """
    shown = html.escape(host or _(what))
    title = html.escape(_("Blocked by IT policy"), quote=False)
    blocks = html.escape(
        _(
            "The IT policy of your organisation blocks {address} in the browser of "
            "platform {platform}."
        ),
        quote=False,
    ).format(
        address=f"<strong>{shown}</strong>",
        platform=f"<strong>{html.escape(platform_id)}</strong>",
    )
    ask = html.escape(
        _("If you need it for your work, ask IT to add it to the platform's allowlist."),
        quote=False,
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body style='font-family:sans-serif;"
        "max-width:40em;margin:4em auto'>"
        f"<h1>{title}</h1>"
        f"<p>{blocks}</p>"
        f"<p>{ask}</p>"
        "<p><small>outreach-station</small></p></body></html>"
    )


def _data_url(page_html: str) -> str:
    return "data:text/html;charset=utf-8," + quote(page_html)


# --- the managed (enterprise) Chromium policy ---------------------------------


def managed_policy(policy: Policy) -> dict[str, object]:
    """The Chromium enterprise policy that backs `policy` up machine-wide.

    Only permissions are here: the host allowlist differs per platform and is
    enforced per launch, and developer tools cannot be (see module doc).
    """
    managed: dict[str, object] = {
        # No launch of Chromium 156 keeps navigator.webdriver false without a
        # switch its "unsupported command-line flag" bar names: station drives
        # the browser over a pipe, which alone turns navigator.webdriver on,
        # and --disable-blink-features=AutomationControlled (what turns it off
        # again) is on the list of flags Chromium warns about. The bar took
        # 56 px of every window and told staff "security will suffer". A
        # debugging port instead of the pipe needs no such switch, but any
        # local account could then take over a persona's browser.
        "CommandLineFlagSecurityWarningsEnabled": False,
    }
    blocked: list[str] = []
    browser = policy.browser
    if not browser.downloads:
        managed["DownloadRestrictions"] = 3  # block all downloads
    if not browser.extensions:
        managed["ExtensionInstallBlocklist"] = ["*"]
    if not browser.printing:
        managed["PrintingEnabled"] = False
    if not browser.file_urls:
        blocked.append("file://*")
    if blocked:
        managed["URLBlocklist"] = blocked
    return managed


def render_managed_policy(policy: Policy) -> str:
    return json.dumps(managed_policy(policy), indent=2, sort_keys=True) + "\n"


def managed_policy_file(directory: Path | None = None) -> Path:
    return (directory or paths.managed_browser_policy_dirs()[0]) / MANAGED_FILE_NAME


ManagedState = Literal["matches", "differs", "missing", "unsupported"]


@dataclass(frozen=True)
class ManagedPolicyStatus:
    state: ManagedState
    path: Path
    expected: str


def managed_policy_status(policy: Policy, directory: Path | None = None) -> ManagedPolicyStatus:
    """Whether the managed policy file for `policy` is installed as it should be."""
    path = managed_policy_file(directory)
    expected = render_managed_policy(policy)
    if not sys.platform.startswith("linux") and directory is None:
        return ManagedPolicyStatus("unsupported", path, expected)
    try:
        present = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ManagedPolicyStatus("missing", path, expected)
    except (OSError, ValueError):
        return ManagedPolicyStatus("differs", path, expected)
    state: ManagedState = "matches" if present == json.loads(expected) else "differs"
    return ManagedPolicyStatus(state, path, expected)


def install_managed_policy(policy: Policy, directory: Path | None = None) -> Path:
    """Write the managed policy file, root-owned 0644, atomically."""
    path = managed_policy_file(directory)
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fsutil.write_atomic(
            path, render_managed_policy(policy).encode("utf-8"), mode=0o644, private_dir=False
        )
    except PermissionError:
        raise SecurityError(
            _(
                "cannot write {path}: installing the managed browser policy needs root "
                "(run it with sudo, or while building the image)"
            ).format(path=path)
        ) from None
    return path


# --- enforcement in a running browser -----------------------------------------


class SessionGuard:
    """Enforces a `Lockdown` on a live browser context and watches its time limits."""

    def __init__(
        self,
        lockdown: Lockdown,
        *,
        downloads_dir: Path | None = None,
        on_violation: OnViolation | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lockdown = lockdown
        self.downloads_dir = downloads_dir
        self._report = on_violation or (lambda _kind, _host: None)
        self._clock = clock
        self._reported: set[tuple[str, str]] = set()
        self.limit = asyncio.Event()
        self.reason: LimitReason | None = None
        self.started = clock()
        self.last_activity = self.started
        self._tasks: list[asyncio.Future[Any]] = []
        self._sessions: list[Any] = []
        self._gate: Gate | None = None

    @property
    def events(self) -> tuple[asyncio.Event, ...]:
        return (self.limit,)

    async def start_gate(self, upstream: Upstream | None) -> tuple[tuple[str, ...], dict[str, str]]:
        """Start the allowlist gate in front of `upstream`: the browser's switches and login."""
        from outreach_station.gate import Gate

        lock = self.lockdown
        gate = Gate(
            lock.allows_host,
            upstream=upstream,
            on_blocked=self.violation,  # type: ignore[arg-type]  # the gate's kinds are ours
            blocked_page=lambda host: blocked_page(host, lock.platform_id),
        )
        self._gate = await gate.start()
        return gate.switches(), gate.login()

    def violation(self, kind: ViolationKind, host: str) -> None:
        # Once per kind and host per session: a blocked page with fifty
        # blocked images is one attempt, not fifty.
        if (kind, host) in self._reported:
            return
        self._reported.add((kind, host))
        self._report(kind, host or "-")

    def activity(self) -> None:
        self.last_activity = self._clock()

    async def install(self, context: BrowserContext) -> None:
        # The session's clocks start when the browser is up, not when the
        # guard (and the gate before the launch) was made.
        self.started = self.last_activity = self._clock()
        lock = self.lockdown
        if lock.allowlist is not None:
            await context.route("**/*", self._route)
            context.on("requestfailed", self._failed)
        if not lock.printing:
            await context.add_init_script(_NO_PRINT_SCRIPT)
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)
        # The first page is guarded before station loads anything into it.
        await asyncio.gather(*self._tasks)
        self._tasks.append(asyncio.ensure_future(self._clock_watch()))

    def _watch_page(self, page: Page) -> None:
        page.on("download", self._download)
        if not self.lockdown.file_urls:
            page.on("framenavigated", self._navigated)
        self._tasks.append(asyncio.ensure_future(self._attach(page)))

    async def _attach(self, page: Page) -> None:
        """A protocol session per page: devtools watch and input activity (isolated world)."""
        from playwright.async_api import Error as PlaywrightError

        try:
            cdp = await page.context.new_cdp_session(page)
            self._sessions.append(cdp)
            if not self.lockdown.devtools:
                cdp.on("Target.targetCreated", lambda e: self._target(cdp, e))
                cdp.on("Target.targetInfoChanged", lambda e: self._target(cdp, e))
                await cdp.send("Target.setDiscoverTargets", {"discover": True})
            if self.lockdown.idle_seconds > 0:
                # An isolated world: the page's own scripts cannot see or call it.
                cdp.on("Runtime.bindingCalled", lambda _e: self.activity())
                # Bindings reach a named world only with Runtime on; Playwright's
                # own session has it on already, so the page learns nothing new.
                await cdp.send("Runtime.enable")
                await cdp.send("Page.enable")
                await cdp.send(
                    "Runtime.addBinding",
                    {"name": _ACTIVITY_BINDING, "executionContextName": IDLE_WORLD},
                )
                await cdp.send(
                    "Page.addScriptToEvaluateOnNewDocument",
                    {"source": _ACTIVITY_SCRIPT, "worldName": IDLE_WORLD, "runImmediately": True},
                )
                # The page already loaded: give its current document the listener too.
                await cdp.send(
                    "Runtime.evaluate",
                    {"expression": _ACTIVITY_SCRIPT, "contextId": await self._world(cdp)},
                )
        except PlaywrightError:
            # The page closed while being set up; nothing left to guard.
            return

    async def _world(self, cdp: Any) -> int:
        tree = await cdp.send("Page.getFrameTree")
        created = await cdp.send(
            "Page.createIsolatedWorld",
            {"frameId": tree["frameTree"]["frame"]["id"], "worldName": IDLE_WORLD},
        )
        return int(created["executionContextId"])

    def _target(self, cdp: Any, event: dict[str, Any]) -> None:
        info = event.get("targetInfo", {})
        if str(info.get("url", "")).startswith("devtools://"):
            self.violation("devtools", "-")
            self._tasks.append(
                asyncio.ensure_future(self._close_target(cdp, str(info.get("targetId"))))
            )

    async def _close_target(self, cdp: Any, target_id: str) -> None:
        from playwright.async_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            await cdp.send("Target.closeTarget", {"targetId": target_id})

    async def _route(self, route: Route) -> None:
        request = route.request
        host = host_of(request.url)
        if request.url.startswith(BLOCKED_ORIGIN):
            await route.fulfill(
                status=403,
                content_type="text/html; charset=utf-8",
                body=blocked_page("", self.lockdown.platform_id),
            )
            return
        if not request.url.startswith(("http://", "https://")) or self.lockdown.allows_host(host):
            await route.fallback()
            return
        if request.is_navigation_request():
            self.violation("navigation", host)
            await route.fulfill(
                status=403,
                content_type="text/html; charset=utf-8",
                body=blocked_page(host, self.lockdown.platform_id),
            )
        else:
            self.violation("subresource", host)
            await route.abort("blockedbyclient")

    def _failed(self, request: Request) -> None:
        # A navigation the gate refused as a tunnel (an HTTPS redirect hop):
        # the browser would show a bare connection error; show why instead.
        host = host_of(request.url)
        if not request.is_navigation_request() or self.lockdown.allows_host(host):
            return
        self.violation("navigation", host)
        page_html = blocked_page(host, self.lockdown.platform_id)
        self._tasks.append(asyncio.ensure_future(self._replace(request.frame, page_html)))

    def _navigated(self, frame: Frame) -> None:
        if frame.url.startswith("file:"):
            self.violation("file_url", "-")
            blocked = blocked_page("", self.lockdown.platform_id, LOCAL_FILES)
            self._tasks.append(asyncio.ensure_future(self._replace(frame, blocked)))

    async def _replace(self, frame: Frame, page_html: str) -> None:
        from playwright.async_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            await frame.goto(_data_url(page_html))

    def _download(self, download: Download) -> None:
        host = host_of(download.url)
        if not self.lockdown.downloads:
            self.violation("download", host)
            return
        if self.downloads_dir is not None:
            self._tasks.append(asyncio.ensure_future(self._keep(download)))

    async def _keep(self, download: Download) -> None:
        from playwright.async_api import Error as PlaywrightError

        assert self.downloads_dir is not None  # noqa: S101 - checked by the caller
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        name = Path(download.suggested_filename).name or "download"
        with contextlib.suppress(PlaywrightError):
            await download.save_as(self.downloads_dir / name)

    async def _clock_watch(self) -> None:
        lock = self.lockdown
        limits = [s for s in (lock.max_seconds, lock.idle_seconds) if s > 0]
        if not limits:
            return
        step = max(0.05, min(1.0, min(limits) / 10))
        while True:
            now = self._clock()
            if lock.max_seconds and now - self.started >= lock.max_seconds:
                self.reason = "time-limit"
            elif lock.idle_seconds and now - self.last_activity >= lock.idle_seconds:
                self.reason = "idle-limit"
            if self.reason is not None:
                self.limit.set()
                return
            await asyncio.sleep(step)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._gate is not None:
            await self._gate.close()
            self._gate = None
