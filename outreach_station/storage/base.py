"""The storage interface: what station keeps, without saying where.

Everything above `outreach_station.storage` talks to these protocols only.
The first backend (`storage.sqlite`) keeps them in SQLite files under the
station home; a second backend (the team's server) is an addition below this
line, never a change above it.

A `Store` is one open handle for one command. Writes that belong together
go in one `transaction()`: an action and its consequences land together or
not at all. Transactions nest: an inner one joins the outer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from outreach_station.errors import StateError
from outreach_station.personas import Persona, Status


class UniqueConflict(StateError):
    """A write would give two personas the same identity detail."""


@dataclass(frozen=True)
class ProxyRecord:
    """A persona's egress proxy as stored: never its password (that is in the keyring)."""

    persona_id: str
    url: str
    username: str
    source: Literal["persona", "pool"]


@dataclass(frozen=True)
class AnchorRow:
    """An audit chain's head as stored: `mac` is None when no OS keyring was usable."""

    count: int
    last_hash: str
    pending: str | None
    mac: str | None


class Store(Protocol):
    """Personas, their kits and proxies, and their sealed generations."""

    clock: Callable[[], datetime]

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def schema_version(self) -> int: ...

    # Personas and their lifecycle.
    def create(
        self,
        platform: str,
        *,
        fingerprint: dict[str, Any],
        label: str = "",
        standby: bool = False,
    ) -> Persona: ...

    def get(self, persona_id: str) -> Persona: ...

    def list(
        self, *, platform: str | None = None, status: Status | None = None
    ) -> list[Persona]: ...

    def active(self, platform: str) -> Persona | None: ...

    def mark_opened(self, persona_id: str) -> None: ...

    def set_fingerprint(self, persona_id: str, fingerprint: dict[str, Any]) -> Persona: ...

    def rotate(
        self, platform: str, *, reason: str, fresh_fingerprint: Callable[[], dict[str, Any]]
    ) -> tuple[Persona | None, Persona, bool]: ...

    def undo_rotation(
        self, platform: str, *, blocked_id: str, promoted_id: str, reason: str
    ) -> tuple[Persona, Persona]: ...

    def transition(self, persona_id: str, to: Status, *, reason: str = "") -> Persona: ...

    # Identity kits (details only: secrets are in the keyring).
    def kit_row(self, persona_id: str) -> dict[str, str] | None: ...

    def kit_rows(self) -> tuple[dict[str, str], ...]: ...

    def put_kit(self, persona_id: str, values: Mapping[str, str]) -> None: ...

    # Egress proxies.
    def proxy(self, persona_id: str) -> ProxyRecord | None: ...

    def put_proxy(self, record: ProxyRecord) -> None: ...

    def delete_proxy(self, persona_id: str) -> bool: ...

    def platform_proxies(
        self, platform: str, *, excluding: str
    ) -> Sequence[tuple[str, Status]]: ...

    # Sealed generations (which sealed profile is the current one).
    def sealed_generation(self, persona_id: str) -> tuple[int, int | None]: ...

    def begin_sealed_generation(self, persona_id: str, generation: int) -> None: ...

    def commit_sealed_generation(self, persona_id: str, generation: int) -> None: ...


class BlobStore(Protocol):
    """One persona's sealed blobs and manifests, as opaque bytes under names.

    The vault encrypts and authenticates; a blob store only keeps bytes, so a
    team backend can hold the same blobs and upload only the names it lacks.
    Blob names are lowercase hex; a blob's bytes never change once put, so
    `put` of a name already held may do nothing. A `put_manifest` that
    returned is durable, and so are the blobs put before it; `sweep` removes
    what a killed writer left half-written, `sync` makes deletions durable.
    `location` names the store in messages.
    """

    location: str

    def has(self, name: str) -> bool: ...

    def put(self, name: str, data: bytes | bytearray) -> bool: ...

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> set[str]: ...

    def put_manifest(self, generation: int, data: bytes) -> None: ...

    def get_manifest(self, generation: int) -> bytes: ...

    def manifests(self) -> list[int]: ...

    def delete_manifest(self, generation: int) -> None: ...

    def exists(self) -> bool: ...

    def sweep(self) -> None: ...

    def sync(self) -> None: ...

    def remove_all(self) -> bool: ...


class AnchorStore(Protocol):
    """Where audit chains' heads are kept (see `outreach_station.audit.ChainAnchor`)."""

    def __enter__(self) -> AnchorStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def row(self, log: str) -> AnchorRow | None: ...

    def hashes(self, log: str) -> dict[int, str]: ...

    def store(self, log: str, row: AnchorRow, hashes: Mapping[int, str] | None = None) -> None: ...

    def reset(self, log: str, row: AnchorRow) -> None: ...
