"""The real Secret Service in tests: one check, one clean-up."""

from __future__ import annotations

import contextlib
import os
import shlex
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


def run_in_private_keyring(
    argv: list[str],
    *,
    password: str,
    env: dict[str, str],
    data_home: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in its own D-Bus session with a gnome-keyring unlocked by `password`.

    For tests that lock or lose the keyring on purpose: the shared test keyring
    could not be unlocked again without a prompt. `data_home` keeps the new
    keyring's files there (XDG_DATA_HOME) instead of below the child's HOME.
    """
    where = f"XDG_DATA_HOME={shlex.quote(str(data_home))} " if data_home is not None else ""
    shell = (
        f'eval "$({where}gnome-keyring-daemon --unlock --components=secrets)"; '
        'export GNOME_KEYRING_CONTROL; exec "$@"'
    )
    return subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", shell, "keyring-session", *argv],
        input=password + "\n",  # the keyring's own password, on stdin
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def run_code_in_private_keyring(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` with `run_in_private_keyring`, STATION_HOME at `tmp_path / "home"`.

    The home is not created beforehand; HOME and XDG_RUNTIME_DIR are private
    directories below `tmp_path`.
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
    return run_in_private_keyring(
        [sys.executable, "-c", code], password="test-keyring-password", env=env
    )


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without any keyring: keyring settles on its `fail` backend."""
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)


def _entries_of_the_test_home() -> list[tuple[str, str]]:
    """What the test home can have put into the keyring: its master key, its personas' kits."""
    from outreach_station import kit
    from outreach_station.errors import StationError
    from outreach_station.storage import open_store

    station = paths.current()
    entries: list[tuple[str, str]] = []
    settings = read_settings(station)
    if settings is not None:
        entries.append((secret_store.SERVICE, settings.keyring_entry))
    if station.registry.is_file():
        with contextlib.suppress(StationError), open_store(station) as reg:
            for persona in reg.list():
                entries.extend(
                    (secret_store.SERVICE, kit.secret_entry(persona.id, field))
                    for field in kit.SECRET_FIELDS
                )
    return entries


@pytest.fixture
def secret_service(isolation: Path) -> Iterator[None]:
    """A real Secret Service; what the test home put into it is removed afterwards.

    That is the vault's master key and the kit secrets of every persona in the
    test home's registry, so a test need not list what it stored.
    """
    require_secret_service()
    yield
    for service, entry in _entries_of_the_test_home():
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(service, entry)
