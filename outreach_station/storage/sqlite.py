"""The local storage backend: SQLite files under the station home.

The only module that writes SQL for station's own data. The registry
(`StationPaths.registry`) holds personas and their lifecycle, identity-kit
details, proxies and sealed generations; a partial unique index makes "at
most one active persona per platform" hold even against concurrent writers.
The audit anchor (`StationPaths.audit_anchor`) is a file of its own, see
`SqliteAnchorStore`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from outreach_station.clock import iso as _iso
from outreach_station.clock import iso_offset
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
from outreach_station.i18n import _
from outreach_station.ids import new_persona_id, validate_persona_id
from outreach_station.personas import ALLOWED_TRANSITIONS, Persona, Status
from outreach_station.storage.base import AnchorRow, ProxyRecord, UniqueConflict
from outreach_station.values import validate_label, validate_reason

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


def _proxy_time(moment: datetime) -> str:
    # The proxies table has always been written with +00:00, not Z.
    return iso_offset(moment)


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26


def registry_problem(path: Path, exc: sqlite3.Error) -> StationError:
    """One line for a failure of the registry database, saying what to do."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        # Never "repaired" by recreating it: the personas and their keys' ids are in it.
        return DamagedError(
            _(
                "the registry {path} is damaged and cannot be read; restore it from "
                "a backup (station overwrote nothing)"
            ).format(path=path)
        )
    if code == _SQLITE_FULL:
        return EnvironmentProblem(
            _("the disk is full: cannot write {path}; free some space, then try again").format(
                path=path
            )
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return BusyError(
            _("the registry {path} is busy in another station process; try again").format(path=path)
        )
    if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN):
        return EnvironmentProblem(
            _(
                "cannot use the registry at {path}: {exc}; check that STATION_HOME is writable"
            ).format(path=path, exc=exc)
        )
    return EnvironmentProblem(
        _("cannot use the registry at {path}: {exc}").format(path=path, exc=exc)
    )


