"""Move a persona's cookies off the person's keyring key, once, as its profile opens.

Station used to let Chromium keep its cookie key ("Chromium Safe Storage")
in the person's keyring; it now runs Chromium with `--password-store=basic`
so that a profile needs nothing but the persona's own data key. Cookies
written before that carry the prefix `v11` and are encrypted with the
keyring key; Chromium with the basic store cannot read them and drops them.
While the keyring item still exists, they are re-encrypted here as `v10`
(the basic store's fixed key) in the unsealed Cookies database, before the
browser starts. The plaintext (on newer databases prefixed with the SHA-256
of the host) is carried over unchanged.

Chromium on Linux: key = PBKDF2-HMAC-SHA1(password, "saltysalt", 1
iteration, 16 bytes); value = prefix || AES-128-CBC(key, IV = 16 spaces,
PKCS#7). `v10` uses the password "peanuts", `v11` the keyring's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

V10 = b"v10"
V11 = b"v11"
_BASIC_PASSWORD = b"peanuts"
_SALT = b"saltysalt"
_IV = b" " * 16
SAFE_STORAGE_LABEL = "Chromium Safe Storage"


@dataclass(frozen=True)
class Migrated:
    moved: int
    # v11 values left as they were: no keyring key, or it did not decrypt them.
    left: int


def _key(password: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    return PBKDF2HMAC(algorithm=hashes.SHA1(), length=16, salt=_SALT, iterations=1).derive(  # noqa: S303 - Chromium's own scheme
        password
    )


def _decrypt(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CBC(_IV)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _encrypt(key: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_IV)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def keyring_password() -> bytes | None:
    """Chromium's cookie password from the Secret Service, or None (absent, locked, no service)."""
    try:
        import secretstorage
    except ImportError:
        return None
    try:
        connection = secretstorage.dbus_init()
    except Exception:  # no session bus: nothing to read
        return None
    try:
        for item in secretstorage.search_items(connection, {"application": "chromium"}):
            if SAFE_STORAGE_LABEL in item.get_label():
                if item.is_locked():
                    item.unlock()
                return bytes(item.get_secret())
    except Exception:  # a locked or broken keyring is "no key" here; the caller says so
        return None
    finally:
        connection.close()
    return None


def migrate_profile(
    profile: Path, password: Callable[[], bytes | None] = keyring_password
) -> Migrated:
    """Re-encrypt every `v11` cookie value of the profile as `v10`; the browser must not run."""
    from outreach_station.storage.chromium_cookies import rewrite_values

    moved = left = 0
    asked: list[bytes | None] = []

    def recrypt(rows: list[tuple[int, bytes]]) -> dict[int, bytes]:
        nonlocal moved, left
        if not asked:
            asked.append(password())
        secret = asked[0]
        if secret is None:
            left += len(rows)
            return {}
        old, new = _key(secret), _key(_BASIC_PASSWORD)
        done: dict[int, bytes] = {}
        for rowid, value in rows:
            try:
                plaintext = _decrypt(old, value[len(V11) :])
            except ValueError:
                left += 1
                continue
            done[rowid] = V10 + _encrypt(new, plaintext)
            moved += 1
        return done

    for store in sorted(profile.glob("*/Cookies")):
        rewrite_values(store, V11, recrypt)
    return Migrated(moved=moved, left=left)
