"""`station open` as a person uses it: a real process, real Chromium, signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.browser import QUIET_SWITCHES
from outreach_station.errors import ExitCode
from tests.fixtures import station_argv
from tests.site import TestSite

pytestmark = pytest.mark.browser

# The virtual display of the headed tests (tests/conftest.py starts Xvfb so).
XVFB_SIZE = (1920, 1080)

PROBE = """async () => {
  const blob = new Blob([`postMessage({ua: navigator.userAgent, langs: navigator.languages,
     tz: Intl.DateTimeFormat().resolvedOptions().timeZone, webdriver: navigator.webdriver,
     brands: navigator.userAgentData.brands.map(b => b.brand)})`]);
  const worker = new Worker(URL.createObjectURL(blob));
  const fromWorker = await new Promise(r => { worker.onmessage = e => r(e.data); });
  return {
    ua: navigator.userAgent, webdriver: navigator.webdriver, langs: navigator.languages,
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    brands: navigator.userAgentData.brands.map(b => b.brand),
    screen: [screen.width, screen.height], inner: [innerWidth, innerHeight],
    worker: fromWorker,
  };
}"""


def start_station(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        station_argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def wait_open(proc: subprocess.Popen[str], timeout: float = 60) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if " open at " in line:
            return lines
    proc.kill()
    raise AssertionError(f"station did not open: {''.join(lines)}")


def browser_cmdlines(profile_marker: str) -> list[list[str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if len(args) == 1:
            # Chromium's helper processes rewrite their title into one string.
            args = args[0].split(" ")
        if any(a.startswith("--user-data-dir=") and profile_marker in a for a in args):
            found.append(args)
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_closes_cleanly_and_keeps_the_last_cookie(
    platform_dir: Path, site: TestSite, sig: signal.Signals
) -> None:
    persona = api.create_persona("site-one")
    proc = start_station(
        "open", "site-one", "--headless", "--url", f"{site.url}set-cookie?v={sig.name}"
    )
    wait_open(proc)
    # Straight after the page set its cookie: Chromium writes cookies in
    # batches, so only a clean shutdown keeps this one.
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    said = {
        signal.SIGINT: "you pressed Ctrl-C",
        signal.SIGTERM: "the computer asked station to stop, as at logout or shutdown",
        signal.SIGHUP: "the terminal or the desktop session was closed",
    }[sig]
    closing = err.splitlines()[-1]
    assert closing.startswith(f"persona {persona.id} closed ({said}); saved at "), closing
    # Saved with its time and the sealed size, e.g. "saved at 14:32 CET, 1.3 MB sealed".
    assert re.search(r"saved at \d\d:\d\d \S+, \d+(\.\d)? (bytes|kB|MB|GB) sealed$", closing)

    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen["cookie"] = await page.evaluate("document.cookie")

    api.open_platform("site-one", headless=True, hook=hook, close_after_hook=True)
    assert f"station_flush={sig.name}" in seen["cookie"]


def test_second_open_of_the_same_persona_is_refused(platform_dir: Path, runner: Any) -> None:
    persona = api.create_persona("site-one")
    proc = start_station("open", "site-one", "--headless")
    try:
        wait_open(proc)
        result = runner.invoke(["open", "site-one", "--headless"])
        assert result.exit_code == ExitCode.BUSY
        assert f"persona {persona.id} is already open in another station session" in result.stderr
        assert f"(process {proc.pid})" in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert len(browser_cmdlines(persona.id)) == 0


def probe_session(headless: bool) -> tuple[dict[str, Any], list[list[str]]]:
    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen.update(await page.evaluate(PROBE))
        seen["cmdlines"] = browser_cmdlines(result_id[0])

    persona = api.create_persona("site-one")
    result_id = [persona.id]
    api.open_platform("site-one", headless=headless, hook=hook, close_after_hook=True)
    return seen, seen.pop("cmdlines")


def assert_no_tells_and_settings_applied(
    seen: dict[str, Any], cmdlines: list[list[str]], site: TestSite, *, headed: bool = False
) -> None:
    assert seen["webdriver"] is False
    assert seen["worker"]["webdriver"] is None  # WorkerNavigator has no webdriver
    for ua in (seen["ua"], seen["worker"]["ua"], site.headers[-1]["user-agent"]):
        assert "HeadlessChrome" not in ua
        assert "Chrome/" in ua
    assert seen["ua"] == seen["worker"]["ua"] == site.headers[-1]["user-agent"]
    assert not any("Headless" in b for b in seen["brands"] + seen["worker"]["brands"])
    assert "Headless" not in site.headers[-1].get("sec-ch-ua", "")
    assert seen["langs"] == seen["worker"]["langs"] == ["sv-SE", "sv", "en-US", "en"]
    assert site.headers[-1]["accept-language"] == "sv-SE,sv;q=0.9,en-US;q=0.8,en;q=0.7"
    assert seen["tz"] == seen["worker"]["tz"] == "Europe/Stockholm"
    persona = api.list_personas(platform_id="site-one")[-1]
    fp = persona.fingerprint
    assert seen["screen"] == [fp["screen_width"], fp["screen_height"]]
    if headed:
        # The page has the real window, no larger than the persona's nor the display.
        assert 0 < seen["inner"][0] <= min(fp["viewport_width"], XVFB_SIZE[0])
        assert 0 < seen["inner"][1] <= min(fp["viewport_height"], XVFB_SIZE[1])
    else:
        assert seen["inner"] == [fp["viewport_width"], fp["viewport_height"]]
    browser_process = [a for a in cmdlines if not any(x.startswith("--type=") for x in a)]
    assert len(browser_process) == 1, cmdlines
    for argv in browser_process:
        assert "--enable-automation" not in argv
        # None of Playwright's disabled features; only station's own quiet list.
        assert [a for a in argv if a.startswith("--disable-features=")] == [
            a for a in QUIET_SWITCHES if a.startswith("--disable-features=")
        ]
        assert "--disable-popup-blocking" not in argv
        assert "--disable-client-side-phishing-detection" not in argv


def test_headless_session_shows_no_automation_and_applies_the_persona(
    platform_dir: Path, site: TestSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = tmp_path / "person-home"
    person.mkdir()
    monkeypatch.setenv("HOME", str(person))
    seen, cmdlines = probe_session(headless=True)
    assert_no_tells_and_settings_applied(seen, cmdlines, site)
    # Nothing of the browser's (crash reports, certificate store) went to the person's home.
    assert list(person.rglob("*")) == []


@pytest.mark.headed
def test_headed_session_shows_no_automation_and_applies_the_persona(
    platform_dir: Path, site: TestSite, display: str
) -> None:
    seen, cmdlines = probe_session(headless=False)
    assert_no_tells_and_settings_applied(seen, cmdlines, site, headed=True)
    assert not any("--headless" in a for argv in cmdlines for a in argv)


WINDOW_PROBE = """() => ({
  inner: [innerWidth, innerHeight], outer: [outerWidth, outerHeight],
  screen: [screen.width, screen.height], avail: [screen.availWidth, screen.availHeight],
  ratio: devicePixelRatio, cssWidth: matchMedia(`(device-width: ${screen.width}px)`).matches,
})"""


def open_headed_with_screen(width: int, height: int, ratio: float, work: Any) -> dict[str, Any]:
    """A headed session of a persona given this screen; `work(context, page)` runs in it."""
    persona = api.create_persona("site-one")
    chrome_ui = persona.fingerprint["screen_height"] - persona.fingerprint["viewport_height"]
    with api.registry() as reg:
        reg.set_fingerprint(
            persona.id,
            {
                **persona.fingerprint,
                "screen_width": width,
                "screen_height": height,
                "avail_width": width,
                "avail_height": height,
                "viewport_width": width,
                "viewport_height": height - chrome_ui,
                "device_scale_factor": ratio,
            },
        )
    seen: dict[str, Any] = {}

    async def hook(context: Any, page: Any) -> None:
        seen.update(await work(context, page))

    api.open_platform("site-one", persona_id=persona.id, hook=hook, close_after_hook=True)
    return seen


@pytest.mark.headed
def test_headed_window_fits_a_display_smaller_than_the_persona_screen(
    platform_dir: Path, display: str
) -> None:
    async def work(context: Any, page: Any) -> dict[str, Any]:
        first = await page.evaluate(WINDOW_PROBE)
        other = await context.new_page()
        await other.goto(page.url)
        async with page.expect_popup() as opened:
            await page.evaluate("window.open(location.href, '', 'width=500,height=600')")
        popup = await opened.value
        await popup.wait_for_load_state()
        await asyncio.sleep(0.5)  # a new page's screen is set as it opens
        return {
            "first": first,
            "new_tab": await other.evaluate(WINDOW_PROBE),
            "popup": await popup.evaluate(WINDOW_PROBE),
        }

    seen = open_headed_with_screen(2560, 1440, 1.25, work)
    first = seen["first"]
    # The persona's screen and pixel ratio, on a 1920x1080 display...
    assert first["screen"] == [2560, 1440] and first["avail"] == [2560, 1440]
    assert first["ratio"] == 1.25 and first["cssWidth"] is True
    # ...and a window the person can see whole: within the real display.
    assert first["outer"][0] <= XVFB_SIZE[0] and first["outer"][1] <= XVFB_SIZE[1]
    assert first["inner"][0] <= first["outer"][0] and first["inner"][1] < first["outer"][1]
    assert seen["new_tab"]["screen"] == [2560, 1440] and seen["new_tab"]["ratio"] == 1.25
    # A popup a page opens keeps the size it asked for, on the persona's screen.
    popup = seen["popup"]
    assert popup["screen"] == [2560, 1440]
    assert popup["inner"][0] == 500 and popup["outer"][0] < 1000


@pytest.mark.headed
def test_headed_window_is_kept_within_the_persona_screen(platform_dir: Path, display: str) -> None:
    async def work(context: Any, page: Any) -> dict[str, Any]:
        session = await context.new_cdp_session(page)
        window = await session.send("Browser.getWindowForTarget")
        # The person drags the window larger than the persona's screen.
        await session.send(
            "Browser.setWindowBounds",
            {"windowId": window["windowId"], "bounds": {"width": 1900, "height": 1060}},
        )
        # Read back at once: station's guard may put it back within its next check,
        # which on a loaded machine can come before a page-side probe would run.
        stretched = await session.send("Browser.getWindowBounds", {"windowId": window["windowId"]})
        await asyncio.sleep(2.5)
        return {"stretched": stretched["bounds"], "after": await page.evaluate(WINDOW_PROBE)}

    seen = open_headed_with_screen(1366, 768, 1.0, work)
    assert seen["stretched"]["width"] > 1366  # it did grow...
    after = seen["after"]
    # ...and station put it back: never a window larger than its screen.
    assert after["outer"][0] <= 1366 and after["outer"][1] <= 768
    assert after["screen"] == [1366, 768]


def test_a_browser_that_fails_to_start_still_closes_the_persona_in_the_audit_trail(
    platform_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret_service: None
) -> None:
    from outreach_station import paths, workspace
    from outreach_station.errors import BrowserError

    # Says it is Chromium 156 when asked, and exits at once when started.
    fake = tmp_path / "chromium"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "Chromium 156.0.1.2 built on Test" && exit 0\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    persona = api.create_persona("site-one")
    monkeypatch.setenv("STATION_BROWSER", str(fake))
    with pytest.raises(BrowserError, match="failed to start"):
        api.open_platform("site-one", headless=True)

    events = [(r.event, dict(r.detail)) for r in api.audit_log().records() if r.persona]
    assert [e for e, _d in events][-2:] == ["persona.opened", "persona.closed"]
    assert events[-1][1] == {"ended_by": "failed"}
    # The workspace was sealed and removed as after any session: nothing left open.
    assert workspace.sealed_file(paths.current(), persona.id).is_file()
    assert not workspace.needs_recovery(paths.current(), persona.id)


def test_an_unreachable_start_page_is_said_at_once_and_the_persona_stays_open(
    platform_dir: Path,
) -> None:
    persona = api.create_persona("site-one")
    proc = start_station("open", "site-one", "--headless", "--url", "http://station-test.invalid/")
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "could not be reached" in line:
                break
        said = seen[-1].strip() if seen else ""
        # Said while the session runs, not when it ends: the process is still there.
        assert proc.poll() is None, "".join(seen)
        assert said == (
            f"persona {persona.id} is open and safe, but the start page could not be reached: "
            "the address was not found (no internet, or a wrong address) "
            "(ERR_NAME_NOT_RESOLVED); try again in the browser "
            "(headless: no window; press Ctrl-C to end)"
        ), "".join(seen)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "did not load" not in rest  # not repeated at the end
    assert rest.splitlines()[-1].startswith(f"persona {persona.id} closed (you pressed Ctrl-C)")


def test_start_page_problems_in_plain_words() -> None:
    from outreach_station.session import start_page_problem

    assert start_page_problem(
        "Page.goto: net::ERR_INTERNET_DISCONNECTED at https://x.example/"
    ) == ("there is no internet connection (ERR_INTERNET_DISCONNECTED)")
    assert start_page_problem("net::ERR_SOMETHING_NEW at x") == (
        "the page did not load (ERR_SOMETHING_NEW)"
    )
    assert start_page_problem("Timeout 30000ms exceeded") == "the page did not load"
