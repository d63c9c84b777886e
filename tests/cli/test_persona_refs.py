"""Personas by the first letters of their id or by label; platforms in any case; local times."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.errors import ExitCode

pytestmark = pytest.mark.keyring


def registry_rows() -> list[tuple[Any, ...]]:
    with sqlite3.connect(paths.current().registry) as conn:
        return conn.execute("SELECT * FROM personas ORDER BY id").fetchall()


def test_a_unique_prefix_and_a_label_name_the_persona(runner: Any) -> None:
    anna = api.create_persona("demo", label="Anna kväll")
    other = api.create_persona("demo", standby=True)
    prefix = next(anna.id[:n] for n in range(1, 13) if not other.id.startswith(anna.id[:n]))

    by_prefix = runner.invoke(["persona", "show", prefix])
    by_label = runner.invoke(["persona", "show", "anna KVÄLL"])
    kit = runner.invoke(["persona", "kit", prefix, "--set", "username=anna.k"])

    assert by_prefix.exit_code == 0, by_prefix.stderr
    assert f"id:           {anna.id}" in by_prefix.stdout
    assert by_label.exit_code == 0, by_label.stderr
    assert f"id:           {anna.id}" in by_label.stdout
    assert kit.exit_code == 0, kit.stderr
    assert api.get_persona(other.id).status == "standby"


def test_an_ambiguous_prefix_lists_the_candidates_and_changes_nothing(
    runner: Any, isolation: Path
) -> None:
    # 33 ids over a 32-letter alphabet: two of them share a first letter.
    assert runner.invoke(["persona", "new", "demo", "--count", "33"]).exit_code == 0
    first_letters = Counter(p.id[0] for p in api.list_personas())
    letter, _count = first_letters.most_common(1)[0]
    candidates = sorted(p.id for p in api.list_personas() if p.id.startswith(letter))
    before = registry_rows()

    result = runner.invoke(["persona", "retire", letter, "--yes"])

    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        f"station: error: '{letter}' matches {len(candidates)} personas: "
    )
    assert result.stderr.endswith("; give more of the id\n")
    assert all(pid in result.stderr for pid in candidates)
    assert registry_rows() == before


def test_two_personas_with_one_label_are_ambiguous(runner: Any) -> None:
    first = api.create_persona("demo", label="evening")
    second = api.create_persona("demo", label="Evening", standby=True)
    result = runner.invoke(["persona", "refresh-fingerprint", "evening"])
    assert result.exit_code == ExitCode.USAGE
    assert first.id in result.stderr and second.id in result.stderr
    assert api.get_persona(first.id).fingerprint == first.fingerprint


def test_platform_ids_are_taken_in_any_case(runner: Any) -> None:
    created = runner.invoke(["persona", "new", "Demo", "--json"])
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["platform"] == "demo"
    listed = runner.invoke(["persona", "list", "--platform", "DEMO", "--json"])
    assert [p["platform"] for p in json.loads(listed.stdout)] == ["demo"]


def test_open_without_a_platform_lists_the_platforms(runner: Any, isolation: Path) -> None:
    result = runner.invoke(["open"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["ID", "NAME"]
    assert any(line.startswith("demo ") for line in result.stdout.splitlines())
    assert result.stderr == "open one with: station open PLATFORM\n"
    assert not (isolation / "personas").exists()


@pytest.fixture
def stockholm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("stockholm")
def test_human_output_is_local_time_with_its_zone_and_json_is_utc(runner: Any) -> None:
    persona = api.create_persona("demo")
    shown = runner.invoke(["persona", "show", persona.id]).stdout
    created = next(line for line in shown.splitlines() if line.startswith("created:"))
    local = persona.created.astimezone()
    assert created == f"created:      {local:%Y-%m-%d %H:%M} {local:%Z}"
    assert local.strftime("%Z") in ("CET", "CEST")
    listed = runner.invoke(["persona", "list"]).stdout
    assert re.search(rf"{local:%Y-%m-%d %H:%M} {local:%Z}", listed)
    data = json.loads(runner.invoke(["persona", "show", persona.id, "--json"]).stdout)
    assert data["created"].endswith("Z")


def test_a_malformed_platform_is_quoted_as_typed(runner: Any, isolation: Path) -> None:
    result = runner.invoke(["persona", "new", "Demo/../X"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "station: error: malformed platform id 'Demo/../X': use letters, digits and '-', "
        "as listed by 'station platforms'\n"
    )
    assert not isolation.exists() or sorted(isolation.rglob("*")) == []
