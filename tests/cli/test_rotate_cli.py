"""`station rotate`: it asks before it burns an account, and a mistaken one can be undone."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, kit, paths
from outreach_station.audit import default_log
from outreach_station.clock import iso, parse_iso
from outreach_station.errors import ExitCode

pytestmark = pytest.mark.keyring

NEEDS_YES = (
    "station: error: rotating blocks the platform's active persona: confirm on a "
    "terminal, or pass --yes in scripts\n"
)


def snapshot(root: Path) -> dict[str, str]:
    """The station home by content: the registry's rows, and every other file (sealed
    profiles, audit log, anchor). The registry is read as rows: SQLite's own files
    change with checkpoints that change no data."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock") and "registry.sqlite3" not in p.name
    }
    with sqlite3.connect(paths.current().registry) as conn:
        files["registry rows"] = "\n".join(conn.iterdump())
    return files


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A person at a terminal (stdin is a pipe under CliRunner; this is the one seam)."""
    from outreach_station.cli import lifecycle as cli_lifecycle

    monkeypatch.setattr(cli_lifecycle, "is_terminal", lambda: True)


def _rotated_platform() -> tuple[str, str]:
    """demo with an active persona 'Anna' and one standby: the ids of both."""
    active = api.create_persona("demo", label="Anna")
    standby = api.create_persona("demo", standby=True)
    return active.id, standby.id


def test_rotate_without_a_terminal_or_yes_refuses_and_changes_nothing(
    runner: Any, isolation: Path
) -> None:
    active, standby = _rotated_platform()
    before = snapshot(isolation)

    result = runner.invoke(["rotate", "demo", "--reason", "suspended"])

    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == NEEDS_YES
    assert result.stdout == ""
    assert snapshot(isolation) == before
    assert api.get_persona(active).status == "active"
    assert api.get_persona(standby).status == "standby"


def test_rotate_with_yes_rotates_and_the_reason_shows_in_audit_and_show(runner: Any) -> None:
    active, standby = _rotated_platform()

    result = runner.invoke(["rotate", "Demo", "--yes", "--reason", "suspended at login"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"demo: persona {active} (Anna) marked blocked (suspended at login)",
        f"demo: persona {standby} is now active (promoted from standby)",
        "a mistake? station rotate demo --undo",
        "next: station open demo",
    ]
    audit = runner.invoke(["audit"])
    blocked_line = next(line for line in audit.stdout.splitlines() if "persona.blocked" in line)
    assert "reason=suspended at login" in blocked_line
    shown = runner.invoke(["persona", "show", active])
    assert "status:       blocked" in shown.stdout
    assert "reason:       suspended at login" in shown.stdout


def test_on_a_terminal_rotate_shows_what_it_blocks_and_asks_for_the_reason(
    runner: Any, terminal: None
) -> None:
    active, standby = _rotated_platform()
    kit.update_kit(active, {"username": "anna.outreach"})

    result = runner.invoke(["rotate", "demo"], input="account suspended\ny\n")

    assert result.exit_code == 0, result.stderr
    assert "Rotate Demo: what a website sees of this persona (demo)?" in result.stderr
    assert f"blocks persona {active} (Anna), kit username: anna.outreach" in result.stderr
    assert "Reason, for the record (no personal data)" in result.stderr
    assert api.get_persona(active).status == "blocked"
    assert api.get_persona(active).status_reason == "account suspended"
    assert api.get_persona(standby).status == "active"


def test_on_a_terminal_answering_no_changes_nothing(
    runner: Any, terminal: None, isolation: Path
) -> None:
    active, _standby = _rotated_platform()
    before = snapshot(isolation)

    result = runner.invoke(["rotate", "demo", "--reason", "typo"], input="n\n")

    assert result.exit_code == 1
    assert "Aborted" in result.stderr
    assert snapshot(isolation) == before
    assert api.get_persona(active).status == "active"


def test_undo_brings_the_blocked_persona_back_and_the_promoted_one_to_standby(
    runner: Any,
) -> None:
    active, standby = _rotated_platform()
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0

    result = runner.invoke(["rotate", "demo", "--undo", "--yes"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"demo: persona {active} (Anna) is active again",
        f"demo: persona {standby} is back in standby",
    ]
    assert api.get_persona(active).status == "active"
    assert api.get_persona(standby).status == "standby"
    last = default_log().records()[-1]
    assert last.event.value == "persona.rotation_undone"
    assert (last.persona, last.detail) == (active, {"demoted": standby})
    assert default_log().verify().ok

    report = json.loads(runner.invoke(["report", "--json"]).stdout)
    assert [p["blocks"] for p in report["platforms"] if p["platform"] == "demo"] == [0]

    again = runner.invoke(["rotate", "demo", "--undo", "--yes"])
    assert again.exit_code == ExitCode.STATE
    assert again.stderr == (
        "station: error: platform demo has no rotation to undo: its active persona was not "
        "brought in by a rotation that blocked another\n"
    )


def test_undo_of_a_rotation_that_created_the_new_persona(runner: Any) -> None:
    first = api.create_persona("demo")
    rotated = api.rotate("demo")
    assert rotated.created

    assert runner.invoke(["rotate", "demo", "--undo", "--yes"]).exit_code == 0

    assert api.get_persona(first.id).status == "active"
    assert api.get_persona(rotated.active.id).status == "standby"


def _age_last_rotation(minutes: int) -> None:
    """Move the last rotation `minutes` into the past, as if the person waited that long."""
    with sqlite3.connect(paths.current().registry) as conn:
        for persona_id, changed in conn.execute(
            "SELECT id, status_changed FROM personas WHERE status IN ('active', 'blocked')"
        ).fetchall():
            earlier = iso(parse_iso(changed) - timedelta(minutes=minutes))
            conn.execute(
                "UPDATE personas SET status_changed = ? WHERE id = ?", (earlier, persona_id)
            )


def test_undo_outside_the_window_is_refused_and_changes_nothing(
    runner: Any, isolation: Path
) -> None:
    active, standby = _rotated_platform()
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0
    _age_last_rotation(16)
    before = snapshot(isolation)

    result = runner.invoke(["rotate", "demo", "--undo", "--yes"])

    assert result.exit_code == ExitCode.STATE
    assert result.stderr == (
        "station: error: the last rotation of demo was 16 minutes ago; it can be undone "
        "only within 15 minutes\n"
    )
    assert snapshot(isolation) == before
    assert api.get_persona(active).status == "blocked"
    assert api.get_persona(standby).status == "active"


def test_undo_within_a_window_the_user_config_shortened(runner: Any) -> None:
    active, _standby = _rotated_platform()
    config = paths.current().user_config
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[rotation]\nundo_minutes = 5\n", "utf-8")
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0
    _age_last_rotation(6)

    result = runner.invoke(["rotate", "demo", "--undo", "--yes"])

    assert result.exit_code == ExitCode.STATE
    assert "it can be undone only within 5 minutes" in result.stderr
    assert api.get_persona(active).status == "blocked"


def test_undo_with_nothing_rotated_is_refused(runner: Any) -> None:
    api.create_persona("demo")
    result = runner.invoke(["rotate", "demo", "--undo", "--yes"])
    assert result.exit_code == ExitCode.STATE
    assert "platform demo has no rotation to undo" in result.stderr


def test_undo_without_a_terminal_or_yes_refuses_and_changes_nothing(
    runner: Any, isolation: Path
) -> None:
    _rotated_platform()
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0
    before = snapshot(isolation)

    result = runner.invoke(["rotate", "demo", "--undo"])

    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "station: error: undoing a rotation: confirm on a terminal, or pass --yes in scripts\n"
    )
    assert snapshot(isolation) == before


def test_the_longest_undo_window_ends_before_the_shortest_retention() -> None:
    # Rotation destroys nothing; retention shreds blocked personas after
    # `retention.blocked_days`. If a window could outlast the shortest
    # retention, undo could meet a persona already shredded.
    from outreach_station.policy import MAX_UNDO_MINUTES, Policy

    assert MAX_UNDO_MINUTES * 60 <= 86400
    assert Policy().rotation.undo_minutes == 15


def _read_until(fd: int, marker: str, seen: list[str], timeout: float = 60.0) -> None:
    import os
    import select
    import time

    deadline = time.monotonic() + timeout
    while marker not in "".join(seen):
        assert time.monotonic() < deadline, f"no {marker!r} in {''.join(seen)!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen.append(os.read(fd, 4096).decode("utf-8", "replace"))
            except OSError:  # the child closed the terminal
                return


def test_in_a_real_terminal_rotate_asks_then_rotates() -> None:
    import os
    import pty
    import subprocess

    from tests.fixtures import station_argv

    active, standby = _rotated_platform()
    kit.update_kit(active, {"username": "anna.outreach"})
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        station_argv("rotate", "demo"), stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    seen: list[str] = []
    try:
        _read_until(leader, "Reason, for the record", seen)
        os.write(leader, b"suspended at login\n")
        _read_until(leader, "Rotate now?", seen)
        os.write(leader, b"y\n")
        _read_until(leader, "next: station open demo", seen)
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()
        os.close(leader)
    shown = "".join(seen)
    assert f"blocks persona {active} (Anna), kit username: anna.outreach" in shown
    assert api.get_persona(active).status == "blocked"
    assert api.get_persona(active).status_reason == "suspended at login"
    assert api.get_persona(standby).status == "active"
