"""Careless-user drills on sealing: a full disk while resealing, the keyring locked mid-session.

Real keyring, real file systems: the full disk is a small tmpfs mounted as
STATION_HOME in a private mount namespace (`unshare`), seen by nobody else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.keyrings import run_in_private_keyring

PERSONA = "abcdefghijkl"
REPO = Path(__file__).resolve().parents[2]

FULL_DISK = textwrap.dedent(
    """
    import json, os, sys
    from outreach_station import paths, workspace
    from outreach_station.errors import StationError
    from outreach_station.storage.sqlite import SqliteStore as Registry
    from outreach_station.vault import Vault, peek_generation

    persona = sys.argv[1]
    station = paths.current()
    vault = Vault.init(station)
    out = {}
    with workspace.open_workspace(station, persona, vault, notify=lambda m: None) as ws:
        (ws.profile / "value.txt").write_text("first")
    sealed = workspace.sealed_file(station, persona)
    out["first_bytes"] = sealed.read_bytes().hex()
    try:
        with workspace.open_workspace(station, persona, vault, notify=lambda m: None) as ws:
            (ws.profile / "value.txt").write_text("second")
            # More than the disk holds once sealed next to the previous generation.
            (ws.profile / "download.bin").write_bytes(os.urandom(3 * 1024 * 1024))
        out["error"] = None
    except StationError as exc:
        out["error"] = exc.message
        out["exit_code"] = int(exc.exit_code)
    out["after_bytes"] = sealed.read_bytes().hex()
    out["new_left"] = sealed.with_name(sealed.name + ".new").exists()
    ws_dir = workspace.workspace_dir(station, persona)
    out["kept"] = (ws_dir / "profile" / "value.txt").read_text()
    out["needs_recovery"] = workspace.needs_recovery(station, persona)
    with Registry(station.registry) as reg:
        out["record"] = list(reg.sealed_generation(persona))
    # Room again (the person deletes a download); the next open recovers the session.
    (ws_dir / "profile" / "download.bin").unlink()
    notes = []
    with workspace.open_workspace(station, persona, vault, notify=notes.append) as ws:
        out["reopened"] = (ws.profile / "value.txt").read_text()
    out["notes"] = notes
    out["generation"] = peek_generation(sealed, persona)
    with Registry(station.registry) as reg:
        out["record_after"] = list(reg.sealed_generation(persona))
    print(json.dumps(out))
    """
)


def test_a_full_disk_while_resealing_keeps_the_last_generation_and_the_session(
    secret_service: None, tmp_path: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private tmpfs")
    home = tmp_path / "small-home"
    home.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    env = dict(os.environ, STATION_HOME=str(home), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount -t tmpfs -o size=2m,mode=0700 tmpfs "$0" && exec "$@"',
            str(home),
            sys.executable,
            str(script),
            PERSONA,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["exit_code"] == 1
    assert f"persona {PERSONA} could not be sealed" in out["error"]
    assert "No space left on device" in out["error"]
    assert "the previous sealed profile is unchanged" in out["error"]
    assert "its open profile is kept in" in out["error"]
    assert "\n" not in out["error"]
    assert "Traceback" not in result.stderr
    assert out["after_bytes"] == out["first_bytes"]  # the previous generation stands
    assert out["new_left"] is False
    assert out["kept"] == "second"  # the session's plaintext waits for recovery
    assert out["needs_recovery"] is True
    assert out["record"] == [1, None]
    assert out["reopened"] == "second"
    assert any("recovered" in note for note in out["notes"])
    assert out["generation"] == 3
    assert out["record_after"] == [3, None]


LOCKED_MID_SESSION = textwrap.dedent(
    """
    import json, sys
    import secretstorage
    from outreach_station import paths, workspace
    from outreach_station.errors import StationError
    from outreach_station.storage.sqlite import SqliteStore as Registry
    from outreach_station.vault import Vault

    persona = sys.argv[1]
    station = paths.current()
    vault = Vault.init(station)
    out = {}
    with workspace.open_workspace(station, persona, vault, notify=lambda m: None) as ws:
        (ws.profile / "value.txt").write_text("first")
    with workspace.open_workspace(station, persona, vault, notify=lambda m: None) as ws:
        (ws.profile / "value.txt").write_text("second")
        connection = secretstorage.dbus_init()
        if sys.argv[2] == "locked":
            for collection in secretstorage.get_all_collections(connection):
                collection.lock()
        else:
            # The keyring daemon of this private session goes away (crashed, logged out).
            import os, signal, time
            from jeepney import DBusAddress, new_method_call
            bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                              interface="org.freedesktop.DBus")
            reply = connection.send_and_get_reply(new_method_call(
                bus, "GetConnectionUnixProcessID", "s", ("org.freedesktop.secrets",)))
            os.kill(reply.body[0], signal.SIGKILL)
            time.sleep(0.5)
        try:
            Vault.open(station).data_key(persona)
            out["locked"] = False
        except StationError as exc:
            out["locked"] = "keyring" in exc.message
    out["needs_recovery"] = workspace.needs_recovery(station, persona)
    with Registry(station.registry) as reg:
        out["record"] = list(reg.sealed_generation(persona))
    # The data key is still in memory here: the sealed file holds the second session.
    with workspace.open_workspace(station, persona, vault, notify=lambda m: None) as ws:
        out["reopened"] = (ws.profile / "value.txt").read_text()
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("what", ["locked", "gone"])
def test_the_keyring_locked_or_gone_mid_session_still_reseals(tmp_path: Path, what: str) -> None:
    # Locking the shared test keyring would break the other tests, and it cannot
    # be unlocked again without a prompt: a private keyring session.
    if shutil.which("dbus-run-session") is None or shutil.which("gnome-keyring-daemon") is None:
        pytest.skip("needs dbus-run-session and gnome-keyring-daemon")
    for name in ("h", "run", "home"):
        (tmp_path / name).mkdir(mode=0o700)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "h"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "STATION_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO),
    }
    script = tmp_path / "locked.py"
    script.write_text(LOCKED_MID_SESSION)
    done = run_in_private_keyring(
        [sys.executable, str(script), PERSONA, what],
        password="test-keyring-password",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["locked"] is True  # the keyring really was unusable mid-session
    assert out["needs_recovery"] is False
    assert out["record"] == [2, None]
    assert out["reopened"] == "second"
