"""Other local accounts reach nothing of a station home, whatever the umask; no squatting."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, doctor, paths
from outreach_station.errors import ExitCode, SecurityError
from outreach_station.workspace import open_workspace, workspace_root

OTHER_UID = 65534  # nobody


@pytest.fixture(params=[0o022, 0o002, 0o000], ids=["umask-022", "umask-002", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _exposed(home: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(home):
        for entry in [Path(root), *(Path(root) / n for n in (*dirs, *files))]:
            info = entry.lstat()
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o077:
                found.append(f"{entry.relative_to(home.parent)} {stat.S_IMODE(info.st_mode):04o}")
    return found


def _use_the_home(runner: Any) -> None:
    """What a shift does to a home: vault, personas, a kit, an open and close, the audit log."""
    assert runner.invoke(["init"]).exit_code == 0
    created = runner.invoke(["persona", "new", "demo", "--label", "evening"])
    assert created.exit_code == 0, created.stderr
    persona = api.list_personas()[0]
    with open_workspace(
        paths.current(), persona.id, api.open_vault(), notify=lambda _m: None
    ) as ws:
        (ws.profile / "Cookies").write_bytes(b"cookie jar")
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0


def test_station_home_is_private_whatever_the_umask(
    umask: int, runner: Any, isolation: Path
) -> None:
    _use_the_home(runner)
    home = isolation
    names = {p.name for p in home.rglob("*")}
    assert {
        "registry.sqlite3",
        "audit-anchor.sqlite3",
        "audit.jsonl",
        "vault.json",
        "personas",
        "locks",
    } <= names
    assert _exposed(home) == []
    # SQLite's side files take the database's mode.
    for side in home.glob("registry.sqlite3-*"):
        assert stat.S_IMODE(side.stat().st_mode) == 0o600, side


def test_doctor_fails_a_home_others_can_read(runner: Any, isolation: Path) -> None:
    _use_the_home(runner)
    ok = doctor.check_permissions(isolation, paths.runtime_base()[0])
    assert ok.verdict == "ok", ok
    registry = paths.current().registry
    registry.chmod(0o644)
    found = doctor.check_permissions(isolation, paths.runtime_base()[0])
    assert found.verdict == "fail"
    assert found.detail == f"other accounts can reach the station home: {registry} is 0644"
    assert found.fix == f"chmod -R go= {isolation}"
    os.system(f"chmod -R go= {isolation}")  # noqa: S605 - the fix as a person would run it
    assert doctor.check_permissions(isolation, paths.runtime_base()[0]).verdict == "ok"


def _open_and_close(persona_id: str) -> None:
    vault = api.open_vault()
    with open_workspace(paths.current(), persona_id, vault, notify=print):
        pass


def _squat(base: Path, *, uid: int = OTHER_UID, mode: int = 0o777) -> None:
    base.mkdir()
    os.chown(base, uid, uid)
    base.chmod(mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another account owns needs root")
def test_a_squatted_workspace_root_is_refused(runner: Any) -> None:
    persona = api.create_persona("demo")
    base, _ram = paths.runtime_base()
    _squat(base)
    with pytest.raises(SecurityError) as refused:
        _open_and_close(persona.id)
    assert str(refused.value) == (
        f"{base} belongs to another account (uid {OTHER_UID}); refusing to keep station "
        "files there: ask IT to remove it"
    )
    assert list(base.iterdir()) == []  # nothing of the persona went there
    result = runner.invoke(["open", "demo", "--headless"])
    assert result.exit_code == ExitCode.SECURITY
    assert result.stderr.strip().count("\n") == 0
    assert "belongs to another account" in result.stderr
    finding = doctor.check_permissions(paths.station_home(), base)
    assert finding.verdict == "fail"
    assert f"{base} belongs to uid {OTHER_UID}" in finding.detail


def test_a_workspace_root_others_can_write_is_refused() -> None:
    persona = api.create_persona("demo")
    base, _ram = paths.runtime_base()
    _squat(base, uid=os.geteuid(), mode=0o777)
    with pytest.raises(SecurityError, match="can be written by other accounts"):
        _open_and_close(persona.id)


def test_a_symlinked_workspace_root_is_refused(tmp_path: Path) -> None:
    persona = api.create_persona("demo")
    base, _ram = paths.runtime_base()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    base.symlink_to(elsewhere)
    with pytest.raises(SecurityError, match="is a symbolic link"):
        _open_and_close(persona.id)
    assert list(elsewhere.iterdir()) == []


def test_an_own_readable_workspace_root_is_tightened() -> None:
    persona = api.create_persona("demo")
    base, _ram = paths.runtime_base()
    _squat(base, uid=os.geteuid(), mode=0o755)
    with open_workspace(paths.current(), persona.id, api.open_vault(), notify=print):
        assert stat.S_IMODE(base.stat().st_mode) == 0o700
        assert stat.S_IMODE(workspace_root(paths.current())[0].stat().st_mode) == 0o700