class SqliteStore:
    """The registry in SQLite. Use as a context manager so the connection is closed."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.path = path
        self.clock = clock
        try:
            ensure_private_dir(path.parent)
        except EnvironmentProblem as exc:
            raise EnvironmentProblem(
                _("cannot open the registry at {path}: {exc}").format(path=path, exc=exc)
            ) from None
        try:
            # 0600 before SQLite makes it 0644 (it holds kit details); -wal and -shm follow it.
            create_private_file(path)
            self._conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise EnvironmentProblem(
                _(
                    "cannot open the registry at {path}: {reason}; check that "
                    "STATION_HOME is writable"
                ).format(path=path, reason=getattr(exc, "strerror", None) or exc)
            ) from None
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
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

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """An IMMEDIATE transaction: writers queue instead of failing half-way; nests."""
        with self._write():
            yield

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._depth:
            # Inside another transaction of this handle: its COMMIT is ours too.
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise registry_problem(self.path, exc) from None
        self._depth = 1
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise registry_problem(self.path, exc) from None
            raise
        finally:
            self._depth = 0

    def _rows(self, query: str, args: Any = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise registry_problem(self.path, exc) from None

    def _row_or_none(self, query: str, args: Any = ()) -> sqlite3.Row | None:
        rows = self._rows(query, args)
        return rows[0] if rows else None

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise StationError(
                    _(
                        "the registry at {path} was written by a newer station (schema "
                        "{current}); upgrade station"
                    ).format(path=self.path, current=current)
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
        row = self._row_or_none("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

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
        with self._write() as conn:
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
        row = self._row_or_none("SELECT * FROM personas WHERE id = ?", (persona_id,))
        if row is None:
            raise NotFoundError(
                _("no persona with id '{persona_id}'").format(persona_id=persona_id)
            )
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
        return [self._row(r) for r in self._rows(query, args)]

    def active(self, platform: str) -> Persona | None:
        row = self._row_or_none(
            "SELECT * FROM personas WHERE platform = ? AND status = 'active'", (platform,)
        )
        return self._row(row) if row else None

    def mark_opened(self, persona_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE personas SET last_opened = ? WHERE id = ?",
                (_iso(self.clock()), persona_id),
            )

    def set_fingerprint(self, persona_id: str, fingerprint: dict[str, Any]) -> Persona:
        with self._write() as conn:
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
        with self._write() as conn:
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

    def undo_rotation(
        self, platform: str, *, blocked_id: str, promoted_id: str, reason: str
    ) -> tuple[Persona, Persona]:
        """Put the last rotation back, atomically: `blocked_id` active, `promoted_id` standby.

        The one way a blocked persona becomes active again (see `ALLOWED_TRANSITIONS`);
        refused unless the two are still exactly as that rotation left them.
        """
        validate_reason(reason)
        now = _iso(self.clock())
        with self._write() as conn:
            rows = {
                r["id"]: r["status"]
                for r in conn.execute(
                    "SELECT id, status FROM personas WHERE platform = ? AND id IN (?, ?)",
                    (platform, blocked_id, promoted_id),
                )
            }
            if rows.get(blocked_id) != "blocked" or rows.get(promoted_id) != "active":
                raise StateError(
                    _(
                        "platform {platform} changed since its last rotation; nothing was undone"
                    ).format(platform=platform)
                )
            conn.execute(
                "UPDATE personas SET status = 'standby', status_changed = ?, "
                "status_reason = ? WHERE id = ?",
                (now, reason, promoted_id),
            )
            conn.execute(
                "UPDATE personas SET status = 'active', status_changed = ?, "
                "status_reason = ? WHERE id = ?",
                (now, reason, blocked_id),
            )
        return self.get(blocked_id), self.get(promoted_id)

    def transition(self, persona_id: str, to: Status, *, reason: str = "") -> Persona:
        """Move a persona to another lifecycle state, refusing moves that make no sense."""
        validate_reason(reason)
        with self._write() as conn:
            row = conn.execute("SELECT * FROM personas WHERE id = ?", (persona_id,)).fetchone()
            if row is None:
                raise NotFoundError(
                    _("no persona with id '{persona_id}'").format(persona_id=persona_id)
                )
            current: Status = row["status"]
            if to not in ALLOWED_TRANSITIONS[current]:
                raise StateError(
                    _("persona {persona_id} is {current}; it cannot become {to}").format(
                        persona_id=persona_id, current=current, to=to
                    )
                    + (_(" (a retired persona never comes back)") if current == "retired" else "")
                )
            if to == "active":
                other = conn.execute(
                    "SELECT id FROM personas WHERE platform = ? AND status = 'active'",
                    (row["platform"],),
                ).fetchone()
                if other is not None:
                    raise StateError(
                        _("platform {platform} already has an active persona ({other})").format(
                            platform=row["platform"], other=other[0]
                        )
                    )
            conn.execute(
                "UPDATE personas SET status = ?, status_changed = ?, status_reason = ? "
                "WHERE id = ?",
                (to, _iso(self.clock()), reason, persona_id),
            )
        return self.get(persona_id)

    def kit_row(self, persona_id: str) -> dict[str, str] | None:
        """One persona's identity-kit row as stored, or None (see `outreach_station.kit`)."""
        row = self._row_or_none("SELECT * FROM kits WHERE persona_id = ?", (persona_id,))
        return dict(row) if row else None

    def kit_rows(self) -> tuple[dict[str, str], ...]:
        """Every identity-kit row as stored, whatever the persona's status."""
        return tuple(dict(r) for r in self._rows("SELECT * FROM kits ORDER BY persona_id"))

    def put_kit(self, persona_id: str, values: Mapping[str, str]) -> None:
        """Write one persona's kit row (every detail column); refuses a detail in use elsewhere."""
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO kits (persona_id, username, email, phone, card_label, "
                    "card_last4, updated) VALUES (:persona_id, :username, :email, :phone, "
                    ":card_label, :card_last4, :updated) ON CONFLICT (persona_id) DO UPDATE "
                    "SET username = excluded.username, email = excluded.email, "
                    "phone = excluded.phone, card_label = excluded.card_label, "
                    "card_last4 = excluded.card_last4, updated = excluded.updated",
                    {**values, "persona_id": persona_id, "updated": _iso(self.clock())},
                )
            except sqlite3.IntegrityError:
                # The unique indexes: another process took the same detail a moment ago.
                # Raised inside the transaction (which rolls back), not as a registry problem.
                raise UniqueConflict(
                    _("another persona already uses one of these details")
                ) from None

    def proxy(self, persona_id: str) -> ProxyRecord | None:
        row = self._row_or_none(
            "SELECT url, username, source FROM persona_proxies WHERE persona_id = ?",
            (persona_id,),
        )
        if row is None:
            return None
        return ProxyRecord(
            persona_id=persona_id, url=row["url"], username=row["username"], source=row["source"]
        )

    def put_proxy(self, record: ProxyRecord) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO persona_proxies (persona_id, url, username, source, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (persona_id) DO UPDATE SET "
                "url = excluded.url, username = excluded.username, source = excluded.source, "
                "updated = excluded.updated",
                (
                    record.persona_id,
                    record.url,
                    record.username,
                    record.source,
                    _proxy_time(self.clock()),
                ),
            )

    def delete_proxy(self, persona_id: str) -> bool:
        with self._write() as conn:
            gone = conn.execute(
                "DELETE FROM persona_proxies WHERE persona_id = ?", (persona_id,)
            ).rowcount
        return bool(gone)

    def platform_proxies(self, platform: str, *, excluding: str) -> Sequence[tuple[str, Status]]:
        """The proxy of every other persona of the platform, with that persona's status."""
        rows = self._rows(
            "SELECT p.url, s.status FROM persona_proxies p JOIN personas s ON s.id = p.persona_id "
            "WHERE s.platform = ? AND p.persona_id <> ?",
            (platform, excluding),
        )
        return [(str(r["url"]), r["status"]) for r in rows]

    def sealed_generation(self, persona_id: str) -> tuple[int, int | None]:
        """The persona's sealed generation on record and the one pending (0, None: never sealed)."""
        row = self._row_or_none(
            "SELECT generation, pending FROM sealed_generations WHERE persona_id = ?",
            (persona_id,),
        )
        if row is None:
            return 0, None
        return int(row["generation"]), None if row["pending"] is None else int(row["pending"])

    def begin_sealed_generation(self, persona_id: str, generation: int) -> None:
        """Record `generation` as pending: called just before its file is renamed into place."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (?, 0, ?, ?) ON CONFLICT (persona_id) DO UPDATE SET "
                "pending = excluded.pending, updated = excluded.updated",
                (persona_id, generation, _iso(self.clock())),
            )

    def commit_sealed_generation(self, persona_id: str, generation: int) -> None:
        """`generation` is the persona's sealed profile now; nothing is pending."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (?, ?, NULL, ?) ON CONFLICT (persona_id) DO UPDATE SET "
                "generation = excluded.generation, pending = NULL, updated = excluded.updated",
                (persona_id, generation, _iso(self.clock())),
            )


