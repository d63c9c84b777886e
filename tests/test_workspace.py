"""outreach_station/workspace.py: a persona's lock, its unsealed workspace and recovery.

Real keyring (Secret Service), real SQLite registry, real files on the RAM-backed
runtime directory the isolation fixture gives each test; no browser. A crash is a
real SIGKILL of a child process that holds a workspace open.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach_station import paths, workspace
from outreach_station.errors import BusyError, IntegrityError
from outreach_station.storage.sqlite import SqliteStore as Registry
from outreach_station.vault import Vault

PERSONA = "mnopqrstuvwx"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def vault(secret_service: None) -> Vault:
    return Vault.init(paths.current())


def _quiet(_message: str) -> None:
    pass


def _session(vault: Vault, value: str) -> None:
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=_quiet) as ws:
        (ws.profile / "value.txt").write_text(value)


def _value(vault: Vault, notify: list[str] | None = None) -> str:
    tell = notify.append if notify is not None else _quiet
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=tell) as ws:
        return (ws.profile / "value.txt").read_text()


def _marker() -> Path:
    return paths.current().persona_dir(PERSONA) / workspace.OPEN_MARKER


def _filesystem(path: Path) -> str:
    """The file system type of the mount `path` lives on (longest mount point that holds it)."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point = fields[4]
        fstype = fields[fields.index("-") + 1]
        inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fstype
    return kind


# -- open, reseal, wipe ------------------------------------------------------------------


def test_open_unseals_into_a_private_ram_dir_and_reseals_on_exit(vault: Vault) -> None:
    station = paths.current()
    _session(vault, "first")
    sealed = workspace.sealed_file(station, PERSONA)
    assert sealed.is_file()
    assert b"first" not in sealed.read_bytes()  # sealed, not plaintext at rest

    with workspace.open_workspace(station, PERSONA, vault, notify=_quiet) as ws:
        assert ws.persona_id == PERSONA
        assert ws.sealed_file == sealed
        assert ws.ram_backed
        assert ws.directory == workspace.workspace_dir(station, PERSONA)
        assert ws.directory.is_relative_to(Path(os.environ["XDG_RUNTIME_DIR"]))
        assert _filesystem(ws.directory) == "tmpfs"
        for private in (ws.directory, ws.profile, ws.home):
            info = private.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700, private
            assert info.st_uid == os.geteuid()
        assert (ws.profile / "value.txt").read_text() == "first"
        assert _marker().is_file()
        assert workspace.needs_recovery(station, PERSONA)
        assert workspace.is_locked(station, PERSONA)
        (ws.profile / "value.txt").write_text("second")
        directory = ws.directory

    assert not directory.exists()  # the plaintext is wiped
    assert not _marker().exists()
    assert not workspace.needs_recovery(station, PERSONA)
    assert not workspace.is_locked(station, PERSONA)
    assert b"second" not in sealed.read_bytes()
    with Registry(station.registry) as reg:
        assert reg.sealed_generation(PERSONA) == (2, None)
    assert _value(vault) == "second"


def test_the_workspace_is_resealed_and_wiped_when_the_block_raises(vault: Vault) -> None:
    station = paths.current()
    _session(vault, "first")
    with (
        pytest.raises(RuntimeError, match="the browser crashed"),
        workspace.open_workspace(station, PERSONA, vault, notify=_quiet) as ws,
    ):
        (ws.profile / "value.txt").write_text("kept")
        raise RuntimeError("the browser crashed")
    assert not ws.directory.exists()
    assert not workspace.needs_recovery(station, PERSONA)
    assert not workspace.is_locked(station, PERSONA)
    assert _value(vault) == "kept"


# -- locks -------------------------------------------------------------------------------


def test_a_second_open_of_the_same_persona_is_refused_while_the_first_holds_it(
    vault: Vault,
) -> None:
    station = paths.current()
    _session(vault, "first")
    with workspace.open_workspace(station, PERSONA, vault, notify=_quiet) as ws:
        (ws.profile / "value.txt").write_text("mine")
        with pytest.raises(BusyError) as refused:
            _value(vault)
        assert refused.value.message == (
            f"persona {PERSONA} is already open in another station session "
            f"(process {os.getpid()}); close that browser first"
        )
        # The refused open touched nothing of the first one.
        assert (ws.profile / "value.txt").read_text() == "mine"
        assert _marker().is_file()
    assert _value(vault) == "mine"


def test_is_locked_follows_the_persona_lock() -> None:
    station = paths.current()
    assert not workspace.is_locked(station, PERSONA)  # no lock file yet
    with workspace.persona_lock(station, PERSONA) as lock:
        assert lock.persona_id == PERSONA
        assert lock.path == station.persona_lock(PERSONA)
        assert workspace.is_locked(station, PERSONA)
        assert not workspace.is_locked(station, "otherpersona")
    assert lock.path.exists()  # the file stays; the kernel lock is what counts
    assert not workspace.is_locked(station, PERSONA)


