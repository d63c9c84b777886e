"""The real Secret Service in tests: one check, one clean-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest

from outreach_station import paths, secret_store
from outreach_station.vault import read_settings

SECRET_SERVICE = "keyring.backends.SecretService.Keyring"


def backend_name() -> str:
    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def require_secret_service() -> None:
    """Skip outside a Secret Service session (`bash setup.sh test` never skips: see conftest)."""
    if backend_name() != SECRET_SERVICE:
        pytest.skip(
            f"needs a real Secret Service (bash setup.sh test); keyring chose {backend_name()}"
        )


@pytest.fixture
def secret_service() -> Iterator[None]:
    """A real Secret Service; the test home's master key is removed from it afterwards."""
    require_secret_service()
    yield
    settings = read_settings(paths.current())
    if settings is not None:
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(secret_store.SERVICE, settings.keyring_entry)


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without any keyring: keyring settles on its `fail` backend."""
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)


def run_in_private_keyring(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in its own D-Bus session with its own unlocked Secret Service.

    STATION_HOME is `tmp_path / "home"`, not created beforehand.

    For tests that lock or break the keyring: the shared test keyring, once
    locked, cannot be unlocked again without a prompt.
    """
    if shutil.which("dbus-run-session") is None or shutil.which("gnome-keyring-daemon") is None:
        pytest.skip("needs dbus-run-session and gnome-keyring-daemon")
    for name in ("h", "run"):
        (tmp_path / name).mkdir(mode=0o700, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "h"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "STATION_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    shell = (
        'eval "$(gnome-keyring-daemon --unlock --components=secrets)"; '
        "export GNOME_KEYRING_CONTROL; "
        f'exec "{sys.executable}" -c "$0"'
    )
    return subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", shell, code],
        input="test-keyring-password\n",  # the keyring's own password, on stdin
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
