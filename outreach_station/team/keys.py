"""A member's key pair and the persona data keys wrapped for members (HPKE, RFC 9180).

Each staff account on a laptop has one X25519 key pair per team. Its private
key lives only in the OS keyring, entry `team-member-key/<station id>/<team
id>` of service "outreach-station" (one entry per station home and team; the
station id is the vault's, as for the master key), never in a file, a log or
an error message. It is made on first `join` or `init` (`ensure_member_key`).

A persona's data key reaches a member only wrapped for that member's public
key with HPKE base mode (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
AES-256-GCM). The HPKE `info` names the team, the persona, the member and
the key version, so a wrapped key copied to another persona's or member's
row, or served as another version, fails authentication and is refused:
the server can withhold a key but cannot redirect one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NoReturn

from outreach_station import secret_store
from outreach_station.errors import (
    IntegrityError,
    NotFoundError,
    SecurityError,
    StateError,
    UsageError,
)
from outreach_station.i18n import _
from outreach_station.ids import validate_persona_id
from outreach_station.team.identity import member_id_for, validate_team_id
from outreach_station.team.members import Member, approved_members

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.hpke import Suite

    from outreach_station.paths import StationPaths

KEYRING_PREFIX: Final = "team-member-key"
DATA_KEY_BYTES: Final = 32
PRIVATE_KEY_BYTES: Final = 32
MAX_KEY_VERSION: Final = 2**32 - 1

# Wire format of a wrapped key: magic, then HPKE's single-shot output (enc || ct).
_WRAP_MAGIC: Final = b"OSTWRAP\x01"
_INFO_LABEL: Final = b"outreach-station persona data key wrap v1\x00"
_SIGNING_LABEL: Final = b"outreach-station team member signing key v1\x00"
# enc (32) + data key (32) + GCM tag (16)
_WRAPPED_BYTES: Final = len(_WRAP_MAGIC) + 32 + DATA_KEY_BYTES + 16


def _suite() -> Suite:
    from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

    return Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


class MemberKey:
    """This laptop's key pair in one team; the private half stays inside this object.

    Made by `ensure_member_key` / `load_member_key` (or `generate` for a key
    that is never stored, in tests). Its repr and every message name only the
    team and the member id.
    """

    __slots__ = ("_member_id", "_private", "_public", "_team_id")

    def __init__(self, team_id: str, private_key: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        if len(private_key) != PRIVATE_KEY_BYTES:
            raise ValueError("an X25519 private key has 32 bytes")
        self._team_id = validate_team_id(team_id)
        self._private = X25519PrivateKey.from_private_bytes(private_key)
        self._public = self._private.public_key().public_bytes_raw()
        self._member_id = member_id_for(self._public)

    @classmethod
    def generate(cls, team_id: str) -> MemberKey:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        return cls(team_id, X25519PrivateKey.generate().private_bytes_raw())

    def __repr__(self) -> str:
        return f"MemberKey(team={self._team_id!r}, member={self._member_id!r})"

    def __reduce__(self) -> NoReturn:
        # Pickling would write the private key wherever the pickle goes.
        raise TypeError("a MemberKey cannot be pickled")

    @property
    def team_id(self) -> str:
        return self._team_id

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def member_id(self) -> str:
        return self._member_id

    @property
    def signing_public_key(self) -> bytes:
        """The Ed25519 public key this member signs approvals with (see `team.approvals`)."""
        return self._signing().public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of `message` by this member's signing key."""
        return self._signing().sign(message)

    def _signing(self) -> Ed25519PrivateKey:
        # Derived from the X25519 key, so the keyring keeps one secret per member
        # and every existing member key has its signing key without a migration.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=_SIGNING_LABEL).derive(
            self._raw_private()
        )
        return Ed25519PrivateKey.from_private_bytes(seed)

    def private_for_hpke(self) -> X25519PrivateKey:
        """The private key object, for HPKE in this package only."""
        return self._private

    def _raw_private(self) -> bytes:
        return self._private.private_bytes_raw()


# -- the OS keyring --------------------------------------------------------------


def member_key_entry(station_id: str, team_id: str) -> str:
    """The keyring entry name of a station home's member key in a team (never to change)."""
    return f"{KEYRING_PREFIX}/{station_id}/{validate_team_id(team_id)}"


def _entry(paths: StationPaths, team_id: str) -> str:
    from outreach_station.vault.keys import read_settings

    settings = read_settings(paths)
    if settings is None:
        raise StateError(
            _(
                "the vault of {home} is not initialised; run `station init` before joining a team"
            ).format(home=paths.home)
        )
    return member_key_entry(settings.station_id, team_id)


