"""The real Secret Service in tests: one check, one clean-up."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest

from outreach_station import paths
from outreach_station.vault import backends as vault_backends
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


def _entries_of_the_test_home() -> list[tuple[str, str]]:
    """What the test home can have put into the keyring: its master key, its personas' kits."""
    from outreach_station import kit
    from outreach_station.errors import StationError
    from outreach_station.registry import Registry

    station = paths.current()
    entries: list[tuple[str, str]] = []
    settings = read_settings(station)
    if settings is not None:
        entries.append((vault_backends.SERVICE, settings.keyring_entry))
    if station.registry.is_file():
        with contextlib.suppress(StationError), Registry(station.registry) as reg:
            for persona in reg.list():
                entries.extend(
                    (kit.KEYRING_SERVICE, kit.secret_entry(persona.id, field))
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
