"""Key management: one master key per station home, one data key per persona.

The master key never touches the disk in the clear: it lives in the OS
keyring (entry `master-key/<station id>` of service "outreach-station"), or,
in the explicitly chosen passphrase mode, wrapped by a scrypt-derived key in
`master-key.scrypt`. Each persona's data key exists on disk only wrapped by
the master key, so destroying the wrapped file (`shred`) makes that persona's
sealed profile unreadable for good without touching anyone else's.

The station id in the keyring entry name keeps several station homes of one
user (tests, a second installation) from sharing or overwriting one key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from outreach_station import paths as station_paths
from outreach_station import secret_store
from outreach_station.errors import (
    ConfigError,
    IntegrityError,
    NotFoundError,
    SecurityError,
    StateError,
    UsageError,
)
from outreach_station.fsutil import shred_file, write_atomic, write_exclusive
from outreach_station.i18n import _
from outreach_station.ids import validate_persona_id
from outreach_station.paths import StationPaths
from outreach_station.vault import passphrase
from outreach_station.vault.passphrase import ScryptParams

SETTINGS_FILE = "vault.json"
MASTER_FILE = "master-key.scrypt"
WRAPPED_KEY_FILE = "datakey.wrapped"
# The workspace names sealed profiles `<something>.sealed` inside the persona's
# directory; the vault looks for that suffix when deciding whether a missing
# master key would orphan data.
SEALED_SUFFIX = ".sealed"

DATA_KEY_BYTES = 32
_WRAP_MAGIC = b"\x89OSDKEY\n"
_WRAP_VERSION = b"\x01"
_WRAP_NONCE_BYTES = 12
_WRAPPED_BYTES = len(_WRAP_MAGIC) + 1 + _WRAP_NONCE_BYTES + DATA_KEY_BYTES + 16
_SETTINGS_FORMAT = 1


class VaultMode(StrEnum):
    """Where the master key lives."""

    KEYRING = "keyring"
    PASSPHRASE = "passphrase"  # noqa: S105 - a mode name, not a secret


class PassphrasePurpose(StrEnum):
    """Why the vault asks for the passphrase; CREATE should be asked twice by the caller."""

    CREATE = "create"
    UNLOCK = "unlock"


PassphraseCallback = Callable[[PassphrasePurpose], str]


@dataclass(frozen=True)
class VaultSettings:
    """The recorded choice of mode, in `<STATION_HOME>/vault.json`; holds no secret."""

    mode: VaultMode
    station_id: str

    @property
    def keyring_entry(self) -> str:
        return f"master-key/{self.station_id}"


@dataclass(frozen=True)
class KeyMaterial:
    """What exists on disk that a master key must be able to open."""

    wrapped_keys: int
    sealed_files: int
    master_file: bool

    @property
    def any(self) -> bool:
        """Whether a new master key would orphan data.

        A lone master key file is not counted: it is what a crash between
        writing it and recording the settings leaves, and init reopens it.
        """
        return bool(self.wrapped_keys or self.sealed_files)

    def describe(self) -> str:
        return _("{wrapped_keys} wrapped data key(s) and {sealed_files} sealed profile(s)").format(
            wrapped_keys=self.wrapped_keys, sealed_files=self.sealed_files
        )


def read_settings(paths: StationPaths) -> VaultSettings | None:
    """The recorded vault settings, None before `init`."""
    file = paths.home / SETTINGS_FILE
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("format") != _SETTINGS_FORMAT:
            raise ValueError("format")
        mode = VaultMode(data["mode"])
        station_id = data["station_id"]
        if not isinstance(station_id, str) or not re.fullmatch(r"[0-9a-f]{16}", station_id):
            raise ValueError("station_id")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            _(
                "{file}: malformed vault settings (field {exc}); expected "
                '{{"format": 1, "mode": "keyring"|"passphrase", "station_id": <16 '
                "hex digits>}}"
            ).format(file=file, exc=exc)
        ) from None
    return VaultSettings(mode=mode, station_id=station_id)


def _write_settings(paths: StationPaths, settings: VaultSettings) -> None:
    body = {
        "format": _SETTINGS_FORMAT,
        "mode": str(settings.mode),
        "station_id": settings.station_id,
    }
    write_atomic(paths.home / SETTINGS_FILE, (json.dumps(body, indent=2) + "\n").encode())


def existing_key_material(paths: StationPaths) -> KeyMaterial:
    """Count what a new master key would orphan."""
    wrapped = sealed = 0
    if paths.personas.is_dir():
        for persona_dir in paths.personas.iterdir():
            if not persona_dir.is_dir():
                continue
            for entry in persona_dir.iterdir():
                if entry.name == WRAPPED_KEY_FILE:
                    wrapped += 1
                elif entry.name.endswith(SEALED_SUFFIX):
                    sealed += 1
    return KeyMaterial(
        wrapped_keys=wrapped, sealed_files=sealed, master_file=(paths.home / MASTER_FILE).exists()
    )


def _missing_master(where: str, material: KeyMaterial) -> StateError:
    return StateError(
        _(
            "the master key is missing from {where}, but {material} exist that "
            "only it can open; refusing to create a new master key, which would "
            "make them unreadable for good. Restore the keyring or key file "
            "from a backup; to deliberately start over, remove the station "
            "home's personas directory and vault.json first"
        ).format(where=where, material=material.describe())
    )


def _ask(callback: PassphraseCallback | None, purpose: PassphrasePurpose) -> str:
    if callback is None:
        raise UsageError(
            _("this station home uses passphrase mode, but no passphrase prompt was given")
        )
    return callback(purpose)


class Vault:
    """An opened vault: holds the master key in memory; create with `init` or `open`."""

    def __init__(
        self, paths: StationPaths, settings: VaultSettings, master_key: bytes, backend: str
    ) -> None:
        if len(master_key) != secret_store.KEY_BYTES:
            raise ValueError("a master key has 32 bytes")
        self._paths = paths
        self._settings = settings
        self._master_key = master_key
        self._backend = backend

    def __repr__(self) -> str:
        # Never the key: reprs end up in tracebacks and logs.
        return f"Vault(home={str(self._paths.home)!r}, mode={self._settings.mode.value!r})"

    # -- opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        paths: StationPaths | None = None,
        *,
        mode: VaultMode = VaultMode.KEYRING,
        allow_passphrase: bool = True,
        passphrase_prompt: PassphraseCallback | None = None,
        scrypt_params: ScryptParams | None = None,
    ) -> Vault:
        """Open the vault, creating the master key on first use.

        Idempotent: an initialised home is opened as it is (asking for a
        different mode is a `StateError`). Refuses to create a master key
        while wrapped data keys or sealed profiles exist that it could not
        open. Nothing is written unless the keyring (or passphrase) works.
        """
        paths = paths or station_paths.current()
        if mode is VaultMode.PASSPHRASE and not allow_passphrase:
            raise SecurityError(_("passphrase mode is not allowed by policy; use the OS keyring"))
        from outreach_station.storage.locks import first_use_lock

        with first_use_lock(paths):
            settings, master, description = cls._settle(
                paths, mode, passphrase_prompt=passphrase_prompt, scrypt_params=scrypt_params
            )
        return cls(paths, settings, master, description)

    @staticmethod
    def _settle(
        paths: StationPaths,
        mode: VaultMode,
        *,
        passphrase_prompt: PassphraseCallback | None,
        scrypt_params: ScryptParams | None,
    ) -> tuple[VaultSettings, bytes, str]:
        """The settings, master key and its description; made on first use (under the lock)."""
        settings = read_settings(paths)
        if settings is not None and settings.mode is not mode:
            raise StateError(
                _("the vault of {home} is already initialised in {mode} mode").format(
                    home=paths.home, mode=settings.mode
                )
            )
        material = existing_key_material(paths)
        if settings is None and material.any:
            raise StateError(
                _(
                    "{settings} is missing but {material} exist; refusing to create a "
                    "new master key that would orphan them. Restore {SETTINGS_FILE} "
                    "from a backup"
                ).format(
                    settings=paths.home / SETTINGS_FILE,
                    material=material.describe(),
                    SETTINGS_FILE=SETTINGS_FILE,
                )
            )
        settings = settings or VaultSettings(mode=mode, station_id=secrets.token_hex(8))
        if mode is VaultMode.KEYRING:
            checked = secret_store.check_backend()
            master = secret_store.read_key(
                settings.keyring_entry, what="master key", backend=checked
            )
            if master is None:
                if material.any:
                    raise _missing_master(
                        _("the OS keyring ({description})").format(description=checked.description),
                        material,
                    )
                master = secrets.token_bytes(secret_store.KEY_BYTES)
                secret_store.store_key(
                    settings.keyring_entry, master, what="master key", backend=checked
                )
            description = checked.description
        else:
            file = paths.home / MASTER_FILE
            if file.exists():
                master = passphrase.open_master_file(
                    file, _ask(passphrase_prompt, PassphrasePurpose.UNLOCK)
                )
            else:
                if material.any:
                    raise _missing_master(str(file), material)
                master = passphrase.create_master_file(
                    file,
                    _ask(passphrase_prompt, PassphrasePurpose.CREATE),
                    scrypt_params or ScryptParams(),
                )
            description = _passphrase_description(file)
        # Recorded last: a crash before this leaves at most an unused keyring
        # entry or key file, never settings that point at no key.
        if read_settings(paths) is None:
            _write_settings(paths, settings)
        return settings, master, description

    @classmethod
    def open(
        cls,
        paths: StationPaths | None = None,
        *,
        allow_passphrase: bool = True,
        passphrase_prompt: PassphraseCallback | None = None,
    ) -> Vault:
        """Open an initialised vault; never creates a key."""
        paths = paths or station_paths.current()
        settings = read_settings(paths)
        material = existing_key_material(paths)
        if settings is None:
            if material.any:
                raise StateError(
                    _(
                        "{settings} is missing but {material} exist. Restore "
                        "{SETTINGS_FILE} from a backup"
                    ).format(
                        settings=paths.home / SETTINGS_FILE,
                        material=material.describe(),
                        SETTINGS_FILE=SETTINGS_FILE,
                    )
                )
            raise StateError(
                _("the vault of {home} is not initialised; run `station init`").format(
                    home=paths.home
                )
            )
        if settings.mode is VaultMode.KEYRING:
            checked = secret_store.check_backend()
            master = secret_store.read_key(
                settings.keyring_entry, what="master key", backend=checked
            )
            if master is None:
                raise _missing_master(
                    _("the OS keyring ({description})").format(description=checked.description),
                    material,
                )
            return cls(paths, settings, master, checked.description)
        if not allow_passphrase:
            raise SecurityError(
                _("the vault of {home} uses passphrase mode, which policy does not allow").format(
                    home=paths.home
                )
            )
        file = paths.home / MASTER_FILE
        if not file.exists():
            raise _missing_master(str(file), material)
        master = passphrase.open_master_file(
            file, _ask(passphrase_prompt, PassphrasePurpose.UNLOCK)
        )
        return cls(paths, settings, master, _passphrase_description(file))

    # -- facts -----------------------------------------------------------------

    @property
    def paths(self) -> StationPaths:
        return self._paths

    @property
    def settings(self) -> VaultSettings:
        return self._settings

    def backend_description(self) -> str:
        """Where the master key lives, in words, for `doctor` and `status`."""
        return self._backend

    def wrapped_key_path(self, persona_id: str) -> Path:
        return self._paths.persona_dir(validate_persona_id(persona_id)) / WRAPPED_KEY_FILE

    def has_data_key(self, persona_id: str) -> bool:
        return self.wrapped_key_path(persona_id).exists()

    # -- data keys -------------------------------------------------------------

    def _associated_data(self, persona_id: str) -> bytes:
        return _WRAP_MAGIC + _WRAP_VERSION + persona_id.encode("utf-8")

    def _wrap(self, persona_id: str, data_key: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # A random nonce is safe here: a master key wraps a few keys, far
        # from the 2**32 messages where random GCM nonces start to collide.
        nonce = secrets.token_bytes(_WRAP_NONCE_BYTES)
        sealed = AESGCM(self._master_key).encrypt(
            nonce, data_key, self._associated_data(persona_id)
        )
        return _WRAP_MAGIC + _WRAP_VERSION + nonce + sealed

    def _unwrap(self, persona_id: str, blob: bytes, file: Path) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        head = len(_WRAP_MAGIC) + 1
        if len(blob) != _WRAPPED_BYTES or blob[:head] != _WRAP_MAGIC + _WRAP_VERSION:
            raise IntegrityError(
                _(
                    "the data key of persona {persona_id!r} ({file}) is damaged or not a key file"
                ).format(persona_id=persona_id, file=file)
            )
        nonce = blob[head : head + _WRAP_NONCE_BYTES]
        try:
            return AESGCM(self._master_key).decrypt(
                nonce, blob[head + _WRAP_NONCE_BYTES :], self._associated_data(persona_id)
            )
        except InvalidTag:
            raise IntegrityError(
                _(
                    "the data key of persona {persona_id!r} ({file}) failed "
                    "authentication: it belongs to another persona or station home, was "
                    "altered, or the master key is not the one it was wrapped with"
                ).format(persona_id=persona_id, file=file)
            ) from None

    def data_key(self, persona_id: str) -> bytes:
        """The persona's data key; `NotFoundError` if it has none (never created or shredded)."""
        file = self.wrapped_key_path(persona_id)
        try:
            blob = file.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                _(
                    "persona {persona_id!r} has no data key ({file}); it was never "
                    "created or was shredded"
                ).format(persona_id=persona_id, file=file)
            ) from None
        return self._unwrap(persona_id, blob, file)

    def ensure_data_key(self, persona_id: str) -> bytes:
        """The persona's data key, created (random, 256 bits) if it has none yet."""
        file = self.wrapped_key_path(persona_id)
        if file.exists():
            return self.data_key(persona_id)
        data_key = secrets.token_bytes(DATA_KEY_BYTES)
        if write_exclusive(file, self._wrap(persona_id, data_key)):
            return data_key
        # Someone else created it between our check and our write: theirs counts.
        return self.data_key(persona_id)

    def shred(self, persona_id: str) -> bool:
        """Destroy the persona's wrapped data key; its sealed profile is unreadable from then on.

        Returns False if there was no key. The sealed file itself is left to
        its owner (the workspace) to delete.
        """
        return shred_file(self.wrapped_key_path(persona_id))


def _passphrase_description(file: Path) -> str:
    params = passphrase.read_params(file)
    return _("passphrase-wrapped key file {file} (scrypt n=2^{log2_n}, r={r}, p={p})").format(
        file=file, log2_n=params.log2_n, r=params.r, p=params.p
    )
