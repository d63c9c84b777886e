"""`station check`: every freshly generated persona passes, distinct, and stable on reopen.

Real Chromium, headless, against the built-in inspector: the same path as
`station check ID`.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from outreach_station import api, paths, workspace
from outreach_station.cli import app
from outreach_station.errors import ExitCode
from outreach_station.fingerprint import Fingerprint
from tests.browser.test_isolation import write_platform

pytestmark = pytest.mark.browser

# (platform id, device, locale, time zone): desktop and mobile, two regions.
PLATFORMS = (
    ("desk-se", "desktop", "sv-SE", "Europe/Stockholm"),
    ("desk-gb", "desktop", "en-GB", "Europe/London"),
    ("mob-se", "mobile", "sv-SE", "Europe/Stockholm"),
    ("mob-de", "mobile", "de-DE", "Europe/Berlin"),
)


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))
    directory = tmp_path / "profiles"
    for platform_id, device, locale, zone in PLATFORMS:
        write_platform(directory, platform_id, "http://127.0.0.1:9/", device)
        with (directory / f"{platform_id}.toml").open("a") as fh:
            fh.write(f'locale = "{locale}"\ntimezone = "{zone}"\n')
    monkeypatch.setenv("STATION_PROFILES", str(directory))
    return directory


def _failed(result: api.CheckResult) -> list[str]:
    return [f"{c.name}: expected {c.expected}, saw {c.seen}" for c in result.checks if not c.ok]


def test_twenty_personas_pass_every_check_distinct_and_stable(profiles: Path) -> None:
    personas = [api.create_persona(PLATFORMS[i % len(PLATFORMS)][0]) for i in range(20)]
    assert {p.fingerprint["device"] for p in personas} == {"desktop", "mobile"}
    hashes: dict[str, str] = {}
    for persona in personas:
        result = api.check_persona(persona.id)
        assert result.ok, (persona.id, persona.fingerprint, _failed(result))
        names = {c.name for c in result.checks}
        # The window and automation checks are part of every run now.
        assert {"outer window fits the screen", "no automation globals"} <= names
        hashes[persona.id] = result.report["hash"]

    # The hash is a function of the stored fingerprint on one machine: the CPU,
    # memory, GPU and canvas are the machine's own, so two personas that drew
    # the same screen, window, languages and zone look alike, and any two
    # that drew differently are told apart.
    by_fingerprint: dict[str, set[str]] = {}
    for persona in personas:
        key = json.dumps(persona.fingerprint, sort_keys=True)
        by_fingerprint.setdefault(key, set()).add(hashes[persona.id])
    assert all(len(h) == 1 for h in by_fingerprint.values())
    assert len(set(hashes.values())) == len(by_fingerprint)
    assert len(by_fingerprint) >= 12, Counter(hashes.values()).most_common(3)

    # Reopened: the profile was sealed when the first check closed it, and
    # is unsealed from that for the second; the persona looks the same.
    station = paths.current()
    for persona in (personas[0], personas[2]):
        assert workspace.sealed_file(station, persona.id).is_file()
        again = api.check_persona(persona.id)
        assert again.ok, _failed(again)
        assert again.report["hash"] == hashes[persona.id]


def test_window_is_a_maximised_browser_on_the_persona_screen(profiles: Path) -> None:
    persona = api.create_persona("desk-se")
    fp = Fingerprint.from_dict(persona.fingerprint)
    screen = api.check_persona(persona.id).report["screen"]
    assert screen["outer_width"] == fp.screen_width
    # Viewport plus the browser's bars, never the phantom headless frame.
    assert screen["inner_height"] < screen["outer_height"] <= fp.screen_height
    assert screen["outer_height"] - screen["inner_height"] <= 85


def test_cli_check_output_and_exit_codes(profiles: Path) -> None:
    from typer.testing import CliRunner

    cli = CliRunner()
    persona = api.create_persona("desk-gb")
    ok = cli.invoke(app, ["check", persona.id])
    assert ok.exit_code == 0, ok.output
    assert "outer window fits the screen" in ok.output
    assert "FAIL" not in ok.output

    # A stored value the engine cannot present (the time zone would not do:
    # it is applied from the stored value, so the browser follows the edit).
    with sqlite3.connect(paths.current().registry) as db:
        fingerprint = dict(persona.fingerprint, platform="Win32")
        db.execute(
            "UPDATE personas SET fingerprint = ? WHERE id = ?",
            (json.dumps(fingerprint), persona.id),
        )
    bad = cli.invoke(app, ["check", persona.id, "--json"])
    assert bad.exit_code == ExitCode.CHECK_FAILED, bad.output
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["navigator.platform is the stored one"]
    assert failed[0]["expected"] == "Win32"
    assert "Linux x86_64" in failed[0]["seen"]
    text = cli.invoke(app, ["check", persona.id])
    assert text.exit_code == ExitCode.CHECK_FAILED
    assert "FAIL" in text.output and "Win32" in text.output
    assert "Linux x86_64" in text.output
