"""Where station keeps what it knows: one interface, backends below it.

`open_store` gives the store for a station home. Today that is the local
backend (`storage.sqlite`: SQLite files under the home, the embedded
default); a team backend on the organisation's server is an addition here,
chosen by the policy, with nothing above this package changing. This package
is the only place that writes SQL or touches the store's files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from outreach_station.storage.base import (
    AnchorRow,
    AnchorStore,
    BlobStore,
    ProxyRecord,
    Store,
    UniqueConflict,
)

if TYPE_CHECKING:
    from outreach_station.errors import StationError
    from outreach_station.paths import StationPaths

__all__ = [
    "AnchorRow",
    "AnchorStore",
    "BlobStore",
    "ProxyRecord",
    "Store",
    "UniqueConflict",
    "existing_anchor_store",
    "open_anchor_store",
    "open_blob_store",
    "open_store",
    "problem_for",
]


def open_store(station: StationPaths, *, clock: Callable[[], datetime] | None = None) -> Store:
    """The store of this station home (created and migrated on first use)."""
    from outreach_station.storage.sqlite import SqliteStore

    if clock is None:
        return SqliteStore(station.registry)
    return SqliteStore(station.registry, clock=clock)


def open_blob_store(station: StationPaths, persona_id: str) -> BlobStore:
    """Where a persona's sealed blobs and manifests are kept (local: under its directory)."""
    from outreach_station.storage.blobs import LocalBlobStore

    return LocalBlobStore(station.persona_dir(persona_id))


def open_anchor_store(path: Path) -> AnchorStore:
    """The audit anchor's store at `path`, created if missing."""
    from outreach_station.storage.sqlite import SqliteAnchorStore

    return SqliteAnchorStore(path)


def existing_anchor_store(path: Path) -> AnchorStore | None:
    """The audit anchor's store at `path`, or None if there is none yet."""
    return open_anchor_store(path) if path.exists() else None


def problem_for(exc: BaseException) -> StationError | None:
    """A storage failure that escaped as the backend's own exception, in one line."""
    import sys

    sqlite = sys.modules.get("sqlite3")
    if sqlite is not None and isinstance(exc, sqlite.Error):
        from outreach_station.paths import current
        from outreach_station.storage.sqlite import registry_problem

        return registry_problem(current().registry, exc)
    return None
