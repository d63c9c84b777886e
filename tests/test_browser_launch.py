"""Argument building and browser discovery: a narrow seam, no browser started."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from outreach_station import browser
from outreach_station.browser import BrowserExecutable, LaunchSpec, build_launch, find_browser
from outreach_station.errors import BrowserError
from outreach_station.fingerprint import Fingerprint, generate
from outreach_station.platforms import PlatformProfile

PLATFORM = PlatformProfile(id="d", name="d", start_url="https://x.se/")
ENGINE = BrowserExecutable(path=Path("/opt/chromium"), source="system", version="156.0.1.2")


def launch(fingerprint: Fingerprint, tmp_path: Path, *, headless: bool) -> LaunchSpec:
    """The launch of a persona for a non-root user with a bare environment."""
    return build_launch(
        browser=ENGINE,
        fingerprint=fingerprint,
        user_data_dir=tmp_path,
        home=tmp_path / "h",
        headless=headless,
        base_env={"PATH": "/bin"},
        is_root=False,
    )


def fake_browser(tmp_path: Path, name: str = "chromium", version: str = "157.0.7000.1") -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho 'Chromium {version} built on Test'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_launch_has_no_automation_switches_and_carries_the_persona(tmp_path: Path) -> None:
    fp = generate(PLATFORM)
    spec = launch(fp, tmp_path, headless=True)
    args = spec.args
    assert "--enable-automation" not in args
    assert "--no-sandbox" not in args
    assert "--disable-blink-features=AutomationControlled" in args
    assert f"--user-agent={fp.user_agent(156)}" in args
    assert "--lang=sv-SE" in args
    assert "--accept-lang=sv-SE,sv,en-US,en" in args
    assert "--headless" in args
    assert args[-1] == "about:blank"
    h = tmp_path / "h"
    assert spec.env == {
        "PATH": "/bin",
        "TZ": "Europe/Stockholm",
        "LANGUAGE": "sv_SE",
        "HOME": str(h),
        "XDG_CONFIG_HOME": str(h / ".config"),
        "XDG_CACHE_HOME": str(h / ".cache"),
        "XDG_DATA_HOME": str(h / ".local/share"),
    }
    assert spec.context_options["viewport"] == {
        "width": fp.viewport_width,
        "height": fp.viewport_height,
    }
    # Fonts and processors are applied by run_session (a file, an affinity), not argv.
    assert spec.fonts == fp.fonts and spec.fonts
    assert spec.cpus == fp.hardware_concurrency > 0
    assert not any("font" in a.lower() for a in args)


def test_sandbox_is_off_only_for_root(tmp_path: Path) -> None:
    fp = generate(PLATFORM)
    spec = build_launch(
        browser=ENGINE,
        fingerprint=fp,
        user_data_dir=tmp_path,
        home=tmp_path,
        headless=False,
        is_root=True,
    )
    assert "--no-sandbox" in spec.args
    assert "--headless" not in spec.args


def test_headed_desktop_keeps_the_real_window_and_presents_the_screen(tmp_path: Path) -> None:
    fp = generate(PLATFORM)
    spec = launch(fp, tmp_path, headless=False)
    # No viewport emulation: the page follows the window the person sizes.
    assert spec.context_options == {"accept_downloads": False, "no_viewport": True}
    assert spec.screen is not None and spec.window is None
    assert (spec.screen.width, spec.screen.height, spec.screen.ratio) == (
        fp.screen_width,
        fp.screen_height,
        fp.device_scale_factor,
    )
    assert spec.screen.window[0] == fp.screen_width
    # Sized through the protocol: a switch would size a page's popups too.
    assert not any(a.startswith("--window-size") for a in spec.args)
    # A phone persona keeps Playwright's full emulation headed too (touch, phone viewport).
    phone = generate(PlatformProfile(id="m", name="m", start_url="https://x.se/", device="mobile"))
    mobile = launch(phone, tmp_path, headless=False)
    assert mobile.screen is None
    assert mobile.context_options["viewport"]["width"] == phone.viewport_width
    assert mobile.context_options["is_mobile"] is True


def test_station_browser_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = fake_browser(tmp_path)
    monkeypatch.setenv("STATION_BROWSER", str(exe))
    found = find_browser()
    assert (found.path, found.source, found.version, found.major) == (
        exe,
        "STATION_BROWSER",
        "157.0.7000.1",
        157,
    )


def test_playwrights_own_chromium_before_the_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_dir = tmp_path / "pw" / "chromium-1234" / "chrome-linux64"
    own_dir.mkdir(parents=True)
    own = fake_browser(own_dir, "chrome")
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "pw"))
    assert find_browser().source == "playwright"
    assert find_browser().path == own


def test_system_browser_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_browser(tmp_path, "google-chrome", "150.0.1.1")
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_browser()
    assert (found.source, found.major) == ("system", 150)


def test_no_browser_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserError, match="apt-get install chromium chromium-l10n"):
        find_browser()


def test_station_browser_not_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_BROWSER", str(tmp_path / "missing"))
    with pytest.raises(BrowserError, match="is not an executable file"):
        find_browser()


def test_engine_version_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = fake_browser(tmp_path)
    calls = []
    real_run = browser.subprocess.run

    def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(browser.subprocess, "run", counting_run)
    monkeypatch.setenv("STATION_BROWSER", str(exe))
    find_browser()
    find_browser()
    assert len(calls) == 1
    os.utime(exe, ns=(1, 1))  # a new file identity asks again
    find_browser()
    assert len(calls) == 2