def test_platform_lock_serialises_one_platform_only() -> None:
    station = paths.current()
    with workspace.platform_lock(station, "demo", action="rotated"):
        with (
            pytest.raises(BusyError) as refused,
            workspace.platform_lock(station, "demo", action="rotated"),
        ):
            pass
        assert refused.value.message == (
            f"platform demo is being rotated by another station (process {os.getpid()}); "
            "nothing was changed"
        )
        with workspace.platform_lock(station, "facebook", action="rotated"):
            pass
    with workspace.platform_lock(station, "demo", action="rotated"):
        pass


# -- a crash and its recovery ------------------------------------------------------------

_HOLDER = """
import sys, time
from outreach_station import paths, workspace
from outreach_station.vault import Vault

station = paths.current()
vault = Vault.open(station)
with workspace.open_workspace(station, sys.argv[1], vault, notify=lambda _m: None) as ws:
    (ws.profile / "value.txt").write_text(sys.argv[2])
    print(ws.directory, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def killed_holder(vault: Vault) -> Iterator[Path]:
    """A station process that held the persona open with "unsaved" in it, then was SIGKILLed.

    Yields the workspace directory it left behind.
    """
    _session(vault, "sealed before the crash")
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), PERSONA, "unsaved"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        directory = Path(child.stdout.readline().strip())
        assert directory == workspace.workspace_dir(paths.current(), PERSONA)
        # While it lives, it holds the persona: another open is refused.
        assert workspace.is_locked(paths.current(), PERSONA)
        with pytest.raises(BusyError, match=rf"\(process {child.pid}\)"):
            _value(vault)
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
        yield directory
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)


def test_a_killed_session_is_resealed_by_the_next_open(vault: Vault, killed_holder: Path) -> None:
    station = paths.current()
    # The kernel let go of the lock; the workspace and its marker are what a crash leaves.
    assert not workspace.is_locked(station, PERSONA)
    assert (killed_holder / "profile" / "value.txt").read_text() == "unsaved"
    assert _marker().is_file()
    assert workspace.needs_recovery(station, PERSONA)

    seen: list[str] = []
    assert _value(vault, seen) == "unsaved"  # nothing the killed session wrote is lost
    assert f"persona {PERSONA} was not closed cleanly; sealing the profile it left open" in seen
    assert any(m.startswith(f"persona {PERSONA} recovered:") for m in seen), seen
    assert not killed_holder.exists()
    assert not workspace.needs_recovery(station, PERSONA)
    with Registry(station.registry) as reg:
        # 1: before the crash; 2: the recovery's seal; 3: the session that read it back.
        assert reg.sealed_generation(PERSONA) == (3, None)


def test_recover_after_a_reboot_keeps_the_last_sealed_profile_and_says_what_is_lost(
    vault: Vault, killed_holder: Path
) -> None:
    station = paths.current()
    opened = _marker().read_text()
    workspace.wipe(killed_holder)  # a reboot clears RAM; the marker on disk stays
    assert workspace.needs_recovery(station, PERSONA)

    seen: list[str] = []
    with workspace.persona_lock(station, PERSONA):
        recovery = workspace.recover(station, PERSONA, vault, notify=seen.append)
    assert recovery is not None
    assert recovery.persona_id == PERSONA
    assert not recovery.resealed
    assert recovery.lost_since is not None
    assert recovery.lost_since in opened
    assert seen == [
        f"persona {PERSONA} was not closed cleanly and its open profile is gone "
        f"(the machine restarted?): what happened since {recovery.lost_since} is lost; "
        "the last sealed profile is used"
    ]
    assert not workspace.needs_recovery(station, PERSONA)
    with workspace.persona_lock(station, PERSONA):
        assert workspace.recover(station, PERSONA, vault, notify=seen.append) is None
    assert _value(vault) == "sealed before the crash"


# -- sealed generations ------------------------------------------------------------------


def test_sealed_state_refuses_an_older_generation_put_back(vault: Vault) -> None:
    station = paths.current()
    state = workspace.SealedState(station, PERSONA)
    assert state.on_record() == (0, None)
    assert state.problem() is None  # never sealed: no file is expected
    _session(vault, "first")
    old = state.file.read_bytes()
    _session(vault, "second")
    assert state.on_record() == (2, None)
    assert state.problem() is None
    state.accept(2)

    with pytest.raises(IntegrityError, match="is generation 1, generation 2 is on record"):
        state.accept(1)
    state.file.write_bytes(old)
    problem = state.problem()
    assert problem is not None
    assert "is generation 1, generation 2 is on record" in problem
    with pytest.raises(IntegrityError, match="is generation 1, generation 2 is on record"):
        _value(vault)
    assert state.file.read_bytes() == old  # refused, never sealed over
    assert not workspace.needs_recovery(station, PERSONA)
    assert state.on_record() == (2, None)

    state.file.unlink()
    with pytest.raises(IntegrityError, match="is missing, generation 2 is on record"):
        state.check_file()
