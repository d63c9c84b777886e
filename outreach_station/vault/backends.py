"""The OS keyring as the home of the master key, and the refusal of weak keyrings.

`keyring` picks a backend by itself; on a machine without a Secret Service it
may settle on a plaintext file (keyrings.alt) or on nothing at all. A master
key in a plaintext file would make encryption at rest pointless, so only
backends the operating system protects are accepted, and everything else is
refused with a message that says what to install or unlock.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from outreach_station.errors import EnvironmentProblem, IntegrityError, SecurityError

SERVICE = "outreach-station"
MASTER_KEY_BYTES = 32

# Backends whose secrets the OS keeps encrypted and bound to the user's login.
_SECURE_BACKENDS = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KWallet 4",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Locker",
}

INSTALL_HINT = (
    "On Debian or Ubuntu install a Secret Service: `sudo apt install gnome-keyring dbus-x11`, "
    "then use station inside a desktop session (which unlocks the login keyring), or headless "
    "inside `dbus-run-session` after unlocking with "
    "`gnome-keyring-daemon --unlock --components=secrets` (the password is read from stdin). "
    "Where no keyring service can run, initialise the vault in passphrase mode instead."
)

UNLOCK_HINT = (
    "Unlock it and retry: log in to the desktop session (that unlocks the login keyring), "
    "unlock it in Seahorse ('Passwords and Keys'), or headless run "
    "`gnome-keyring-daemon --replace --unlock --components=secrets` and type the keyring "
    "password on stdin."
)


@dataclass(frozen=True)
class KeyringBackend:
    """The keyring backend station will use, already checked to be acceptable."""

    backend: Any
    description: str


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _judge(backend: object) -> str:
    """The description of one acceptable backend; raises for the others."""
    name = _qualname(backend)
    if name == "keyring.backends.fail.Keyring":
        raise EnvironmentProblem(f"no usable OS keyring was found. {INSTALL_HINT}")
    if name == "keyring.backends.null.Keyring":
        raise SecurityError(
            "the keyring backend is the null keyring (keyring disabled, perhaps by "
            f"PYTHON_KEYRING_BACKEND or keyring's config); it cannot hold the master key. "
            f"{INSTALL_HINT}"
        )
    if name not in _SECURE_BACKENDS:
        raise SecurityError(
            f"refusing the keyring backend {name}: it is not a keyring the operating system "
            "protects (for example a plaintext or self-encrypted file), so the master key "
            f"would sit beside the data it protects. {INSTALL_HINT}"
        )
    return f"{_SECURE_BACKENDS[name]} ({name})"


def check_backend() -> KeyringBackend:
    """The active keyring backend if it is an OS-protected one, else a clear refusal."""
    import keyring

    try:
        backend = keyring.get_keyring()
    except Exception as exc:
        # An unknown PYTHON_KEYRING_BACKEND or a broken keyringrc lands here.
        raise EnvironmentProblem(
            f"the keyring backend could not be loaded ({type(exc).__name__}: {exc}). {INSTALL_HINT}"
        ) from None
    if _qualname(backend) == "keyring.backends.chainer.ChainerBackend":
        members = list(getattr(backend, "backends", []))
        if not members:
            raise EnvironmentProblem(f"keyring found no usable backend to chain. {INSTALL_HINT}")
        # The chainer writes to the first member that accepts and reads from
        # any, so one weak member is enough to leak the key.
        described = [_judge(member) for member in members]
        return KeyringBackend(backend=backend, description="chain of " + ", ".join(described))
    return KeyringBackend(backend=backend, description=_judge(backend))


def _keyring_failure(action: str, exc: Exception) -> EnvironmentProblem:
    from keyring.errors import KeyringLocked

    if isinstance(exc, KeyringLocked):
        return EnvironmentProblem(
            f"the OS keyring is locked and could not be unlocked. {UNLOCK_HINT}"
        )
    return EnvironmentProblem(
        f"the OS keyring failed while {action} ({type(exc).__name__}). "
        f"Is the keyring service running and unlocked? {INSTALL_HINT}"
    )


def read_master_key(checked: KeyringBackend, entry: str) -> bytes | None:
    """The master key stored under `entry`, or None if there is none.

    Also the probe that a locked keyring fails before anything is created.
    """
    try:
        stored = checked.backend.get_password(SERVICE, entry)
    except Exception as exc:
        raise _keyring_failure("reading the master key", exc) from None
    if stored is None:
        return None
    try:
        key = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise IntegrityError(
            f"the master key in the OS keyring (service {SERVICE!r}, entry {entry!r}) is "
            "malformed; it was changed outside station"
        )
    return key


def store_master_key(checked: KeyringBackend, entry: str, key: bytes) -> None:
    """Store `key` under `entry` and read it back, so a silently dropping keyring is caught."""
    encoded = base64.b64encode(key).decode("ascii")
    try:
        checked.backend.set_password(SERVICE, entry, encoded)
    except Exception as exc:
        raise _keyring_failure("storing the master key", exc) from None
    if read_master_key(checked, entry) != key:
        raise EnvironmentProblem(
            f"the OS keyring ({checked.description}) accepted the master key but did not "
            "return it; it cannot be used"
        )
