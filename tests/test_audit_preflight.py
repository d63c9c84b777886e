"""An action never happens without its record: a log that cannot take one stops it first."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.errors import ExitCode


def _damage_last_line(log: Path) -> None:
    with log.open("ab") as file:
        file.write(b'{"seq":99,"not a record"}\n')


def _symlink_log(log: Path) -> None:
    elsewhere = log.parent / "elsewhere.jsonl"
    elsewhere.write_bytes(log.read_bytes())
    log.unlink()
    log.symlink_to(elsewhere)


def _cut_last_record(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))


BREAKAGES: dict[str, tuple[Callable[[Path], None], ExitCode, str]] = {
    "damaged-last-line": (_damage_last_line, ExitCode.INTEGRITY, "is damaged at line"),
    "symlinked-log": (_symlink_log, ExitCode.SECURITY, "is a symbolic link"),
    "cut-against-anchor": (_cut_last_record, ExitCode.INTEGRITY, "does not match its anchor"),
}


def _registry_rows() -> list[tuple[str, str, str]]:
    with sqlite3.connect(paths.current().registry) as conn:
        return list(conn.execute("SELECT id, status, status_changed FROM personas ORDER BY id"))


def _log_bytes(log: Path) -> bytes:
    return log.resolve().read_bytes()


def _assert_refused(result: Any, code: ExitCode, says: str, log: Path) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith(f"station: error: audit log {log}"), message
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_persona_new_refused_before_changing_anything(breakage: str, runner: Any) -> None:
    first = api.create_persona("demo")
    log = api.audit_log().path
    damage, code, says = BREAKAGES[breakage]
    damage(log)
    before, log_before = _registry_rows(), _log_bytes(log)

    result = runner.invoke(["persona", "new", "demo"])

    _assert_refused(result, code, says, log)
    assert _registry_rows() == before
    assert [row[0] for row in before] == [first.id]
    assert _log_bytes(log) == log_before


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_rotate_refused_before_changing_anything(breakage: str, runner: Any) -> None:
    active = api.create_persona("demo")
    api.create_persona("demo", standby=True)
    log = api.audit_log().path
    damage, code, says = BREAKAGES[breakage]
    damage(log)
    before, log_before = _registry_rows(), _log_bytes(log)

    result = runner.invoke(["rotate", "demo", "--yes"])

    _assert_refused(result, code, says, log)
    assert _registry_rows() == before
    assert api.get_persona(active.id).status == "active"
    assert _log_bytes(log) == log_before


@pytest.mark.parametrize("existing", [False, True], ids=["first-open", "active-persona"])
def test_open_refused_before_creating_or_opening_a_persona(existing: bool, runner: Any) -> None:
    if existing:
        api.create_persona("demo")
    else:
        api.audit("vault.initialised", mode="keyring")
        assert api.list_personas() == []
    log = api.audit_log().path
    _damage_last_line(log)
    before, log_before = _registry_rows(), _log_bytes(log)

    result = runner.invoke(["open", "demo", "--headless"])

    _assert_refused(result, ExitCode.INTEGRITY, "is damaged at line", log)
    assert _registry_rows() == before
    with sqlite3.connect(paths.current().registry) as conn:
        assert conn.execute("SELECT last_opened FROM personas").fetchall() == [
            (None,) for _ in before
        ]
    assert _log_bytes(log) == log_before


def test_an_intact_log_still_records_the_action(runner: Any) -> None:
    result = runner.invoke(["persona", "new", "demo"])
    assert result.exit_code == 0, result.stderr
    log = api.audit_log().path
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["persona.created"]
