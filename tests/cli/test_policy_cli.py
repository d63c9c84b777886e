from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from outreach_station.cli.policy import app
from outreach_station.errors import (
    ConfigError,
    ExitCode,
    NotFoundError,
    SecurityError,
)

needs_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root-owned files, as CI runs"
)


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "config.toml"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@needs_root
def test_show_prints_every_value_with_its_source(
    runner: CliRunner, system_policy: Path, user: Path
) -> None:
    write(system_policy, '[browser]\ndevtools = true\n[platform.demo]\nallowlist = ["demo.test"]\n')
    write(user, "[session]\nidle_minutes = 5\n")

    result = runner.invoke(app, ["show"])

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    sys_src, user_src = f"system policy {system_policy}", f"user config {user}"
    rows = [
        ("platforms.allowed", "(all platforms)", "default"),
        ("platforms.profiles_dir", "(none)", "default"),
        ("browser.executable", "(auto-detect)", "default"),
        ("browser.downloads", "false", "default"),
        ("browser.devtools", "true", sys_src),
        ("browser.extensions", "false", "default"),
        ("browser.printing", "true", "default"),
        ("browser.file_urls", "false", "default"),
        ("session.max_minutes", "480", "default"),
        ("session.idle_minutes", "5", user_src),
        ("audit.path", "(station home default)", "default"),
        ("retention.blocked_days", "90", "default"),
        ("rotation.undo_minutes", "15", "default"),
        ("vault.allow_passphrase", "false", "default"),
        ("team.url", "(none)", "default"),
        ("team.lease_minutes", "10", "default"),
        ("team.allow_join", "false", "default"),
        ("platform.demo.allowlist", '["demo.test"]', sys_src),
    ]
    key_w = max(len(r[0]) for r in rows)
    val_w = max(len(r[1]) for r in rows)
    src_w = max(len(r[2]) for r in rows)
    expected = [
        f"System policy: {system_policy}",
        f"User config:   {user}",
        "",
        f"{'KEY'.ljust(key_w)}  {'VALUE'.ljust(val_w)}  SOURCE",
        f"{'-' * key_w}  {'-' * val_w}  {'-' * src_w}",
        *(f"{k.ljust(key_w)}  {v.ljust(val_w)}  {s}" for k, v, s in rows),
    ]
    assert result.stdout.splitlines() == expected


