"""The persona registry: a small repository over SQLite.

Every persona and its lifecycle state live here. State changes go through
`transition`, the one place that enforces which lifecycle moves make sense;
a partial unique index makes "at most one active persona per platform" hold
even against concurrent writers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from outreach_station.clock import iso as _iso
from outreach_station.clock import parse_iso as _parse_time
from outreach_station.clock import utcnow as _utcnow
from outreach_station.errors import (
    BusyError,
    DamagedError,
    EnvironmentProblem,
    NotFoundError,
    StateError,
    StationError,
)
from outreach_station.fsutil import create_private_file, ensure_private_dir
from outreach_station.ids import new_persona_id, validate_persona_id
from outreach_station.values import validate_label, validate_reason

Status = Literal["standby", "active", "blocked", "retired"]
STATUSES: tuple[Status, ...] = ("standby", "active", "blocked", "retired")

ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    "standby": frozenset({"active", "blocked", "retired"}),
    "active": frozenset({"standby", "blocked", "retired"}),
    "blocked": frozenset({"retired"}),
    "retired": frozenset(),
}

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE personas (
        id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('standby', 'active', 'blocked', 'retired')),
        created TEXT NOT NULL,
        last_opened TEXT,
        status_changed TEXT NOT NULL,
        status_reason TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_active_persona_per_platform
        ON personas (platform) WHERE status = 'active';
    CREATE INDEX personas_by_platform ON personas (platform, status);
    """,
    # Identity kits (outreach_station.kit). Secrets are not here: they live in the
    # OS keyring. The unique indexes keep two personas from sharing a detail even
    # when two processes write at once.
    """
    CREATE TABLE kits (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        username TEXT NOT NULL DEFAULT '',
        email TEXT NOT NULL DEFAULT '',
        phone TEXT NOT NULL DEFAULT '',
        card_label TEXT NOT NULL DEFAULT '',
        card_last4 TEXT NOT NULL DEFAULT ''
            CHECK (card_last4 = '' OR (length(card_last4) = 4 AND card_last4 NOT GLOB '*[^0-9]*')),
        updated TEXT NOT NULL
    );
    CREATE UNIQUE INDEX kits_unique_username ON kits (lower(username)) WHERE username <> '';
    CREATE UNIQUE INDEX kits_unique_email ON kits (lower(email)) WHERE email <> '';
    CREATE UNIQUE INDEX kits_unique_phone ON kits (phone) WHERE phone <> '';
    """,
    # Each persona's egress proxy (outreach_station.network). A password, if
    # any, is in the OS keyring, never here. `source` says whether a person
    # set it or it was assigned from the platform's pool.
    """
    CREATE TABLE persona_proxies (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        username TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL CHECK (source IN ('persona', 'pool')),
        updated TEXT NOT NULL
    );
    """,
    # The generation of each persona's newest sealed profile (outreach_station.
    # workspace.SealedState): an older genuine file put back, or the file gone,
    # is refused. `pending` is the generation being renamed into place right
    # now; after a crash between rename and commit either one is accepted.
    """
    CREATE TABLE sealed_generations (
        persona_id TEXT PRIMARY KEY,
        generation INTEGER NOT NULL CHECK (generation >= 0),
        pending INTEGER CHECK (pending IS NULL OR pending > generation),
        updated TEXT NOT NULL
    );
    """,
)


@dataclass(frozen=True)
class Persona:
    id: str
    platform: str
    label: str
    status: Status
    created: datetime
    last_opened: datetime | None
    status_changed: datetime
    status_reason: str
    fingerprint: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "label": self.label,
            "status": self.status,
            "created": _iso(self.created),
            "last_opened": _iso(self.last_opened) if self.last_opened else None,
            "status_changed": _iso(self.status_changed),
            "status_reason": self.status_reason,
            "fingerprint": self.fingerprint,
        }


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26


