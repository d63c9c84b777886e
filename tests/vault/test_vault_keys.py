"""Key management: the keyring-held master key, wrapped data keys, passphrase mode, refusals."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import pytest
from keyring.backends.chainer import ChainerBackend

from outreach_station import secret_store
from outreach_station.errors import (
    ConfigError,
    EnvironmentProblem,
    IntegrityError,
    NotFoundError,
    SecurityError,
    StateError,
    UsageError,
)
from outreach_station.paths import StationPaths
from outreach_station.vault import (
    PassphraseCallback,
    PassphrasePurpose,
    Vault,
    VaultMode,
    read_settings,
    seal_dir,
    unseal_file,
)
from outreach_station.vault import passphrase as passphrase_mod
from tests.keyrings import run_code_in_private_keyring

SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
PASSPHRASE = "correct horse battery staple"


def _backend_name(backend: object) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StationPaths:
    home = tmp_path / "home"
    monkeypatch.setenv("STATION_HOME", str(home))
    return StationPaths(home=home)


@pytest.fixture
def fresh_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make keyring choose its backend again (it caches the first choice per process)."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)


def _prompt(answer: str, asked: list[PassphrasePurpose] | None = None) -> PassphraseCallback:
    def prompt(purpose: PassphrasePurpose) -> str:
        if asked is not None:
            asked.append(purpose)
        return answer

    return prompt


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _nothing_created(paths: StationPaths) -> None:
    assert not (paths.home / "vault.json").exists()
    assert not (paths.home / "master-key.scrypt").exists()
    assert not paths.personas.exists()


# -- the OS keyring -----------------------------------------------------------


@pytest.mark.keyring
def test_init_creates_master_key_in_keyring_once(paths: StationPaths, secret_service: None) -> None:
    vault = Vault.init(paths)
    settings = read_settings(paths)
    assert settings is not None and settings.mode is VaultMode.KEYRING
    stored = keyring.get_password(secret_store.SERVICE, settings.keyring_entry)
    assert stored is not None and len(base64.b64decode(stored)) == 32
    assert "Secret Service" in vault.backend_description()
    # Idempotent: a second init opens the same key rather than making another.
    again = Vault.init(paths)
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) == stored
    key = vault.ensure_data_key("aliceaaaaaaa")
    assert again.data_key("aliceaaaaaaa") == key
    assert Vault.open(paths).data_key("aliceaaaaaaa") == key
    # The master key is nowhere on disk, and the repr does not show it.
    raw = base64.b64decode(stored)
    assert raw not in _all_bytes(paths.home) and stored.encode() not in _all_bytes(paths.home)
    assert stored not in repr(vault) and raw.hex() not in repr(vault)


@pytest.mark.keyring
def test_two_station_homes_do_not_share_a_master_key(
    tmp_path: Path, paths: StationPaths, secret_service: None
) -> None:
    other = StationPaths(home=tmp_path / "other-home")
    Vault.init(paths).ensure_data_key("aliceaaaaaaa")
    try:
        Vault.init(other)
        a, b = read_settings(paths), read_settings(other)
        assert a is not None and b is not None
        assert a.keyring_entry != b.keyring_entry
        other_vault = Vault.open(other)
        # Alice's wrapped key copied into the other home does not open there.
        target = other.persona_dir("aliceaaaaaaa")
        target.mkdir(parents=True)
        shutil.copy(
            paths.persona_dir("aliceaaaaaaa") / "datakey.wrapped", target / "datakey.wrapped"
        )
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            other_vault.data_key("aliceaaaaaaa")
    finally:
        settings = read_settings(other)
        if settings is not None:
            keyring.delete_password(secret_store.SERVICE, settings.keyring_entry)


@pytest.mark.keyring
def test_wrapped_data_key_file(paths: StationPaths, secret_service: None) -> None:
    vault = Vault.init(paths)
    key = vault.ensure_data_key("aliceaaaaaaa")
    file = paths.persona_dir("aliceaaaaaaa") / "datakey.wrapped"
    assert len(key) == 32
    assert file.stat().st_mode & 0o777 == 0o600
    assert key not in file.read_bytes()
    assert vault.ensure_data_key("aliceaaaaaaa") == key
    assert vault.ensure_data_key("bobbbbbbbbbb") != key
    with pytest.raises(NotFoundError, match="'carolaaaaaaa'"):
        vault.data_key("carolaaaaaaa")


@pytest.mark.keyring
def test_swapped_wrapped_keys_are_detected(paths: StationPaths, secret_service: None) -> None:
    vault = Vault.init(paths)
    vault.ensure_data_key("aliceaaaaaaa")
    vault.ensure_data_key("bobbbbbbbbbb")
    alice = paths.persona_dir("aliceaaaaaaa") / "datakey.wrapped"
    bob = paths.persona_dir("bobbbbbbbbbb") / "datakey.wrapped"
    a, b = alice.read_bytes(), bob.read_bytes()
    alice.write_bytes(b)
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        vault.data_key("aliceaaaaaaa")
    flipped = bytearray(a)
    flipped[-1] ^= 1
    alice.write_bytes(bytes(flipped))
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        vault.data_key("aliceaaaaaaa")


@pytest.mark.keyring
def test_shred_makes_the_sealed_profile_unreadable(
    tmp_path: Path, paths: StationPaths, secret_service: None
) -> None:
    vault = Vault.init(paths)
    key = vault.ensure_data_key("aliceaaaaaaa")
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Cookies").write_bytes(b"session=secret")
    sealed = paths.persona_dir("aliceaaaaaaa") / "profile.sealed"
    seal_dir(profile, sealed, key, "aliceaaaaaaa")
    wrapped = paths.persona_dir("aliceaaaaaaa") / "datakey.wrapped"
    before = wrapped.read_bytes()
    # A second name for the same inode shows the bytes were overwritten in place.
    witness = tmp_path / "witness"
    os.link(wrapped, witness)
    assert vault.shred("aliceaaaaaaa") is True
    assert not wrapped.exists()
    assert witness.read_bytes() != before and len(witness.read_bytes()) == len(before)
    with pytest.raises(NotFoundError, match="'aliceaaaaaaa'"):
        vault.data_key("aliceaaaaaaa")
    assert vault.shred("aliceaaaaaaa") is False
    # A new key for the persona cannot open the old generation.
    new_key = vault.ensure_data_key("aliceaaaaaaa")
    assert new_key != key
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        unseal_file(sealed, tmp_path / "out", new_key, "aliceaaaaaaa")


@pytest.mark.keyring
def test_missing_master_key_with_data_is_refused(paths: StationPaths, secret_service: None) -> None:
    Vault.init(paths).ensure_data_key("aliceaaaaaaa")
    settings = read_settings(paths)
    assert settings is not None
    keyring.delete_password(secret_store.SERVICE, settings.keyring_entry)
    with pytest.raises(StateError, match="refusing to create a new master key") as caught:
        Vault.open(paths)
    assert "1 wrapped data key" in str(caught.value)
    with pytest.raises(StateError, match="refusing"):
        Vault.init(paths)
    # Nothing was silently recreated.
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) is None
    assert read_settings(paths) == settings


@pytest.mark.keyring
def test_missing_master_key_without_data_is_recreated_by_init(
    paths: StationPaths, secret_service: None
) -> None:
    Vault.init(paths)
    settings = read_settings(paths)
    assert settings is not None
    keyring.delete_password(secret_store.SERVICE, settings.keyring_entry)
    with pytest.raises(StateError, match="missing"):
        Vault.open(paths)  # open never creates
    Vault.init(paths).ensure_data_key("aliceaaaaaaa")
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) is not None


@pytest.mark.keyring
def test_lost_settings_file_with_data_is_refused(paths: StationPaths, secret_service: None) -> None:
    Vault.init(paths).ensure_data_key("aliceaaaaaaa")
    (paths.home / "vault.json").unlink()
    with pytest.raises(StateError, match=r"vault\.json"):
        Vault.init(paths)
    with pytest.raises(StateError, match=r"vault\.json"):
        Vault.open(paths)
    assert not (paths.home / "vault.json").exists()


LOCKED_SCRIPT = r"""
import json, keyring, secretstorage
from outreach_station.errors import StationError
from outreach_station.vault import Vault

