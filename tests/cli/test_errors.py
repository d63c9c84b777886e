"""Each kind of bad input: its exit code, its one-line message, nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


def test_no_browser_found(
    runner: Any, isolation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "none"))
    result = runner.invoke(["open", "demo", "--headless"])
    assert result.exit_code == ExitCode.BROWSER
    assert result.stderr.startswith("station: error: no Chromium found.")
    assert "apt-get install chromium" in result.stderr
    assert files_under(isolation) == []


def test_no_display_without_headless(runner: Any, isolation: Path, no_display: None) -> None:
    result = runner.invoke(["open", "demo"])
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert result.stderr == (
        "station: error: no display: run station inside a desktop session, or pass "
        "--headless (no window; end the session with Ctrl-C)\n"
    )
    assert files_under(isolation) == []


def test_malformed_profile_breaks_only_its_platform(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolation: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "broken.toml").write_text('name = "x"\nstart_url = ')
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    result = runner.invoke(["persona", "new", "broken"])
    assert result.exit_code == ExitCode.CONFIG
    assert f"station: error: {profiles / 'broken.toml'}: malformed TOML" in result.stderr
    assert files_under(isolation) == []

    listed = runner.invoke(["platforms", "--json"])
    assert listed.exit_code == 0
    assert "demo" in [p["id"] for p in json.loads(listed.stdout)]
    assert "station: warning:" in listed.stderr and "broken.toml" in listed.stderr
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0


def test_unwritable_station_home(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores permission bits, so make the home impossible instead: under a file.
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    monkeypatch.setenv("STATION_HOME", str(blocker / "home"))
    result = runner.invoke(["persona", "new", "demo"])
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert "station: error: cannot open the registry at" in result.stderr
    assert "check that STATION_HOME is writable" in result.stderr
    assert blocker.read_text() == "keep me"


def test_debug_shows_a_traceback_only_when_asked(runner: Any) -> None:
    plain = runner.invoke(["persona", "show", "../x"])
    assert "Traceback" not in plain.stderr
    debug = runner.invoke(["--debug", "persona", "show", "../x"])
    assert debug.exit_code == ExitCode.USAGE
    assert "Traceback" in debug.stderr


def test_bad_url_refused(runner: Any, isolation: Path) -> None:
    result = runner.invoke(["open", "demo", "--headless", "--url", "file:///etc/passwd"])
    assert result.exit_code == ExitCode.USAGE
    assert "--url must be an http:// or https:// address" in result.stderr
    assert files_under(isolation) == []
