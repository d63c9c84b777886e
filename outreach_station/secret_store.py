"""The OS keyring: the one place station reads, writes and deletes its secrets.

Every secret station keeps (the vault's master key, the audit anchor's key,
kit secrets, proxy passwords) is an entry of one service, `SERVICE`, under
entry names its owner chooses (`master-key/<station id>`, `audit-anchor/...`,
`kit:<persona>:<field>`, `proxy:<persona>`); the names must never change, or
existing keyrings would seem empty.

`keyring` picks a backend by itself; on a machine without a Secret Service it
may settle on a plaintext file (keyrings.alt) or on nothing at all. A key in
a plaintext file would make encryption at rest pointless, so only backends
the operating system protects are accepted (`check_backend`), and everything
else is refused with a message that says what to install or unlock. Keyring
errors become `EnvironmentProblem`s whose text never includes the backend's
own message: a backend might echo what it was given.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

from outreach_station.errors import EnvironmentProblem, IntegrityError, SecurityError
from outreach_station.i18n import N_, _

SERVICE: Final = "outreach-station"
KEY_BYTES: Final = 32

# Backends whose secrets the OS keeps encrypted and bound to the user's login.
_SECURE_BACKENDS: Final = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KWallet 4",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Locker",
}

INSTALL_HINT: Final = N_(
    "On Debian or Ubuntu install a Secret Service: `sudo apt install gnome-keyring dbus-x11`, "
    "then use station inside a desktop session (which unlocks the login keyring), or headless "
    "inside `dbus-run-session` after unlocking with "
    "`gnome-keyring-daemon --unlock --components=secrets` (the password is read from stdin). "
    "Where no keyring service can run, initialise the vault in passphrase mode instead."
)

UNLOCK_HINT: Final = N_(
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
        raise EnvironmentProblem(
            _("no usable OS keyring was found. {hint}").format(hint=_(INSTALL_HINT))
        )
    if name == "keyring.backends.null.Keyring":
        raise SecurityError(
            _(
                "the keyring backend is the null keyring (keyring disabled, perhaps by "
                "PYTHON_KEYRING_BACKEND or keyring's config); it cannot hold the master key. "
                "{hint}"
            ).format(hint=_(INSTALL_HINT))
        )
    if name not in _SECURE_BACKENDS:
        raise SecurityError(
            _(
                "refusing the keyring backend {name}: it is not a keyring the operating system "
                "protects (for example a plaintext or self-encrypted file), so the master key "
                "would sit beside the data it protects. {hint}"
            ).format(name=name, hint=_(INSTALL_HINT))
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
            _("the keyring backend could not be loaded ({error}: {exc}). {hint}").format(
                error=type(exc).__name__, exc=exc, hint=_(INSTALL_HINT)
            )
        ) from None
    if _qualname(backend) == "keyring.backends.chainer.ChainerBackend":
        members = list(getattr(backend, "backends", []))
        if not members:
            raise EnvironmentProblem(
                _("keyring found no usable backend to chain. {hint}").format(hint=_(INSTALL_HINT))
            )
        # The chainer writes to the first member that accepts and reads from
        # any, so one weak member is enough to leak the key.
        described = [_judge(member) for member in members]
        return KeyringBackend(backend=backend, description="chain of " + ", ".join(described))
    return KeyringBackend(backend=backend, description=_judge(backend))


def failure(action: str, exc: Exception) -> EnvironmentProblem:
    """The error a person sees when the keyring failed while doing `action`."""
    from keyring.errors import KeyringLocked

    if isinstance(exc, KeyringLocked):
        return EnvironmentProblem(
            _("the OS keyring is locked and could not be unlocked. {hint}").format(
                hint=_(UNLOCK_HINT)
            )
        )
    # The exception text is left out: a backend might echo what it was given.
    return EnvironmentProblem(
        _(
            "the OS keyring failed while {action} ({error}). "
            "Is the keyring service running and unlocked? {hint}"
        ).format(action=action, error=type(exc).__name__, hint=_(INSTALL_HINT))
    )


def read(entry: str, *, what: str, backend: KeyringBackend | None = None) -> str | None:
    """The secret stored under `entry`, or None; `what` names it in errors ("proxy password")."""
    checked = backend or check_backend()
    try:
        value = checked.backend.get_password(SERVICE, entry)
    except Exception as exc:
        raise failure(_("reading the {what}").format(what=_(what)), exc) from None
    return None if value is None else str(value)


def write(entry: str, value: str, *, what: str, backend: KeyringBackend | None = None) -> None:
    """Store `value` under `entry` and read it back, so a silently dropping keyring is caught."""
    checked = backend or check_backend()
    try:
        checked.backend.set_password(SERVICE, entry, value)
    except Exception as exc:
        raise failure(_("storing the {what}").format(what=_(what)), exc) from None
    if read(entry, what=what, backend=checked) != value:
        raise EnvironmentProblem(
            _(
                "the OS keyring ({description}) accepted the {what} but did not "
                "return it; it cannot be used"
            ).format(description=checked.description, what=_(what))
        )


def delete(entry: str, *, what: str, backend: KeyringBackend | None = None) -> bool:
    """Remove `entry`; False if there was none. Checked: an entry that stays is an error."""
    from keyring.errors import PasswordDeleteError

    checked = backend or check_backend()
    try:
        checked.backend.delete_password(SERVICE, entry)
    except PasswordDeleteError:
        return False
    except Exception as exc:
        raise failure(_("deleting the {what}").format(what=_(what)), exc) from None
    if read(entry, what=what, backend=checked) is not None:
        raise EnvironmentProblem(_("the OS keyring did not delete the {what}").format(what=_(what)))
    return True


def probe(backend: KeyringBackend, entry: str) -> str | None:
    """None if reading `entry` works (the keyring is unlocked), else the keyring's error name."""
    try:
        backend.backend.get_password(SERVICE, entry)
    except Exception as exc:  # any backend failure is the answer itself
        return type(exc).__name__
    return None


def read_key(entry: str, *, what: str, backend: KeyringBackend | None = None) -> bytes | None:
    """The `KEY_BYTES`-byte key stored (base64) under `entry`, or None if there is none.

    Also the probe that a locked keyring fails before anything is created.
    """
    stored = read(entry, what=what, backend=backend)
    if stored is None:
        return None
    try:
        key = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise IntegrityError(
            _(
                "the {what} in the OS keyring (service {service!r}, entry {entry!r}) is "
                "malformed; it was changed outside station"
            ).format(what=_(what), service=SERVICE, entry=entry)
        )
    return key


def store_key(entry: str, key: bytes, *, what: str, backend: KeyringBackend | None = None) -> None:
    """Store a `KEY_BYTES`-byte key under `entry` (base64), read back to check it stuck."""
    write(entry, base64.b64encode(key).decode("ascii"), what=what, backend=backend)
