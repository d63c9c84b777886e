"""Each kind of bad input: its exit code, its one-line message, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode
from tests.fixtures import station_argv


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


# --- defect 8: one line, never a traceback --------------------------------------

REGISTRY_DAMAGED = (
    "station: error: the registry {path} is damaged and cannot be read; restore it "
    "from a backup (station overwrote nothing)\n"
)


def _registry_with_personas(runner: Any, isolation: Path) -> Path:
    assert runner.invoke(["persona", "new", "demo", "--count", "3"]).exit_code == 0
    return isolation / "registry.sqlite3"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header-only"])
@pytest.mark.parametrize(
    "command",
    [["status"], ["persona", "list"], ["persona", "new", "demo"], ["rotate", "demo", "--yes"]],
)
def test_damaged_registry_is_named_and_left_untouched(
    runner: Any, isolation: Path, damage: str, command: list[str]
) -> None:
    registry = _registry_with_personas(runner, isolation)
    whole = registry.read_bytes()
    damaged = {
        "garbage": bytes(range(256)) * 40,
        "truncated": whole[: len(whole) // 2],
        "header-only": whole[:1000],
    }[damage]
    registry.write_bytes(damaged)
    before = files_under(isolation)

    result = runner.invoke(command)

    assert result.exit_code == ExitCode.DAMAGED
    assert result.stderr == REGISTRY_DAMAGED.format(path=registry)
    assert result.stdout == ""
    assert registry.read_bytes() == damaged
    # Nothing beside it appears (no journal, no fresh registry) but a rotation's lock file.
    assert [p for p in files_under(isolation) if "locks" not in p.parts] == before


def test_registry_damaged_inside_a_table_is_one_line(runner: Any, isolation: Path) -> None:
    registry = _registry_with_personas(runner, isolation)
    whole = bytearray(registry.read_bytes())
    page = int.from_bytes(whole[16:18], "big")
    # Every page after the schema page is scribbled over: the file still opens.
    for offset in range(page, len(whole)):
        whole[offset] = 0x5A
    registry.write_bytes(bytes(whole))

    result = runner.invoke(["persona", "list"])

    assert result.exit_code == ExitCode.DAMAGED
    assert result.stderr == REGISTRY_DAMAGED.format(path=registry)
    assert registry.read_bytes() == bytes(whole)


def _in_private_mount(
    tmp_path: Path, mount: str, station_args: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run station with STATION_HOME on a fresh tmpfs mounted with `mount` options.

    Root ignores permission bits, so a read-only or full home has to be a real
    file system; a private mount namespace keeps it from every other process.
    """
    home = tmp_path / "mounted-home"
    home.mkdir()
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            mount,
            str(home),
            *station_argv(*station_args),
        ],
        env={**os.environ, "STATION_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_open_on_read_only_home_is_one_line(tmp_path: Path) -> None:
    result = _in_private_mount(tmp_path, "ro,size=1m,mode=0700", ["open", "demo", "--headless"])
    assert result.returncode == ExitCode.ENVIRONMENT, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"station: error: cannot write {re.escape(str(tmp_path / 'mounted-home'))}/\S+: "
        r"read-only file system; station needs a writable STATION_HOME \(.+\)",
        lines[0],
    ), lines[0]


def test_full_disk_is_one_line(tmp_path: Path) -> None:
    result = _in_private_mount(
        tmp_path, "size=100k,mode=0700", ["persona", "new", "demo", "--count", "100"]
    )
    assert result.returncode == ExitCode.ENVIRONMENT, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"station: error: the disk is full: cannot write {tmp_path / 'mounted-home'}"
        "/registry.sqlite3; free some space, then try again"
    ]


def test_os_error_without_a_station_error_is_still_one_line(
    runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach_station import lifecycle

    def fail(*_args: object, **_kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", "/somewhere/file")

    monkeypatch.setattr(lifecycle, "list_personas", fail)
    result = runner.invoke(["persona", "list"])
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert result.stderr == (
        "station: error: cannot use /somewhere/file: permission denied; check that your "
        "account may read and write there\n"
    )
    debug = runner.invoke(["--debug", "persona", "list"])
    assert "Traceback" in debug.stderr


# --- bounded reads of files named by a person or found in config dirs ------------


def _station(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Station in a child with a memory cap and a timeout: an unbounded read fails, never hangs."""

    def cap_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        station_argv(*args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=cap_memory,
    )


def _odd_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    huge.write_text("# padding\n" * 120_000)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    not_regular = "not a regular file; give the path of a TOML file"
    return {
        "urandom": (Path("/dev/urandom"), not_regular),
        "fifo": (fifo, not_regular),
        "directory": (directory, not_regular),
        "huge": (huge, "larger than 1 MiB, too large for a station settings file"),
    }


@pytest.mark.parametrize("kind", ["urandom", "fifo", "directory", "huge"])
def test_policy_check_reads_only_small_regular_files(tmp_path: Path, kind: str) -> None:
    path, why = _odd_files(tmp_path)[kind]
    result = _station(["policy", "check", str(path)])
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr == f"station: error: {path}: {why}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_user_config_is_read_bounded(tmp_path: Path, isolation: Path, kind: str) -> None:
    isolation.mkdir()
    config = isolation / "config.toml"
    if kind == "fifo":
        os.mkfifo(config)
        why = "not a regular file; give the path of a TOML file"
    else:
        config.write_text("# padding\n" * 120_000)
        why = "larger than 1 MiB, too large for a station settings file"
    result = _station(["policy", "show"])
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr == f"station: error: {config}: {why}\n"


def test_odd_profile_files_break_only_themselves(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    odd = _odd_files(profiles)
    result = _station(["platforms", "--json"], STATION_PROFILES=str(profiles))
    assert result.returncode == 0, result.stderr
    assert "demo" in [p["id"] for p in json.loads(result.stdout)]
    warnings = sorted(result.stderr.splitlines())
    assert warnings == sorted(
        f"station: warning: {path}: {why}" for name, (path, why) in odd.items() if name != "urandom"
    )


def test_a_bug_is_one_line_without_its_text(runner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_station import lifecycle

    def fail(*_args: object, **_kwargs: object) -> object:
        raise KeyError("Secret-value-in-a-bug")

    monkeypatch.setattr(lifecycle, "list_personas", fail)
    result = runner.invoke(["persona", "list"])
    assert result.exit_code == ExitCode.FAILURE
    assert result.stderr == (
        "station: error: unexpected internal error (KeyError); run the command again with "
        "--debug to see where, and report it\n"
    )
    debug = runner.invoke(["--debug", "persona", "list"])
    assert "Traceback" in debug.stderr
