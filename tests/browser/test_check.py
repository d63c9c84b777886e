"""`station check`: every freshly generated persona passes, distinct, and stable on reopen.

Real Chromium, headless, against the built-in inspector: the same path as
`station check ID`.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, fonts, paths, workspace
from outreach_station.cli import app
from outreach_station.errors import ExitCode
from outreach_station.fingerprint import Fingerprint
from outreach_station.inspector import SCOPE_NAMES
from tests.fixtures import write_platform

pytestmark = pytest.mark.browser

# (platform id, device, locale, time zone): desktop and mobile, two regions.
PLATFORMS = (
    ("desk-se", "desktop", "sv-SE", "Europe/Stockholm"),
    ("desk-gb", "desktop", "en-GB", "Europe/London"),
    ("mob-se", "mobile", "sv-SE", "Europe/Stockholm"),
    ("mob-de", "mobile", "de-DE", "Europe/Berlin"),
)


@pytest.fixture(autouse=True)
def _check_platforms(profiles: Path, secret_service: None) -> None:
    """The PLATFORMS above, in the shared `profiles` directory the tests take."""
    for platform_id, device, locale, zone in PLATFORMS:
        with write_platform(profiles, platform_id, "http://127.0.0.1:9/", device).open("a") as fh:
            fh.write(f'locale = "{locale}"\ntimezone = "{zone}"\n')


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
        # The window, automation, font and processor checks are part of every run.
        assert {
            "outer window fits the screen",
            "no automation globals",
            "fonts",
            "fonts are the persona's",
            "hardware concurrency is the persona's",
        } <= names
        hashes[persona.id] = result.report["hash"]

    # No two personas are drawn as the same device (screen, languages, zone,
    # notable fonts, processors), and the hash tells every one apart.
    assert len(set(hashes.values())) == 20, Counter(hashes.values()).most_common(3)

    # Reopened: the profile was sealed when the first check closed it, and
    # is unsealed from that for the second; the persona looks the same.
    station = paths.current()
    for persona in (personas[0], personas[2]):
        assert workspace.sealed_file(station, persona.id).is_file()
        again = api.check_persona(persona.id)
        assert again.ok, _failed(again)
        assert again.report["hash"] == hashes[persona.id]


def _store(persona_id: str, **changes: Any) -> None:
    """Edit the stored fingerprint through the registry, starting from the persona's own."""
    with api.registry() as reg:
        reg.set_fingerprint(persona_id, dict(reg.get(persona_id).fingerprint, **changes))


def test_persona_with_the_essential_fonts_and_one_processor(profiles: Path) -> None:
    inventory = fonts.inventory()
    essential = ["DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif"]
    assert set(essential) <= set(inventory.families), inventory
    persona = api.create_persona("desk-se")
    _store(persona.id, fonts=essential, hardware_concurrency=1)

    result = api.check_persona(persona.id)
    assert result.ok, _failed(result)
    scopes = result.report["scopes"]
    for name in SCOPE_NAMES:
        assert scopes[name]["error"] is None, name
        installed_seen = sorted(set(scopes[name]["fonts"]) & set(inventory.families))
        assert installed_seen == essential, (name, scopes[name]["fonts"])
        assert scopes[name]["hardware_concurrency"] == 1, name
    by_name = {c.name: c for c in result.checks}
    assert by_name["fonts are the persona's"].expected == ", ".join(essential)
    assert by_name["hardware concurrency is the persona's"].expected == "1"


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


def test_cli_check_fails_for_a_font_the_browser_cannot_show(profiles: Path) -> None:
    from typer.testing import CliRunner

    persona = api.create_persona("desk-gb")
    claimed = sorted([*Fingerprint.from_dict(persona.fingerprint).fonts, "Nonexistent Sans"])
    _store(persona.id, fonts=claimed)

    bad = CliRunner().invoke(app, ["check", persona.id, "--json"])
    assert bad.exit_code == ExitCode.CHECK_FAILED, bad.output
    failed = [c for c in json.loads(bad.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["fonts are the persona's"]
    assert "Nonexistent Sans" in failed[0]["expected"]
    assert failed[0]["seen"] == "main: missing: Nonexistent Sans"


def test_cli_check_names_its_checks_in_swedish_and_keeps_the_json_names(
    profiles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    persona = api.create_persona("desk-gb")
    _store(persona.id, platform="Win32")
    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    text = CliRunner().invoke(app, ["check", persona.id])
    assert text.exit_code == ExitCode.CHECK_FAILED
    assert "yttre fönstret ryms på skärmen" in text.stdout
    assert "navigator.platform är den sparade" in text.stdout
    assert "navigator.platform is the stored one" not in text.output
    assert "lika i alla delar" in text.stdout  # what a check saw, too
    assert "same in every scope" not in text.output
    # Scripts read --json: the names there stay the English ids.
    data = CliRunner().invoke(app, ["check", persona.id, "--json"])
    failed = [c["name"] for c in json.loads(data.stdout)["checks"] if not c["ok"]]
    assert failed == ["navigator.platform is the stored one"]
