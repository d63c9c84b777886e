from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.errors import ExitCode


def test_new_prints_id_then_list_and_show(runner: Any) -> None:
    created = runner.invoke(["persona", "new", "demo", "--label", "kväll"])
    assert created.exit_code == 0
    persona_id = created.stdout.strip()
    assert len(persona_id) == 12

    listed = runner.invoke(["persona", "list"])
    assert listed.exit_code == 0
    header, _rule, row = listed.stdout.splitlines()
    assert header.split() == [
        "ID",
        "PLATFORM",
        "STATUS",
        "LABEL",
        "CREATED",
        "LAST",
        "OPENED",
        "FINGERPRINT",
    ]
    assert row.startswith(f"{persona_id}  demo      active  kväll")
    assert "never" in row

    shown = runner.invoke(["persona", "show", persona_id])
    assert shown.exit_code == 0
    assert f"id:           {persona_id}" in shown.stdout
    assert "status:       active" in shown.stdout
    assert "Europe/Stockholm" in shown.stdout
    # The persona's own font families, by name.
    fonts_line = next(line for line in shown.stdout.splitlines() if line.startswith("fonts:"))
    stored = api.get_persona(persona_id).fingerprint["fonts"]
    assert stored and fonts_line == f"fonts:        {', '.join(stored)}"


def test_json_outputs(runner: Any) -> None:
    first = json.loads(runner.invoke(["persona", "new", "demo", "--json"]).stdout)
    second = json.loads(runner.invoke(["persona", "new", "demo", "--json"]).stdout)
    assert (first["platform"], first["status"]) == ("demo", "active")
    assert second["status"] == "standby"
    listed = json.loads(runner.invoke(["persona", "list", "--platform", "demo", "--json"]).stdout)
    assert [p["id"] for p in listed] == [first["id"], second["id"]]
    shown = json.loads(runner.invoke(["persona", "show", first["id"], "--json"]).stdout)
    assert shown["fingerprint"]["timezone"] == "Europe/Stockholm"
    assert shown["fingerprint_summary"].startswith("desktop ")
    assert shown["fingerprint"]["fonts"] == sorted(shown["fingerprint"]["fonts"])
    assert shown["fingerprint"]["hardware_concurrency"] >= 1


def test_empty_list_is_helpful(runner: Any) -> None:
    result = runner.invoke(["persona", "list"])
    assert result.exit_code == 0
    assert "no personas yet" in result.stdout
    assert json.loads(runner.invoke(["persona", "list", "--json"]).stdout) == []


def test_unknown_platform(runner: Any, isolation: Path) -> None:
    result = runner.invoke(["persona", "new", "nowhere"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr.startswith("station: error: unknown platform 'nowhere'")
    assert "Traceback" not in result.output
    assert not (isolation / "registry.sqlite3").exists()


@pytest.mark.keyring  # `open` checks the keyring first
def test_malformed_and_unknown_persona_ids(runner: Any, isolation: Path) -> None:
    runner.invoke(["persona", "new", "demo"])
    before = (isolation / "registry.sqlite3").read_bytes()
    for bad in ("../x", "..%2Fx", "/etc/passwd"):
        result = runner.invoke(["persona", "show", bad])
        assert result.exit_code == ExitCode.USAGE
        assert f"station: error: malformed persona {bad!r}" in result.stderr
    result = runner.invoke(["open", "demo", "--persona", "../x", "--headless"])
    assert result.exit_code == ExitCode.USAGE
    unknown = runner.invoke(["persona", "show", "abcdefghijkl"])
    assert unknown.exit_code == ExitCode.NOT_FOUND
    assert unknown.stderr == (
        "station: error: no persona matches 'abcdefghijkl'; give its id or its label "
        "as printed by 'station persona list'\n"
    )
    assert (isolation / "registry.sqlite3").read_bytes() == before
    assert not (isolation / "personas").exists()
