"""The real Secret Service in tests: one check, one clean-up."""

from __future__ import annotations

import contextlib
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
