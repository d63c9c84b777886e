"""Where station keeps what it knows: one interface, backends below it.

`open_store` gives the store for a station home. The embedded default
is the local backend (`storage.sqlite`: SQLite files under the home); given
a team connection it is the team backend (`storage.postgres`: the
organisation's PostgreSQL), with nothing above this package changing. This package
is the only place that writes SQL or touches the store's files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from outreach_station.i18n import _
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
    from outreach_station.storage.postgres import TeamConnection

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


def open_store(
    station: StationPaths,
    *,
    clock: Callable[[], datetime] | None = None,
    team: TeamConnection | None = None,
    password: str | None = None,
) -> Store:
    """The store of this station home (created and migrated on first use).

    With `team` (the team's server, from the policy or `station team join`),
    the team's PostgreSQL, its password `password` or else read from the OS
    keyring; without, the embedded SQLite under the home, as always.
    """
    if team is not None:
        from outreach_station.storage.postgres import PostgresStore, keyring_password

        if password is None:
            password = keyring_password(team)
        if clock is None:
            return PostgresStore(team, password=password)
        return PostgresStore(team, password=password, clock=clock)
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
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from outreach_station.errors import EnvironmentProblem

        # The class name only: a server's message may quote a value.
        return EnvironmentProblem(
            _("the team server failed ({kind}); check the network and try again").format(
                kind=type(exc).__name__
            )
        )
    return None