connection = secretstorage.dbus_init()
collection = secretstorage.get_default_collection(connection)
collection.lock()
assert collection.is_locked()
try:
    Vault.init()
    result = {"raised": None}
except StationError as exc:
    result = {"raised": type(exc).__name__, "message": str(exc)}
result["backend"] = type(keyring.get_keyring()).__module__
result["items"] = len(list(collection.get_all_items()))
print(json.dumps(result))
"""


@pytest.mark.keyring
def test_locked_keyring_is_a_clear_error_and_creates_nothing(
    tmp_path: Path, paths: StationPaths, secret_service: None
) -> None:
    # Locking the shared test keyring would break the other tests, and it
    # cannot be unlocked again without a prompt: use a private session.
    assert paths.home == tmp_path / "home"
    done = run_code_in_private_keyring(tmp_path, LOCKED_SCRIPT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "keyring.backends.SecretService"
    assert result["raised"] == "EnvironmentProblem"
    assert "locked" in result["message"] and "unlock" in result["message"].lower()
    assert result["items"] == 0
    _nothing_created(paths)


# -- weak keyrings are refused -------------------------------------------------


class PlaintextFileKeyring(keyring.backend.KeyringBackend):
    """Stands in for keyrings.alt's PlaintextKeyring: secrets in a readable file."""

    priority = 1
    stored: dict[tuple[str, str], str]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.stored = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.stored.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.stored[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.stored.pop((service, username), None)


# keyring registers every backend class it sees and would otherwise pick this
# one (or chain it) on its own; tests hand it over explicitly instead.
keyring.backend.KeyringBackend._classes.discard(PlaintextFileKeyring)


@pytest.mark.parametrize(
    ("backend", "error", "words"),
    [
        ("keyring.backends.null.Keyring", SecurityError, "null keyring"),
        ("keyring.backends.fail.Keyring", EnvironmentProblem, "no usable OS keyring"),
        ("no_such_module.Keyring", EnvironmentProblem, "could not be loaded"),
    ],
)
def test_unusable_backends_named_in_the_environment_are_refused(
    paths: StationPaths,
    *,
    fresh_keyring: None,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    error: type[Exception],
    words: str,
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    with pytest.raises(error, match=words) as caught:
        Vault.init(paths)
    assert "gnome-keyring" in str(caught.value)
    _nothing_created(paths)


def test_plaintext_backend_is_refused_before_anything_is_stored(
    paths: StationPaths, fresh_keyring: None
) -> None:
    weak = PlaintextFileKeyring()
    keyring.set_keyring(weak)
    with pytest.raises(SecurityError, match="PlaintextFileKeyring") as caught:
        Vault.init(paths)
    assert "apt install gnome-keyring" in str(caught.value)
    assert weak.stored == {}
    _nothing_created(paths)


def test_chainer_with_nothing_viable_is_refused(
    paths: StationPaths, fresh_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ChainerBackend, "backends", [])
    keyring.set_keyring(ChainerBackend())  # type: ignore[no-untyped-call]
    with pytest.raises(EnvironmentProblem, match="no usable backend"):
        Vault.init(paths)
    _nothing_created(paths)


def test_chainer_with_a_weak_member_is_refused(
    paths: StationPaths, fresh_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = PlaintextFileKeyring()
    monkeypatch.setattr(ChainerBackend, "backends", [weak])
    keyring.set_keyring(ChainerBackend())  # type: ignore[no-untyped-call]
    with pytest.raises(SecurityError, match="PlaintextFileKeyring"):
        Vault.init(paths)
    assert weak.stored == {}
    _nothing_created(paths)


def test_weak_backend_is_refused_when_opening_too(paths: StationPaths, fresh_keyring: None) -> None:
    (paths.home).mkdir(parents=True)
    (paths.home / "vault.json").write_text(
        json.dumps({"format": 1, "mode": "keyring", "station_id": "0123456789abcdef"})
    )
    weak = PlaintextFileKeyring()
    weak.set_password(secret_store.SERVICE, "master-key/0123456789abcdef", "A" * 44)
    keyring.set_keyring(weak)
    with pytest.raises(SecurityError):
        Vault.open(paths)


# -- passphrase mode ------------------------------------------------------------


def test_passphrase_mode_round_trip_and_wrong_passphrase(paths: StationPaths) -> None:
    asked: list[PassphrasePurpose] = []
    vault = Vault.init(
        paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE, asked)
    )
    assert asked == [PassphrasePurpose.CREATE]
    settings = read_settings(paths)
    assert settings is not None and settings.mode is VaultMode.PASSPHRASE
    file = paths.home / "master-key.scrypt"
    assert file.stat().st_mode & 0o777 == 0o600
    params = passphrase_mod.read_params(file)
    assert (params.log2_n, params.r, params.p) == (17, 8, 1)
    assert "scrypt n=2^17" in vault.backend_description()
    key = vault.ensure_data_key("aliceaaaaaaa")

    asked.clear()
    reopened = Vault.open(paths, passphrase_prompt=_prompt(PASSPHRASE, asked))
    assert asked == [PassphrasePurpose.UNLOCK]
    assert reopened.data_key("aliceaaaaaaa") == key

    wrong = "correct horse battery stapler"
    with pytest.raises(SecurityError, match="wrong passphrase") as caught:
        Vault.open(paths, passphrase_prompt=_prompt(wrong))
    assert wrong not in str(caught.value) and PASSPHRASE not in str(caught.value)
    # Neither the passphrase nor the keys are on disk in the clear.
    everything = _all_bytes(paths.home)
    assert PASSPHRASE.encode() not in everything and key not in everything


def test_passphrase_mode_can_be_disallowed(paths: StationPaths) -> None:
    with pytest.raises(SecurityError, match="not allowed"):
        Vault.init(
            paths,
            mode=VaultMode.PASSPHRASE,
            allow_passphrase=False,
            passphrase_prompt=_prompt(PASSPHRASE),
        )
    _nothing_created(paths)
    Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    with pytest.raises(SecurityError, match="policy does not allow"):
        Vault.open(paths, allow_passphrase=False, passphrase_prompt=_prompt(PASSPHRASE))


def test_passphrase_mode_needs_a_prompt_and_a_real_passphrase(paths: StationPaths) -> None:
    with pytest.raises(UsageError, match="no passphrase prompt"):
        Vault.init(paths, mode=VaultMode.PASSPHRASE)
    with pytest.raises(UsageError, match="at least 8"):
        Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt("short"))
    _nothing_created(paths)


def test_mode_cannot_silently_change(paths: StationPaths) -> None:
    Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    with pytest.raises(StateError, match="already initialised in passphrase mode"):
        Vault.init(paths, mode=VaultMode.KEYRING)


def test_tampered_master_key_file_is_detected(paths: StationPaths) -> None:
    Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    file = paths.home / "master-key.scrypt"
    original = file.read_bytes()
    blob = bytearray(original)
    blob[9] = 40  # log2(n) = 40: would need terabytes
    file.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="implausible scrypt"):
        Vault.open(paths, passphrase_prompt=_prompt(PASSPHRASE))
    blob = bytearray(original)
    blob[-1] ^= 1
    file.write_bytes(bytes(blob))
    with pytest.raises(SecurityError, match="or the file was altered"):
        Vault.open(paths, passphrase_prompt=_prompt(PASSPHRASE))