_WHAT: Final = "team member key"


def load_member_key(paths: StationPaths, team_id: str) -> MemberKey:
    """This station home's key in `team_id`; `NotFoundError` if it never joined the team."""
    entry = _entry(paths, team_id)
    raw = secret_store.read_key(entry, what=_WHAT)
    if raw is None:
        raise NotFoundError(
            _(
                "this laptop has no member key for team {team_id} in the OS "
                "keyring; run `station team join URL` (a key lost from the keyring "
                "cannot be recovered: the new key must be approved again)"
            ).format(team_id=team_id)
        )
    return MemberKey(team_id, raw)


def ensure_member_key(paths: StationPaths, team_id: str) -> MemberKey:
    """This station home's key in `team_id`, made and stored in the keyring on first use.

    Nothing is written anywhere unless the keyring works: a locked or missing
    keyring is an `EnvironmentProblem` (exit 8) before any key exists.
    """
    from outreach_station.storage.locks import first_use_lock

    entry = _entry(paths, team_id)
    checked = secret_store.check_backend()
    # Two joins at once on one home must make one key, not two of which one is orphaned.
    with first_use_lock(paths):
        raw = secret_store.read_key(entry, what=_WHAT, backend=checked)
        if raw is None:
            key = MemberKey.generate(team_id)
            secret_store.store_key(entry, key._raw_private(), what=_WHAT, backend=checked)
            return key
    return MemberKey(team_id, raw)


def forget_member_key(paths: StationPaths, team_id: str) -> bool:
    """Delete this home's key in `team_id` from the keyring (leaving a team); False if none."""
    return secret_store.delete(_entry(paths, team_id), what=_WHAT)


# -- wrapped data keys -----------------------------------------------------------


def _check_version(key_version: int) -> int:
    if isinstance(key_version, bool) or not isinstance(key_version, int):
        raise UsageError(_("a key version is a whole number"))
    if not 1 <= key_version <= MAX_KEY_VERSION:
        raise UsageError(
            _("a key version is between 1 and {MAX_KEY_VERSION}").format(
                MAX_KEY_VERSION=MAX_KEY_VERSION
            )
        )
    return key_version


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _info(team_id: str, persona_id: str, member_id: str, key_version: int) -> bytes:
    """What a wrap is bound to; length-prefixed so no two tuples give the same bytes."""
    return (
        _INFO_LABEL
        + _field(team_id)
        + _field(persona_id)
        + _field(member_id)
        + struct.pack(">I", key_version)
    )


@dataclass(frozen=True)
class WrappedKey:
    """A persona's data key (one version) wrapped for one member; what the server stores.

    The three addressing fields are stored beside `sealed` so rows can be
    found; they are also authenticated inside it, so changing them is caught.
    """

    persona_id: str
    member_id: str
    key_version: int
    sealed: bytes = field(repr=False)


def wrap_data_key(
    data_key: bytes, *, member: Member, team_id: str, persona_id: str, key_version: int
) -> WrappedKey:
    """`data_key` wrapped for `member` (which must be approved), bound to persona and version."""
    if len(data_key) != DATA_KEY_BYTES:
        raise UsageError(
            _("a persona data key has {DATA_KEY_BYTES} bytes").format(DATA_KEY_BYTES=DATA_KEY_BYTES)
        )
    if not member.approved:
        raise SecurityError(
            _(
                "member {member_id} is {status}: a persona key is wrapped only for approved members"
            ).format(member_id=member.member_id, status=member.status)
        )
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    validate_team_id(team_id)
    validate_persona_id(persona_id)
    _check_version(key_version)
    sealed = _suite().encrypt(
        data_key,
        X25519PublicKey.from_public_bytes(member.public_key),
        _info(team_id, persona_id, member.member_id, key_version),
    )
    return WrappedKey(
        persona_id=persona_id,
        member_id=member.member_id,
        key_version=key_version,
        sealed=_WRAP_MAGIC + sealed,
    )


def wrap_for_members(
    members: Iterable[Member],
    data_key: bytes,
    *,
    team_id: str,
    persona_id: str,
    key_version: int,
) -> tuple[WrappedKey, ...]:
    """`data_key` wrapped for every approved member; pending and removed ones get nothing."""
    return tuple(
        wrap_data_key(
            data_key, member=m, team_id=team_id, persona_id=persona_id, key_version=key_version
        )
        for m in approved_members(members)
    )


