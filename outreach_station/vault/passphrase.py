"""Passphrase mode: the master key wrapped by a scrypt-derived key in a file.

For machines where no keyring service can run. The file is useless without
the passphrase; its strength is the passphrase's strength times scrypt's cost,
which is why the cost is memory-hard and recorded with the salt.
"""

from __future__ import annotations

import secrets
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from outreach_station.errors import IntegrityError, SecurityError, UsageError
from outreach_station.fsutil import write_exclusive
from outreach_station.i18n import _

MAGIC = b"\x89OSMKEY\n"
VERSION = 1
SALT_BYTES = 32
NONCE_BYTES = 12
KEY_BYTES = 32
MIN_PASSPHRASE_CHARS = 8

# version, log2(n), r, p; then salt and nonce.
_PARAMS = struct.Struct(">BBHH")
HEADER_BYTES = len(MAGIC) + _PARAMS.size + SALT_BYTES + NONCE_BYTES
FILE_BYTES = HEADER_BYTES + KEY_BYTES + 16

# A stored file names its own cost; these bounds keep a doctored file from
# asking for gigabytes of memory or from dropping the cost to nothing.
_MIN_LOG2_N, _MAX_LOG2_N = 14, 22
_MAX_R, _MAX_P = 32, 16


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: n = 2**log2_n, memory about 128 * r * n bytes (128 MiB by default)."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        if not (_MIN_LOG2_N <= self.log2_n <= _MAX_LOG2_N and 1 <= self.r <= _MAX_R):
            raise UsageError(_("scrypt parameters out of range: {self}").format(self=self))
        if not 1 <= self.p <= _MAX_P:
            raise UsageError(_("scrypt parameters out of range: {self}").format(self=self))


def _derive(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    # NFC so the same passphrase typed through different input methods matches.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=1 << params.log2_n, r=params.r, p=params.p)
    return kdf.derive(secret)


def create_master_file(path: Path, passphrase: str, params: ScryptParams) -> bytes:
    """Make a new random master key, store it wrapped in `path`; return the key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    params.check()
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise UsageError(
            _("the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters").format(
                MIN_PASSPHRASE_CHARS=MIN_PASSPHRASE_CHARS
            )
        )
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = MAGIC + _PARAMS.pack(VERSION, params.log2_n, params.r, params.p) + salt + nonce
    master = secrets.token_bytes(KEY_BYTES)
    wrapped = AESGCM(_derive(passphrase, salt, params)).encrypt(nonce, master, header)
    if not write_exclusive(path, header + wrapped):
        raise SecurityError(
            _(
                "a master key file already exists at {path}; refusing to replace "
                "it, which would make everything sealed with it unreadable"
            ).format(path=path)
        )
    return master


def read_params(path: Path) -> ScryptParams:
    """The scrypt cost recorded in `path` (for `doctor`-style reports)."""
    return _parse(path.read_bytes(), path)[0]


def _parse(blob: bytes, path: Path) -> tuple[ScryptParams, bytes, bytes, bytes, bytes]:
    if len(blob) != FILE_BYTES or not blob.startswith(MAGIC):
        raise IntegrityError(
            _("the master key file {path} is damaged or not a station key file").format(path=path)
        )
    version, log2_n, r, p = _PARAMS.unpack_from(blob, len(MAGIC))
    if version != VERSION:
        raise IntegrityError(
            _("the master key file {path} has unsupported version {version}").format(
                path=path, version=version
            )
        )
    params = ScryptParams(log2_n=log2_n, r=r, p=p)
    try:
        params.check()
    except UsageError:
        raise IntegrityError(
            _(
                "the master key file {path} names implausible scrypt parameters; it was altered"
            ).format(path=path)
        ) from None
    offset = len(MAGIC) + _PARAMS.size
    salt = blob[offset : offset + SALT_BYTES]
    nonce = blob[offset + SALT_BYTES : HEADER_BYTES]
    return params, salt, nonce, blob[:HEADER_BYTES], blob[HEADER_BYTES:]


def open_master_file(path: Path, passphrase: str) -> bytes:
    """The master key in `path`; a wrong passphrase is a `SecurityError`."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    params, salt, nonce, header, wrapped = _parse(path.read_bytes(), path)
    try:
        return AESGCM(_derive(passphrase, salt, params)).decrypt(nonce, wrapped, header)
    except InvalidTag:
        # GCM cannot tell a wrong passphrase from an altered file; the
        # former is far more likely, so it comes first.
        raise SecurityError(
            _("wrong passphrase for the master key file {path} (or the file was altered)").format(
                path=path
            )
        ) from None
