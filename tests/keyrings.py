"""The real Secret Service in tests: one check, one clean-up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