def unwrap_data_key(
    wrapped: WrappedKey, key: MemberKey, *, persona_id: str, key_version: int
) -> bytes:
    """The data key in `wrapped`, for the persona and version the caller is opening.

    `persona_id` and `key_version` come from what the caller is opening, never
    from the row: a row moved to another persona or relabelled as another
    version is refused (`SecurityError` when its labels do not match,
    `IntegrityError` when its contents fail authentication). Messages name
    the persona, member and version only.
    """
    from cryptography.exceptions import InvalidTag

    validate_persona_id(persona_id)
    _check_version(key_version)
    where = _("persona {persona_id} (key version {key_version})").format(
        persona_id=persona_id, key_version=key_version
    )
    if wrapped.member_id != key.member_id:
        raise SecurityError(
            _(
                "the wrapped key of {where} is for member {member_id}, not this "
                "laptop's member {own_member}; refusing it"
            ).format(where=where, member_id=wrapped.member_id, own_member=key.member_id)
        )
    if wrapped.persona_id != persona_id or wrapped.key_version != key_version:
        raise SecurityError(
            _(
                "a wrapped key labelled for persona {persona_id} (key version "
                "{key_version}) was served for {where}; refusing it"
            ).format(persona_id=wrapped.persona_id, key_version=wrapped.key_version, where=where)
        )
    blob = wrapped.sealed
    if len(blob) != _WRAPPED_BYTES or not blob.startswith(_WRAP_MAGIC):
        raise IntegrityError(
            _(
                "the wrapped key of {where} for member {member_id} is damaged or "
                "not a wrapped key; refusing it"
            ).format(where=where, member_id=key.member_id)
        )
    try:
        data_key = _suite().decrypt(
            blob[len(_WRAP_MAGIC) :],
            key.private_for_hpke(),
            _info(key.team_id, persona_id, key.member_id, key_version),
        )
    except (InvalidTag, ValueError):
        raise IntegrityError(
            _(
                "the wrapped key of {where} for member {member_id} failed "
                "authentication: it was altered, moved from another persona, member "
                "or team, or is not for this laptop's key; refusing it"
            ).format(where=where, member_id=key.member_id)
        ) from None
    return data_key


# -- re-keying --------------------------------------------------------------------


@dataclass(frozen=True)
class Rekey:
    """A persona's new data key version, wrapped for the members approved now."""

    persona_id: str
    key_version: int
    wraps: tuple[WrappedKey, ...]


def new_data_key() -> bytes:
    """A fresh random persona data key (256 bits)."""
    import secrets  # not at import time: `secrets` is slow to import (start-up)

    return secrets.token_bytes(DATA_KEY_BYTES)


def rekey(
    members: Iterable[Member],
    *,
    team_id: str,
    persona_id: str,
    old_key: bytes,
    old_version: int,
    new_key: bytes,
) -> Rekey:
    """Wraps of `new_key` (version `old_version + 1`) for the members approved now.

    Run for each persona after a removal, at its next seal: from then on the
    persona is sealed with `new_key`, which the removed member never gets.
    The caller stores the new wraps and seals the next generation with the
    new key; the server drops the removed member's wraps.

    What this cannot undo: anything the removed member already unsealed,
    copied or wrote down (cookies, logins, kit secrets) stays theirs; the
    old data key and every generation sealed with it before removal, which
    their laptop may have cached or the server may still keep, stay readable
    to them. Only sessions sealed after the re-key are out of their reach; to
    cut them off from the platform account itself, change its password and
    log out its other sessions.
    """
    import hmac

    if len(old_key) != DATA_KEY_BYTES or len(new_key) != DATA_KEY_BYTES:
        raise UsageError(
            _("a persona data key has {DATA_KEY_BYTES} bytes").format(DATA_KEY_BYTES=DATA_KEY_BYTES)
        )
    if hmac.compare_digest(old_key, new_key):
        # The same key again would keep a removed member's copy working.
        raise SecurityError(
            _("re-keying persona {persona_id} needs a new data key, not the old one again").format(
                persona_id=persona_id
            )
        )
    version = _check_version(old_version) + 1
    wraps = wrap_for_members(
        members, new_key, team_id=team_id, persona_id=persona_id, key_version=version
    )
    if not wraps:
        raise StateError(
            _("persona {persona_id} cannot be re-keyed: the team has no approved member").format(
                persona_id=persona_id
            )
        )
    return Rekey(persona_id=persona_id, key_version=_check_version(version), wraps=wraps)
