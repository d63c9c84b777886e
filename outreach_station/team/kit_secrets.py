"""A team persona's kit secrets: sealed on a laptop with the persona's key, kept on the server.

Outside a team a kit's password and one-time-code seed live in the laptop's
OS keyring (`kit`). A keyring does not travel, so in a team each secret is
sealed on the laptop that sets it and stored on the server (`kit_secrets`,
migration 11): AES-256-GCM under a key derived (HKDF-SHA256) from the
persona's data key, with the team, the persona, the field and the data key
version as associated data. The server sees ciphertext only; a sealed
secret copied to another persona or field, or served as another key
version, fails authentication and is refused. Any approved member's laptop
unwraps the persona's data key (`team.opening.TeamKeys`) and so reads it;
shredding the persona deletes the rows with the wrapped keys
(`PostgresStore.shred`). After a member's removal the secrets are sealed
again with the persona's new key version when it is made (`reseal`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from outreach_station.errors import IntegrityError
from outreach_station.i18n import _

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from outreach_station.context import Station
    from outreach_station.storage.postgres import PostgresStore
    from outreach_station.team.opening import TeamKeys

_MAGIC: Final = b"OSTKIT\x00\x01"
_KEY_INFO: Final = b"outreach-station kit secret key v1\x00"
_NONCE_BYTES: Final = 12


def _aad(team_id: str, persona_id: str, field: str, key_version: int) -> bytes:
    parts = [p.encode() for p in (team_id, persona_id, field)]
    return (
        _MAGIC
        + b"".join(struct.pack(">H", len(p)) + p for p in parts)
        + struct.pack(">Q", key_version)
    )


def _aead(data_key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    # A key of its own: the data key's other uses (blobs, manifests) never see these.
    return AESGCM(HKDF(algorithm=SHA256(), length=32, salt=None, info=_KEY_INFO).derive(data_key))


def seal_secret(
    data_key: bytes, value: str, *, team_id: str, persona_id: str, field: str, key_version: int
) -> bytes:
    """`value` sealed for the server, bound to the team, persona, field and key version."""
    import os

    aead = _aead(data_key)
    nonce = os.urandom(_NONCE_BYTES)
    aad = _aad(team_id, persona_id, field, key_version)
    return _MAGIC + nonce + aead.encrypt(nonce, value.encode("utf-8"), aad)


def open_secret(
    data_key: bytes, sealed: bytes, *, team_id: str, persona_id: str, field: str, key_version: int
) -> str:
    """The secret in `sealed`; `IntegrityError` (never its bytes) if it does not authenticate."""
    from cryptography.exceptions import InvalidTag

    aead = _aead(data_key)
    head = len(_MAGIC) + _NONCE_BYTES
    try:
        if not sealed.startswith(_MAGIC) or len(sealed) < head + 16:
            raise InvalidTag
        plain = aead.decrypt(
            sealed[len(_MAGIC) : head], sealed[head:], _aad(team_id, persona_id, field, key_version)
        )
        return plain.decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise IntegrityError(
            _(
                "the {field} of persona {persona_id} on the team server does not "
                "authenticate; it was changed outside station: report it to IT"
            ).format(field=field, persona_id=persona_id)
        ) from None


@dataclass(frozen=True)
class TeamKitSecrets:
    """The kit secrets of a team's personas, as this laptop's member reads and writes them."""

    store: PostgresStore
    keys: TeamKeys
    team_id: str

    def fields(self, persona_id: str) -> set[str]:
        """Which secrets the persona has on the server (no key needed to know)."""
        return self.store.kit_secret_fields(persona_id)

    def read(self, persona_id: str, field: str) -> str | None:
        record = self.store.kit_secret(persona_id, field)
        if record is None:
            return None
        return open_secret(
            self.keys.key_of_version(persona_id, record.key_version),
            record.sealed,
            team_id=self.team_id,
            persona_id=persona_id,
            field=field,
            key_version=record.key_version,
        )

    def delete(self, persona_id: str, field: str) -> bool:
        """Remove a sealed secret; whether there was one."""
        return self.store.delete_kit_secret(persona_id, field)

    def write(self, persona_id: str, field: str, value: str) -> None:
        """Seal `value` with the persona's newest key and store it (read back to check)."""
        from outreach_station.storage.postgres import KitSecretRecord

        data_key, version = self.keys.newest(persona_id)
        sealed = seal_secret(
            data_key,
            value,
            team_id=self.team_id,
            persona_id=persona_id,
            field=field,
            key_version=version,
        )
        self.store.put_kit_secret(KitSecretRecord(persona_id, field, version, sealed))
        if self.read(persona_id, field) != value:  # pragma: no cover - a server that lies
            raise IntegrityError(
                _("the team server did not keep the {field} of persona {persona_id}").format(
                    field=field, persona_id=persona_id
                )
            )


def reseal(
    store: PostgresStore,
    keys: TeamKeys,
    team_id: str,
    persona_id: str,
    *,
    new_key: bytes,
    new_version: int,
) -> None:
    """Seal the persona's kit secrets again with its new key version (after a removal)."""
    from outreach_station.storage.postgres import KitSecretRecord

    for field in sorted(store.kit_secret_fields(persona_id)):
        record = store.kit_secret(persona_id, field)
        if record is None or record.key_version >= new_version:
            continue
        value = open_secret(
            keys.key_of_version(persona_id, record.key_version),
            record.sealed,
            team_id=team_id,
            persona_id=persona_id,
            field=field,
            key_version=record.key_version,
        )
        sealed = seal_secret(
            new_key,
            value,
            team_id=team_id,
            persona_id=persona_id,
            field=field,
            key_version=new_version,
        )
        store.put_kit_secret(KitSecretRecord(persona_id, field, new_version, sealed))


def team_kit_secrets(st: Station) -> TeamKitSecrets | None:
    """The team's kit secrets when this home is in a team, else None (the keyring holds them)."""
    from outreach_station.team.opening import _team_keys, team_store

    store = team_store(st)
    if store is None:
        return None
    keys = _team_keys(st, store)
    return TeamKitSecrets(store=store, keys=keys, team_id=keys.team_id)


@contextmanager
def home_team_secrets() -> Iterator[TeamKitSecrets | None]:
    """The team's secrets of the station home in force, or None outside a team (the keyring).

    For the callers that keep a secret per persona (`kit`, `network`'s proxy
    passwords): a keyring does not travel between laptops, so in a team each
    is sealed on the server with the persona's key.
    """
    from outreach_station.context import Station
    from outreach_station.team.config import team_connection

    with Station.load() as station:
        if team_connection(station) is None:
            yield None
            return
        yield team_kit_secrets(station)
