from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from outreach_station.audit import AuditLog, default_path
from outreach_station.cli.audit import app
from outreach_station.errors import ExitCode, StationError
from tests.fixtures import Clock, install_policy

START = datetime(2026, 11, 3, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STATION_POLICY", str(tmp_path / "no-policy.toml"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    error: StationError | None


def run(*args: str) -> Outcome:
    """Invoke the sub-app as the main CLI would: a StationError becomes its exit code."""
    result = CliRunner().invoke(app, list(args))
    error = result.exception if isinstance(result.exception, StationError) else None
    if (
        result.exception is not None
        and error is None
        and not isinstance(result.exception, SystemExit)
    ):
        raise result.exception
    code = int(error.exit_code) if error else result.exit_code
    return Outcome(code, result.stdout, result.stderr, error)


def seed() -> AuditLog:
    log = AuditLog(default_path(), clock=Clock(START, timedelta(hours=1)))
    log.append("persona.created", persona="p-a", platform="instagram", detail={"reason": "new"})
    log.append("persona.opened", persona="p-b", platform="tiktok")
    log.append("persona.closed", persona="p-a", platform="instagram", detail={"seconds": 90})
    return log


@pytest.fixture
def stockholm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The person's own time zone, as on the clinic's laptops."""
    import time

    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("stockholm")
def test_listing_prints_a_readable_table() -> None:
    seed()
    out = run()
    assert (out.code, out.error) == (0, None)
    user, host = pwd.getpwuid(os.geteuid()).pw_name, socket.gethostname()
    u, h = max(len(user), 4), max(len(host), 4)
    expected = [
        f"SEQ  TIME                     {'USER'.ljust(u)}  {'HOST'.ljust(h)}  EVENT            "
        "PERSONA  PLATFORM   DETAIL",
        f"1    2026-11-03 10:00:00 CET  {user.ljust(u)}  {host.ljust(h)}  persona.created  "
        "p-a      instagram  reason=new",
        f"2    2026-11-03 11:00:00 CET  {user.ljust(u)}  {host.ljust(h)}  persona.opened   "
        "p-b      tiktok     -",
        f"3    2026-11-03 12:00:00 CET  {user.ljust(u)}  {host.ljust(h)}  persona.closed   "
        "p-a      instagram  seconds=90",
    ]
    assert out.stdout.splitlines() == expected
    assert out.stderr == ""


def test_listing_an_empty_log() -> None:
    out = run()
    assert (out.code, out.stdout) == (0, "No audit records.\n")
    assert not default_path().exists()


def test_json_output_parses_and_matches_the_file() -> None:
    seed()
    out = run("--json")
    assert out.code == 0
    data = json.loads(out.stdout)
    on_disk = [json.loads(line) for line in default_path().read_text("utf-8").splitlines()]
    assert data == on_disk
    assert [r["seq"] for r in data] == [1, 2, 3]


def test_persona_and_since_filters() -> None:
    seed()
    by_persona = json.loads(run("--json", "--persona", "p-a").stdout)
    assert [r["seq"] for r in by_persona] == [1, 3]
    since = json.loads(run("--json", "--since", "2026-11-03T10:00Z").stdout)
    assert [r["seq"] for r in since] == [2, 3]
    both = json.loads(run("--json", "--persona", "p-a", "--since", "2026-11-03T09:30Z").stdout)
    assert [r["seq"] for r in both] == [3]
    assert json.loads(run("--json", "--since", "2030-01-01").stdout) == []


def test_bad_since_is_a_usage_error() -> None:
    seed()
    out = run("--since", "yesterday-ish")
    assert out.code == ExitCode.USAGE
    assert out.error is not None
    assert str(out.error) == (
        "cannot read 'yesterday-ish' as a date; use YYYY-MM-DD or an ISO-8601 date-time "
        "such as 2026-11-03T09:00 or 2026-11-03T09:00Z"
    )
    assert out.stdout == ""


def test_listing_options_before_a_subcommand_are_refused() -> None:
    seed()
    out = run("--json", "verify")
    assert out.code == ExitCode.USAGE
    assert out.error is not None and "after `verify`" in str(out.error)


def test_verify_intact() -> None:
    seed()
    out = run("verify")
    assert (out.code, out.error) == (0, None)
    assert out.stdout == f"Audit log intact: 3 records in {default_path()}\n"


def test_verify_json_intact() -> None:
    log = seed()
    out = run("verify", "--json")
    assert out.code == 0
    payload = json.loads(out.stdout)
    assert payload == {
        "ok": True,
        "count": 3,
        "first_bad_line": None,
        "reason": None,
        "last_hash": log.records()[-1].hash,
        "path": str(default_path()),
    }


def test_verify_damaged_names_the_first_bad_line() -> None:
    seed()
    path = default_path()
    lines = path.read_text("utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace("tiktok", "tiktak")
    path.write_text("".join(lines), "utf-8")
    before = path.read_bytes()

    out = run("verify")
    assert out.code == ExitCode.INTEGRITY
    assert out.error is not None
    assert str(out.error) == (
        f"audit log {path} is damaged at line 2: hash does not match the record's content "
        "(edited?) (1 record before it intact)"
    )
    assert path.read_bytes() == before  # verifying never repairs or rewrites

    as_json = run("verify", "--json")
    assert as_json.code == ExitCode.INTEGRITY
    payload = json.loads(as_json.stdout)
    assert (payload["ok"], payload["count"], payload["first_bad_line"]) == (False, 1, 2)


def test_listing_a_damaged_log_warns_on_stderr() -> None:
    seed()
    path = default_path()
    with path.open("ab") as handle:
        handle.write(b'{"seq":4,"ti')  # a write cut short by a crash
    out = run("--json")
    assert out.code == 0
    assert [r["seq"] for r in json.loads(out.stdout)] == [1, 2, 3]
    assert out.stderr == (
        "warning: audit log damaged at line 4: last line is incomplete (cut during a write, "
        "or truncated); run `station audit verify`\n"
    )


def test_every_command_has_help_with_an_example() -> None:
    group = typer.main.get_group(app)
    commands = {"": group, **group.commands}
    assert set(commands) == {"", "verify", "restart"}
    for name, command in commands.items():
        assert command.help and "Example: station audit" in command.help, name
        out = run(*([name] if name else []), "--help")
        assert out.code == 0
        assert "Example: station audit" in out.stdout


def test_a_system_policy_can_relocate_the_log(tmp_path: Path, system_policy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a trusted system policy must be owned by root")
    tmp_path.chmod(0o755)  # every directory above a trusted policy must be root-only writable
    relocated = tmp_path / "collector" / "station-audit.jsonl"
    install_policy(system_policy, f'[audit]\npath = "{relocated}"\n')
    AuditLog(relocated).append("vault.initialised")

    out = run("verify")
    assert (out.code, out.error) == (0, None)
    assert out.stdout == f"Audit log intact: 1 record in {relocated}\n"
    assert json.loads(run("--json").stdout)[0]["event"] == "vault.initialised"
    assert not default_path().exists()