def test_missing_master_key_file_with_data_is_refused(paths: StationPaths) -> None:
    vault = Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    vault.ensure_data_key("aliceaaaaaaa")
    (paths.home / "master-key.scrypt").unlink()
    with pytest.raises(StateError, match="refusing to create a new master key"):
        Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    with pytest.raises(StateError, match="missing"):
        Vault.open(paths, passphrase_prompt=_prompt(PASSPHRASE))
    assert not (paths.home / "master-key.scrypt").exists()


def test_persona_ids_that_are_paths_are_refused(paths: StationPaths) -> None:
    vault = Vault.init(paths, mode=VaultMode.PASSPHRASE, passphrase_prompt=_prompt(PASSPHRASE))
    for bad in ("../escape", "a/b", "", "..", "-rf"):
        with pytest.raises(UsageError, match="malformed persona id"):
            vault.ensure_data_key(bad)
    assert not (paths.home / "escape").exists()
    assert not paths.personas.exists()


def test_malformed_settings_name_the_file_and_field(paths: StationPaths) -> None:
    paths.home.mkdir(parents=True)
    (paths.home / "vault.json").write_text('{"format": 1, "mode": "plaintext", "station_id": "x"}')
    with pytest.raises(ConfigError, match=r"vault\.json: malformed vault settings"):
        Vault.open(paths)