_ANCHOR_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS anchors (log TEXT PRIMARY KEY, "
    "count INTEGER NOT NULL CHECK (count >= 0), last_hash TEXT NOT NULL, pending TEXT, mac TEXT)",
    "CREATE TABLE IF NOT EXISTS hashes (log TEXT NOT NULL, seq INTEGER NOT NULL, "
    "hash TEXT NOT NULL, PRIMARY KEY (log, seq))",
)


class SqliteAnchorStore:
    """The anchor's SQLite file: one head and the anchored hashes per log."""

    def __init__(self, path: Path) -> None:
        ensure_private_dir(path.parent)
        try:
            create_private_file(path)
            self._conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode = WAL")
            for statement in _ANCHOR_SCHEMA:
                self._conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise EnvironmentProblem(
                _("cannot use the audit anchor at {path}: {reason}").format(
                    path=path, reason=getattr(exc, "strerror", None) or exc
                )
            ) from None

    def __enter__(self) -> SqliteAnchorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def row(self, log: str) -> AnchorRow | None:
        found = self._conn.execute(
            "SELECT count, last_hash, pending, mac FROM anchors WHERE log = ?", (log,)
        ).fetchone()
        if found is None:
            return None
        count, last_hash, pending, mac = found
        return AnchorRow(count=int(count), last_hash=str(last_hash), pending=pending, mac=mac)

    def hashes(self, log: str) -> dict[int, str]:
        rows = self._conn.execute("SELECT seq, hash FROM hashes WHERE log = ?", (log,))
        return {int(seq): str(digest) for seq, digest in rows}

    def store(self, log: str, row: AnchorRow, hashes: Mapping[int, str] | None = None) -> None:
        self._conn.execute(
            "INSERT INTO anchors (log, count, last_hash, pending, mac) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (log) DO UPDATE SET count = excluded.count, "
            "last_hash = excluded.last_hash, pending = excluded.pending, mac = excluded.mac",
            (log, row.count, row.last_hash, row.pending, row.mac),
        )
        self._conn.executemany(
            "INSERT OR REPLACE INTO hashes (log, seq, hash) VALUES (?, ?, ?)",
            [(log, seq, digest) for seq, digest in (hashes or {}).items()],
        )

    def reset(self, log: str, row: AnchorRow) -> None:
        self._conn.execute("DELETE FROM hashes WHERE log = ?", (log,))
        self.store(log, row)
