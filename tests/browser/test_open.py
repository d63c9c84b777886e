"""`station open` as a person uses it: a real process, real Chromium, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.errors import ExitCode
from tests.browser.test_isolation import write_platform
from tests.site import TestSite

pytestmark = pytest.mark.browser

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


@pytest.fixture
def platform_dir(tmp_path: Path, site: TestSite, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    write_platform(directory, "site-one", site.url)
    monkeypatch.setenv("STATION_PROFILES", str(directory))
    return directory


def start_station(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outreach_station", *args],
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
    assert f"persona {persona.id} closed (signal)" in err

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
    seen: dict[str, Any], cmdlines: list[list[str]], site: TestSite
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
    assert seen["inner"] == [fp["viewport_width"], fp["viewport_height"]]
    browser_process = [a for a in cmdlines if not any(x.startswith("--type=") for x in a)]
    assert len(browser_process) == 1, cmdlines
    for argv in browser_process:
        assert "--enable-automation" not in argv
        assert not any(a.startswith("--disable-features=") for a in argv)
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
    assert_no_tells_and_settings_applied(seen, cmdlines, site)
    assert not any("--headless" in a for argv in cmdlines for a in argv)


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
