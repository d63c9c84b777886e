"""The IT lockdown enforced in real Chromium, per launch.

Two loopback host names reach the same test server, so the host allowlist
can be exercised without any network: `127.0.0.1` is allowed, `localhost` is
not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.audit import AuditLog, default_path
from outreach_station.browser import build_launch, find_browser, run_session
from outreach_station.errors import ExitCode
from outreach_station.fingerprint import generate
from outreach_station.lockdown import Lockdown
from outreach_station.platforms import PlatformProfile
from outreach_station.workspace import needs_recovery
from tests.fixtures import write_platform
from tests.site import LoopbackServer, QuietHandler

pytestmark = pytest.mark.browser

PLATFORM = PlatformProfile(id="site-one", name="t", start_url="http://127.0.0.1/")
SECRET_BYTES = b"station-download-marker-" + b"x" * 64


class LockdownSite(LoopbackServer):
    __test__ = False

    def __init__(self) -> None:
        self.paths: list[str] = []
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                site.paths.append(f"{self.headers.get('Host', '').split(':')[0]}{path}")
                other = f"http://localhost:{site.port}"
                if path == "/report.bin":
                    self._send(
                        SECRET_BYTES,
                        "application/octet-stream",
                        {"Content-Disposition": 'attachment; filename="report.bin"'},
                    )
                elif path == "/download":
                    self._send(b'<a id="dl" href="/report.bin">report</a>', "text/html")
                elif path == "/mixed":
                    body = (
                        f'<h1>mixed</h1><iframe id="f" src="{other}/framed"></iframe>'
                        f'<img id="i" src="{other}/pixel.gif">'
                    )
                    self._send(body.encode(), "text/html")
                elif path == "/framed":
                    self._send(b"<p>framed content</p>", "text/html")
                elif path == "/redir":
                    # An allowed page that sends the browser on elsewhere.
                    self.send_response(302)
                    self.send_header("Location", self.path.partition("to=")[2])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(b"<h1>hello from the site</h1>", "text/html")

        super().__init__(Handler)

    @property
    def other(self) -> str:
        """The same server under another host name: off any allowlist of 127.0.0.1."""
        return f"http://localhost:{self.port}/"


@pytest.fixture(scope="module")
def lsite() -> Iterator[LockdownSite]:
    with LockdownSite() as served:
        yield served


@dataclasses.dataclass
class Ran:
    outcome: Any
    violations: list[tuple[str, str]]
    seen: dict[str, Any]
    root: Path


def run(
    tmp_path: Path,
    lockdown: Lockdown,
    url: str,
    hook: Any = None,
    *,
    extra_args: tuple[str, ...] = (),
    headless: bool = True,
    close_after_hook: bool = True,
) -> Ran:
    root = tmp_path / "ws"
    spec = build_launch(
        browser=find_browser(),
        fingerprint=generate(PLATFORM),
        user_data_dir=root / "profile",
        home=root / "home",
        headless=headless,
        lockdown=lockdown,
    )
    if extra_args:
        # Stand in for what a person does by hand (install an extension, press F12).
        spec = dataclasses.replace(spec, args=(*spec.args[:-1], *extra_args, "about:blank"))
    violations: list[tuple[str, str]] = []
    seen: dict[str, Any] = {}

    async def wrapped(context: Any, page: Any) -> None:
        if hook is not None:
            await hook(context, page, seen)

    outcome = asyncio.run(
        run_session(
            spec,
            url,
            hook=wrapped if hook is not None else None,
            close_after_hook=close_after_hook,
            lockdown=lockdown,
            on_violation=lambda kind, host: violations.append((kind, host)),
        )
    )
    return Ran(outcome, violations, seen, root)


def files_named(root: Path, name: str) -> list[Path]:
    return [p for p in root.rglob(name) if p.is_file()]


def containing(root: Path, data: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if data in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


# --- downloads -------------------------------------------------------------


async def click_download(_context: Any, page: Any, seen: dict[str, Any]) -> None:
    await page.click("#dl")
    await page.wait_for_timeout(2000)


def test_download_is_refused_and_leaves_no_file(tmp_path: Path, lsite: LockdownSite) -> None:
    ran = run(tmp_path, Lockdown("site-one"), lsite.url + "download", click_download)
    assert "127.0.0.1/report.bin" in lsite.paths
    # No file in the profile, the browser's HOME or anywhere under the test dir.
    # (The response body may sit in the HTTP cache like any fetched resource:
    # that is inside the profile, sealed with it, and not a file for anyone.)
    assert files_named(tmp_path, "report.bin") == []
    leftovers = [p for p in containing(tmp_path, SECRET_BYTES) if "Cache_Data" not in p.parts]
    assert leftovers == []
    assert ("download", "127.0.0.1") in ran.violations


def test_download_allowed_lands_in_the_persona_home(tmp_path: Path, lsite: LockdownSite) -> None:
    ran = run(
        tmp_path, Lockdown("site-one", downloads=True), lsite.url + "download", click_download
    )
    saved = ran.root / "home" / "Downloads" / "report.bin"
    assert saved.read_bytes() == SECRET_BYTES
    assert ran.violations == []


# --- extensions ------------------------------------------------------------


def make_extension(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "manifest_version": 3,
                "name": "probe",
                "version": "1.0",
                "content_scripts": [
                    {"matches": ["<all_urls>"], "js": ["probe.js"], "run_at": "document_start"}
                ],
            }
        )
    )
    (directory / "probe.js").write_text("document.documentElement.dataset.probe = 'ran';")
    return directory


@pytest.mark.parametrize("allowed", [False, True])
def test_extensions_run_only_when_allowed(
    tmp_path: Path, lsite: LockdownSite, allowed: bool
) -> None:
    ext = make_extension(tmp_path / "ext")

    async def probe(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        await page.wait_for_timeout(500)
        await page.reload()
        seen["probe"] = await page.evaluate("document.documentElement.dataset.probe || null")

    ran = run(
        tmp_path,
        Lockdown("site-one", extensions=allowed),
        lsite.url,
        probe,
        extra_args=(f"--load-extension={ext}",),
    )
    assert ran.seen["probe"] == ("ran" if allowed else None)


def test_extension_switch_in_the_launch() -> None:
    from outreach_station.browser import BrowserExecutable

    engine = BrowserExecutable(path=Path("/opt/c"), source="system", version="156.0.1.2")
    common: dict[str, Any] = {
        "browser": engine,
        "fingerprint": generate(PLATFORM),
        "user_data_dir": Path("/x"),
        "home": Path("/h"),
        "headless": True,
        "base_env": {},
        "is_root": False,
    }
    locked = build_launch(**common, lockdown=Lockdown("p"))
    open_ = build_launch(**common, lockdown=Lockdown("p", extensions=True, downloads=True))
    assert "--disable-extensions" in locked.args
    assert locked.args[-1] == "about:blank"
    assert "--disable-extensions" not in open_.args
    assert locked.context_options["accept_downloads"] is False
    assert open_.context_options["accept_downloads"] is True


# --- printing --------------------------------------------------------------

PRINT_PROBE = """() => new Promise(resolve => {
  let fired = false;
  addEventListener('beforeprint', () => { fired = true; });
  window.print();
  setTimeout(() => resolve(fired), 500);
})"""


@pytest.mark.parametrize("allowed", [False, True])
def test_window_print_does_nothing_when_printing_is_off(
    tmp_path: Path, lsite: LockdownSite, allowed: bool
) -> None:
    async def probe(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        seen["printed"] = await page.evaluate(PRINT_PROBE)
        await page.evaluate("document.body.innerHTML = '<iframe></iframe>'")
        seen["frame"] = await page.frames[-1].evaluate(PRINT_PROBE)

    ran = run(tmp_path, Lockdown("site-one", printing=allowed), lsite.url, probe)
    assert ran.seen["printed"] is allowed
    assert ran.seen["frame"] is allowed


# --- file:// ---------------------------------------------------------------


@pytest.mark.parametrize("allowed", [False, True])
def test_file_urls_are_refused(tmp_path: Path, lsite: LockdownSite, allowed: bool) -> None:
    secret = tmp_path / "case-notes.txt"
    secret.write_text("confidential case notes")

    async def visit(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        try:
            await page.goto(secret.as_uri())
        except Exception as exc:  # the replacement may abort this navigation
            seen["error"] = str(exc)
        await page.wait_for_timeout(1000)
        seen["text"] = await page.evaluate("document.body ? document.body.innerText : ''")

    ran = run(tmp_path, Lockdown("site-one", file_urls=allowed), lsite.url, visit)
    if allowed:
        assert "confidential case notes" in ran.seen["text"]
        assert ran.violations == []
    else:
        assert "confidential" not in ran.seen["text"]
        assert "Blocked by IT policy" in ran.seen["text"]
        assert ("file_url", "-") in ran.violations


# --- the host allowlist ----------------------------------------------------


def test_allowlist_blocks_other_hosts_frames_and_subresources(
    tmp_path: Path, lsite: LockdownSite
) -> None:
    lock = Lockdown("site-one", allowlist=("127.0.0.1",))

    async def browse(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        seen["start"] = await page.evaluate("document.body.innerText")
        await page.goto(lsite.url + "mixed")
        await page.wait_for_timeout(500)
        frame = page.frame_locator("#f")
        seen["frame"] = await frame.locator("body").inner_text()
        seen["img"] = await page.evaluate("document.getElementById('i').naturalWidth")
        await page.goto(lsite.other + "elsewhere")
        seen["other"] = await page.evaluate("document.body.innerText")

    lsite.paths.clear()
    ran = run(tmp_path, lock, lsite.url, browse)
    assert "hello from the site" in ran.seen["start"]
    assert "Blocked by IT policy" in ran.seen["frame"]
    assert "localhost" in ran.seen["frame"]
    assert ran.seen["img"] == 0
    assert "Blocked by IT policy" in ran.seen["other"]
    assert "localhost" in ran.seen["other"]
    # The blocked host never received a single request.
    assert not [p for p in lsite.paths if p.startswith("localhost")]
    assert set(ran.violations) == {("navigation", "localhost"), ("subresource", "localhost")}


def test_no_allowlist_is_unrestricted(tmp_path: Path, lsite: LockdownSite) -> None:
    async def browse(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        await page.goto(lsite.other + "elsewhere")
        seen["other"] = await page.evaluate("document.body.innerText")

    ran = run(tmp_path, Lockdown("site-one"), lsite.url, browse)
    assert "hello from the site" in ran.seen["other"]
    assert ran.violations == []


# --- developer tools (headed: a person presses F12) -----------------------


@pytest.mark.parametrize("allowed", [False, True])
def test_devtools_windows_are_closed(
    tmp_path: Path, lsite: LockdownSite, display: str, allowed: bool
) -> None:
    async def look(context: Any, page: Any, seen: dict[str, Any]) -> None:
        cdp = await context.new_cdp_session(page)
        await page.wait_for_timeout(2500)
        targets = (await cdp.send("Target.getTargets"))["targetInfos"]
        seen["devtools"] = [t for t in targets if t["url"].startswith("devtools://")]

    ran = run(
        tmp_path,
        Lockdown("site-one", devtools=allowed),
        lsite.url,
        look,
        headless=False,
        extra_args=("--auto-open-devtools-for-tabs",),
    )
    if allowed:
        assert ran.seen["devtools"]
    else:
        assert ran.seen["devtools"] == []
        assert ("devtools", "-") in ran.violations


# --- session limits --------------------------------------------------------


def test_max_time_closes_the_session(tmp_path: Path, lsite: LockdownSite) -> None:
    ran = run(
        tmp_path, Lockdown("site-one", max_seconds=2.0), lsite.url, None, close_after_hook=False
    )
    assert ran.outcome.ended_by == "time-limit"


def test_idle_limit_waits_for_input_to_stop(tmp_path: Path, lsite: LockdownSite) -> None:
    import time

    async def keep_busy(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        start = time.monotonic()
        for step in range(20):
            await page.mouse.move(10 + step * 5, 10 + step * 3)
            await page.wait_for_timeout(300)
        seen["busy_for"] = time.monotonic() - start
        seen["busy_until"] = time.monotonic()

    started = time.monotonic()
    ran = run(
        tmp_path,
        Lockdown("site-one", idle_seconds=3.0),
        lsite.url,
        keep_busy,
        close_after_hook=False,
    )
    assert ran.outcome.ended_by == "idle-limit"
    # Input for ~6 s kept it open past the 3 s idle limit; it then closed by itself.
    assert ran.seen["busy_for"] > 5.0
    assert time.monotonic() - started > ran.seen["busy_for"] + 2.0


# --- through `station open` ------------------------------------------------


@pytest.fixture
def site_platform(profiles: Path, lsite: LockdownSite) -> None:
    write_platform(profiles, "site-one", lsite.url)


def write_user_config(text: str) -> None:
    from outreach_station import paths

    target = paths.current().user_config
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_open_url_off_the_allowlist_is_refused_before_launch(
    site_platform: None, lsite: LockdownSite, runner: Any
) -> None:
    write_user_config('[platform.site-one]\nallowlist = ["127.0.0.1"]\n')
    lsite.paths.clear()
    result = runner.invoke(["open", "site-one", "--headless", "--url", lsite.other + "x"])
    assert result.exit_code == ExitCode.SECURITY
    assert "IT policy does not allow platform 'site-one' to open the host localhost" in (
        result.stderr
    )
    assert not [p for p in lsite.paths if p.startswith("localhost")]
    assert api.list_personas() == []


def test_open_audits_violations_loosening_and_the_time_limit(
    site_platform: None, lsite: LockdownSite
) -> None:
    write_user_config(
        '[platform.site-one]\nallowlist = ["127.0.0.1"]\n'
        "[browser]\ndownloads = true\n"
        "[session]\nmax_minutes = 1\n"
    )

    async def wander(_context: Any, page: Any) -> None:
        await page.goto(lsite.other + "private/path?case=42")

    result = api.open_platform("site-one", headless=True, hook=wander, minute_seconds=3.0)
    assert result.outcome.ended_by == "time-limit"
    records = [r.to_record() for r in AuditLog(default_path()).records()]
    events = [r["event"] for r in records]
    assert "policy.loosening_ignored" in events
    loosening = next(r for r in records if r["event"] == "policy.loosening_ignored")
    assert loosening["detail"]["setting"] == "browser.downloads"
    violation = next(r for r in records if r["event"] == "policy.violation")
    assert violation["detail"] == {"host": "localhost", "kind": "navigation"}
    closed = next(r for r in records if r["event"] == "persona.closed")
    assert closed["detail"]["ended_by"] == "time-limit"
    raw = default_path().read_text()
    assert "private/path" not in raw and "case=42" not in raw
    # Closed cleanly: sealed, nothing left open.
    from outreach_station import paths

    assert not needs_recovery(paths.current(), result.persona.id)