def registry_problem(path: Path, exc: sqlite3.Error) -> StationError:
    """One line for a failure of the registry database, saying what to do."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        # Never "repaired" by recreating it: the personas and their keys' ids are in it.
        return DamagedError(
            f"the registry {path} is damaged and cannot be read; restore it from a backup "
            "(station overwrote nothing)"
        )
    if code == _SQLITE_FULL:
        return EnvironmentProblem(
            f"the disk is full: cannot write {path}; free some space, then try again"
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return BusyError(f"the registry {path} is busy in another station process; try again")
    if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN):
        return EnvironmentProblem(
            f"cannot use the registry at {path}: {exc}; check that STATION_HOME is writable"
        )
    return EnvironmentProblem(f"cannot use the registry at {path}: {exc}")


class Registry:
    """Personas in SQLite. Use as a context manager so the connection is closed."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.path = path
        self.clock = clock
        try:
            ensure_private_dir(path.parent)
        except EnvironmentProblem as exc:
            raise EnvironmentProblem(f"cannot open the registry at {path}: {exc}") from None
        try:
            # 0600 before SQLite makes it 0644 (it holds kit details); -wal and -shm follow it.
            create_private_file(path)
            self._conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise EnvironmentProblem(
                f"cannot open the registry at {path}: {getattr(exc, 'strerror', None) or exc}; "
                "check that STATION_HOME is writable"
            ) from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise registry_problem(path, exc) from None
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: writers queue instead of failing half-way."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise registry_problem(self.path, exc) from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            # A constraint violation is an answer callers handle (kit uniqueness);
            # anything else from SQLite is a damaged, full or unwritable registry.
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                raise registry_problem(self.path, exc) from None
            raise

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise StationError(
                    f"the registry at {self.path} was written by a newer station "
                    f"(schema {current}); upgrade station"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied) VALUES (?, ?)",
                    (version, _iso(self.clock())),
                )

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @staticmethod
    def _row(row: sqlite3.Row) -> Persona:
        return Persona(
            id=row["id"],
            platform=row["platform"],
            label=row["label"],
            status=row["status"],
            created=_parse_time(row["created"]),
            last_opened=_parse_time(row["last_opened"]) if row["last_opened"] else None,
            status_changed=_parse_time(row["status_changed"]),
            status_reason=row["status_reason"],
            fingerprint=json.loads(row["fingerprint"]),
        )

    def create(
        self,
        platform: str,
        *,
        fingerprint: dict[str, Any],
        label: str = "",
        standby: bool = False,
    ) -> Persona:
        """Add a persona: active if its platform has none and standby is not asked."""
        validate_label(label)
        now = _iso(self.clock())
        with self.transaction() as conn:
            has_active = conn.execute(
                "SELECT 1 FROM personas WHERE platform = ? AND status = 'active'", (platform,)
            ).fetchone()
            status: Status = "standby" if standby or has_active else "active"
            persona_id = new_persona_id()
            conn.execute(
                "INSERT INTO personas (id, platform, label, status, created, status_changed, "
                "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (persona_id, platform, label, status, now, now, json.dumps(fingerprint)),
            )
        return self.get(persona_id)

    def get(self, persona_id: str) -> Persona:
        validate_persona_id(persona_id)
        row = self._conn.execute("SELECT * FROM personas WHERE id = ?", (persona_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no persona with id '{persona_id}'")
        return self._row(row)

    def list(self, *, platform: str | None = None, status: Status | None = None) -> list[Persona]:
        query = "SELECT * FROM personas WHERE 1 = 1"
        args: list[str] = []
        if platform is not None:
            query += " AND platform = ?"
            args.append(platform)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        query += " ORDER BY created, rowid"
        return [self._row(r) for r in self._conn.execute(query, args)]

    def active(self, platform: str) -> Persona | None:
        row = self._conn.execute(
            "SELECT * FROM personas WHERE platform = ? AND status = 'active'", (platform,)
        ).fetchone()
        return self._row(row) if row else None

    def mark_opened(self, persona_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE personas SET last_opened = ? WHERE id = ?",
                (_iso(self.clock()), persona_id),
            )

    def set_fingerprint(self, persona_id: str, fingerprint: dict[str, Any]) -> Persona:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE personas SET fingerprint = ? WHERE id = ?",
                (json.dumps(fingerprint), persona_id),
            )
        return self.get(persona_id)

    def rotate(
        self, platform: str, *, reason: str, fresh_fingerprint: Callable[[], dict[str, Any]]
    ) -> tuple[Persona | None, Persona, bool]:
        """Block the platform's active persona and put another in its place, atomically.

        Promotes the oldest standby persona, or creates a fresh one with
        `fresh_fingerprint()` when the pool is empty. Returns the blocked
        persona (None if the platform had no active one), the new active
        persona, and whether it was created.
        """
        validate_reason(reason)
        now = _iso(self.clock())
        with self.transaction() as conn:
            active = conn.execute(
                "SELECT id FROM personas WHERE platform = ? AND status = 'active'", (platform,)
            ).fetchone()
            if active is not None:
                conn.execute(
                    "UPDATE personas SET status = 'blocked', status_changed = ?, "
                    "status_reason = ? WHERE id = ?",
                    (now, reason, active["id"]),
                )
            standby = conn.execute(
                "SELECT id FROM personas WHERE platform = ? AND status = 'standby' "
                "ORDER BY created, rowid LIMIT 1",
                (platform,),
            ).fetchone()
            created = standby is None
            if standby is not None:
                new_id = standby["id"]
                conn.execute(
                    "UPDATE personas SET status = 'active', status_changed = ?, "
                    "status_reason = ? WHERE id = ?",
                    (now, "promoted by rotation", new_id),
                )
            else:
                new_id = new_persona_id()
                conn.execute(
                    "INSERT INTO personas (id, platform, label, status, created, "
                    "status_changed, status_reason, fingerprint) "
                    "VALUES (?, ?, '', 'active', ?, ?, 'created by rotation', ?)",
                    (new_id, platform, now, now, json.dumps(fresh_fingerprint())),
                )
        blocked = self.get(active["id"]) if active is not None else None
        return blocked, self.get(new_id), created

    def transition(self, persona_id: str, to: Status, *, reason: str = "") -> Persona:
        """Move a persona to another lifecycle state, refusing moves that make no sense."""
        validate_reason(reason)
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM personas WHERE id = ?", (persona_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no persona with id '{persona_id}'")
            current: Status = row["status"]
            if to not in ALLOWED_TRANSITIONS[current]:
                raise StateError(
                    f"persona {persona_id} is {current}; it cannot become {to}"
                    + (" (a retired persona never comes back)" if current == "retired" else "")
                )
            if to == "active":
                other = conn.execute(
                    "SELECT id FROM personas WHERE platform = ? AND status = 'active'",
                    (row["platform"],),
                ).fetchone()
                if other is not None:
                    raise StateError(
                        f"platform {row['platform']} already has an active persona ({other[0]})"
                    )
            conn.execute(
                "UPDATE personas SET status = ?, status_changed = ?, status_reason = ? "
                "WHERE id = ?",
                (to, _iso(self.clock()), reason, persona_id),
            )
        return self.get(persona_id)

    def kit_row(self, persona_id: str) -> dict[str, str] | None:
        """One persona's identity-kit row as stored, or None (see `outreach_station.kit`)."""
        row = self._conn.execute(
            "SELECT * FROM kits WHERE persona_id = ?", (persona_id,)
        ).fetchone()
        return dict(row) if row else None

    def kit_rows(self) -> tuple[dict[str, str], ...]:
        """Every identity-kit row as stored, whatever the persona's status."""
        return tuple(dict(r) for r in self._conn.execute("SELECT * FROM kits ORDER BY persona_id"))

    def sealed_generation(self, persona_id: str) -> tuple[int, int | None]:
        """The persona's sealed generation on record and the one pending (0, None: never sealed)."""
        row = self._conn.execute(
            "SELECT generation, pending FROM sealed_generations WHERE persona_id = ?",
            (persona_id,),
        ).fetchone()
        if row is None:
            return 0, None
        return int(row["generation"]), None if row["pending"] is None else int(row["pending"])

    def begin_sealed_generation(self, persona_id: str, generation: int) -> None:
        """Record `generation` as pending: called just before its file is renamed into place."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (?, 0, ?, ?) ON CONFLICT (persona_id) DO UPDATE SET "
                "pending = excluded.pending, updated = excluded.updated",
                (persona_id, generation, _iso(self.clock())),
            )

    def commit_sealed_generation(self, persona_id: str, generation: int) -> None:
        """`generation` is the persona's sealed profile now; nothing is pending."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (?, ?, NULL, ?) ON CONFLICT (persona_id) DO UPDATE SET "
                "generation = excluded.generation, pending = NULL, updated = excluded.updated",
                (persona_id, generation, _iso(self.clock())),
            )