def test_show_without_any_file_says_so(runner: CliRunner, system_policy: Path, user: Path) -> None:
    result = runner.invoke(app, ["show"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        f"System policy: {system_policy} (not present)",
        f"User config:   {user} (not present)",
    ]
    assert all(line.endswith("default") for line in lines[5:])


@needs_root
def test_show_json_maps_each_key_to_value_and_source(
    runner: CliRunner, system_policy: Path, user: Path
) -> None:
    write(system_policy, "[session]\nmax_minutes = 120\n[platform.demo]\nrequire_proxy = true\n")

    result = runner.invoke(app, ["show", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["session.max_minutes"] == {"value": 120, "source": f"system policy {system_policy}"}
    assert data["platform.demo.require_proxy"] == {
        "value": True,
        "source": f"system policy {system_policy}",
    }
    assert data["platforms.allowed"] == {"value": None, "source": "default"}
    assert data["browser.downloads"] == {"value": False, "source": "default"}


@needs_root
def test_show_warns_about_an_ignored_loosening_and_shows_the_kept_value(
    runner: CliRunner, system_policy: Path, user: Path
) -> None:
    write(system_policy, "[browser]\ndownloads = false\n")
    write(user, "[browser]\ndownloads = true\n")

    result = runner.invoke(app, ["show", "--json"])

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"station: warning: user config {user}:2: ignoring browser.downloads = true: "
        "a user config may only tighten the policy; keeping false from system policy "
        f"{system_policy}\n"
    )
    assert json.loads(result.stdout)["browser.downloads"] == {
        "value": False,
        "source": f"system policy {system_policy}",
    }


@needs_root
def test_show_refuses_an_untrusted_system_policy(
    runner: CliRunner, system_policy: Path, user: Path
) -> None:
    write(system_policy, "[browser]\ndownloads = true\n", mode=0o666)

    result = runner.invoke(app, ["show"])

    assert isinstance(result.exception, SecurityError)
    assert result.exception.exit_code == ExitCode.SECURITY
    assert "is world-writable" in str(result.exception)
    assert result.stdout == ""


def test_show_refuses_a_malformed_user_config(
    runner: CliRunner, system_policy: Path, user: Path
) -> None:
    write(user, "[browser]\ndownloads = yes\n")

    result = runner.invoke(app, ["show"])

    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith(f"{user}:2: TOML syntax error: ")
    assert result.stdout == ""


def test_check_accepts_a_valid_policy(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", '[platforms]\nallowed = ["demo"]\n')

    result = runner.invoke(app, ["check", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"OK: {path} is a valid policy\n"


def test_check_reports_every_bad_field(runner: CliRunner, tmp_path: Path) -> None:
    path = write(
        tmp_path / "policy.toml",
        "[browser]\nprinting = 'no'\n[session]\nidle_minutes = 99999\n[vault]\npassphrase = true\n",
    )

    result = runner.invoke(app, ["check", str(path)])

    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).splitlines() == [
        f'{path}:2: browser.printing: expected true or false, got "no"',
        f"{path}:4: session.idle_minutes: expected an integer from 0 to 10080 "
        "(minutes, 0 = off), got 99999",
        f"{path}:6: unknown key 'vault.passphrase'; did you mean 'vault.allow_passphrase'?",
    ]
    assert result.stdout == ""


def test_check_reports_a_syntax_error_with_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", "[browser]\n\n[session\nmax_minutes = 1\n")

    result = runner.invoke(app, ["check", str(path)])

    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith(f"{path}:3: TOML syntax error: ")


def test_check_of_a_missing_file_is_not_found(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.toml")])

    assert isinstance(result.exception, NotFoundError)


@needs_root
def test_check_installed_also_requires_trust(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", "[vault]\nallow_passphrase = false\n", mode=0o664)

    # Before rollout, the draft's ownership is not the point...
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    # ...but as installed it must be writable by root only.
    result = runner.invoke(app, ["check", "--installed", str(path)])
    assert isinstance(result.exception, SecurityError)
    assert "is group-writable" in str(result.exception)

    path.chmod(0o644)
    result = runner.invoke(app, ["check", "--installed", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"OK: {path} is a valid policy\n"


def test_errors_reach_the_person_as_one_line_and_an_exit_code(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Mounted under the real top-level group, as `station policy`.
    from outreach_station.cli import StationGroup

    root = typer.Typer(cls=StationGroup, add_completion=False)

    @root.callback()
    def _root() -> None:
        pass

    root.add_typer(app, name="policy")
    path = write(tmp_path / "policy.toml", "[browser]\ndevtools = 1\n")

    result = runner.invoke(root, ["policy", "check", str(path)])

    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr == (
        f"station: error: {path}:2: browser.devtools: expected true or false, got 1\n"
    )


@pytest.mark.parametrize("command", ["show", "check"])
def test_every_command_has_help_with_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])

    assert result.exit_code == 0
    assert f"Example: station policy {command}" in result.stdout


def _mounted() -> typer.Typer:
    from outreach_station.cli import StationGroup

    root = typer.Typer(cls=StationGroup, add_completion=False)

    @root.callback()
    def _root() -> None:
        pass

    root.add_typer(app, name="policy")
    return root


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Parsable: shown with the password masked, so IT sees which URL is wrong.
        (
            "postgresql://station:Hunter2-secret@db.clinic.example/station",
            '"postgresql://station:***@db.clinic.example/station"',
        ),
        (
            "postgresql://station@db/x?password=Hunter2-secret",
            '"postgresql://station@db/x?password=***"',
        ),
        # Not parsable as a URL: not shown at all, a password could be anywhere in it.
        ("postgres:/station:Hunter2-secret@db", "a value not shown here (it may hold a password)"),
        (
            "postgresql://station:Hunter2-secret@db/x\x1b[2J",
            "a value not shown here (it may hold a password)",
        ),
    ],
)
def test_a_bad_team_url_never_echoes_its_password(
    runner: CliRunner, tmp_path: Path, url: str, shown: str
) -> None:
    escaped = url.replace("\x1b", "\\u001b")
    path = write(tmp_path / "policy.toml", f'[team]\nurl = "{escaped}"\n')

    result = runner.invoke(_mounted(), ["policy", "check", str(path)])

    assert result.exit_code == ExitCode.CONFIG
    assert "Hunter2-secret" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"station: error: {path}:2: team.url: expected ")
    assert result.stderr.endswith(f", got {shown}\n")
    assert result.stderr.count("\n") == 1
