"""The vault: key management and the sealed-profile format.

Import-cheap on purpose (the CLI imports it at start-up): `cryptography` and
`keyring` are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

from outreach_station.vault.keys import (
    SEALED_SUFFIX,
    WRAPPED_KEY_FILE,
    PassphraseCallback,
    PassphrasePurpose,
    Vault,
    VaultMode,
    VaultSettings,
    read_settings,
)
from outreach_station.vault.passphrase import ScryptParams
from outreach_station.vault.sealed import (
    DEFAULT_CHUNK_SIZE,
    SKIPPED_DIR_NAMES,
    ProgressCallback,
    SealStats,
    new_path,
    seal_dir,
    unseal_file,
    verify_file,
)


def peek_generation(src_file: Path, persona_id: str) -> int | None:
    """The generation `profile.sealed` claims (formats 4 to 2; None: format 1), unauthenticated."""
    from outreach_station.vault.blobs import peek_generation as peek

    return peek(src_file, persona_id)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SEALED_SUFFIX",
    "SKIPPED_DIR_NAMES",
    "WRAPPED_KEY_FILE",
    "PassphraseCallback",
    "PassphrasePurpose",
    "ProgressCallback",
    "ScryptParams",
    "SealStats",
    "Vault",
    "VaultMode",
    "VaultSettings",
    "new_path",
    "peek_generation",
    "read_settings",
    "seal_dir",
    "unseal_file",
    "verify_file",
]
