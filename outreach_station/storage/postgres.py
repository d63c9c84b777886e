"""The team storage backend: the organisation's own PostgreSQL server.

What the local backend keeps (personas and their lifecycle, kits, proxies,
sealed generations) plus what a team needs: leases with fencing tokens,
one append-only audit trail, and sealed blobs and generations. The server
only ever holds what the vault already sealed: blobs and manifests are
opaque ciphertext here.

Connection: a libpq URL or conninfo (``postgresql://station@db.clinic:5432/
station?sslmode=verify-full``), whose libpq settings (``sslmode``,
``sslrootcert``, ...) are respected as given. The URL must not carry a
password: the password comes from the OS keyring (`password_entry`) and is
handed to psycopg as a keyword, so it is never in argv, the environment, a
file or an error message.

Roles (least privilege; see docs/team.md). The schema belongs to an owner
role that runs the migrations (`station team init`, or IT). Station's login
roles are members of the group role ``station_app``, which the migrations
grant exactly this:

.. code-block:: sql

    GRANT SELECT, INSERT, UPDATE, DELETE ON personas, kits, persona_proxies,
        sealed_generations, leases, blobs, blob_chunks, generations,
        current_generations TO station_app;
    GRANT SELECT, INSERT ON audit_records TO station_app;   -- never UPDATE/DELETE
    GRANT SELECT ON schema_migrations, team TO station_app;
    GRANT SELECT, INSERT ON members TO station_app;                -- never DELETE
    GRANT UPDATE (status, approved_by, approved, removed, approval)
        ON members TO station_app;   -- and a trigger: pending -> approved -> removed
    GRANT SELECT, INSERT, UPDATE, DELETE ON wrapped_keys, rekey_due, kit_secrets
        TO station_app;
    GRANT USAGE ON SEQUENCE persona_seq, lease_tokens, audit_records_seq_seq
        TO station_app;

A trigger refuses UPDATE, DELETE and TRUNCATE of audit records for every
role but a superuser that disables it, so even the owner cannot quietly edit
the trail.

Leases use the server's clock (``now()``), never a laptop's. A fencing token
comes from one sequence, so it only grows; releasing or unlocking a lease
moves its token on, so whoever held it is fenced off. A generation becomes
current only in the transaction that checks the writer's token against the
lease's: a laptop whose token is no longer the lease's (someone else opened
the persona since, or it was unlocked) can never overwrite a newer
generation. A token that is still the lease's is accepted even after the
lease expired: nobody took the persona meanwhile, so nothing newer exists.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from outreach_station.clock import utcnow as _utcnow
from outreach_station.errors import (
    BusyError,
    EnvironmentProblem,
    IntegrityError,
    NotFoundError,
    SecurityError,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.i18n import _
from outreach_station.ids import new_persona_id, validate_persona_id
from outreach_station.personas import ALLOWED_TRANSITIONS, Persona, Status
from outreach_station.storage.base import ProxyRecord, UniqueConflict
from outreach_station.values import printable, validate_label, validate_reason

if TYPE_CHECKING:
    import psycopg

# The group role station's login roles belong to; the migrations grant to it.
APP_ROLE: Final = "station_app"
# Blobs are kept in rows of at most this many bytes: bytea rewrites whole
# values, and a row this size keeps each insert's memory small.
CHUNK_BYTES: Final = 1 << 20
_KEYRING_PREFIX: Final = "team-database/"
# The holder's and the asker's names as they joined (the `member` columns are not
# keys of `members`: unqualified `member` inside the subqueries is the lease's).
_LEASE_COLUMNS: Final = (
    "persona_id, member, host, since, expires, token, expires <= now() AS expired, "
    "close_token, close_member, close_host, close_reason, close_asked, close_seen, "
    "(SELECT display_name FROM members WHERE member_id = member) AS member_name, "
    "(SELECT display_name FROM members WHERE member_id = close_member) AS close_member_name"
)
# What a lease's token change or close request announces (migration 10).
LEASE_CHANNEL: Final = "station_leases"
# pg_advisory_xact_lock keys: one for migrations, one for the audit chain's tail.
_MIGRATION_LOCK: Final = 0x5354_4D31
_AUDIT_LOCK: Final = 0x5354_4131

MIGRATIONS: tuple[str, ...] = (
    # 1: what the local registry holds. `seq` orders personas as SQLite's rowid does.
    """
    CREATE SEQUENCE persona_seq;
    CREATE TABLE personas (
        id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('persona_seq'),
        platform TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('standby', 'active', 'blocked', 'retired')),
        created TIMESTAMPTZ NOT NULL,
        last_opened TIMESTAMPTZ,
        status_changed TIMESTAMPTZ NOT NULL,
        status_reason TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_active_persona_per_platform
        ON personas (platform) WHERE status = 'active';
    CREATE INDEX personas_by_platform ON personas (platform, status);
    CREATE TABLE kits (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        username TEXT NOT NULL DEFAULT '',
        email TEXT NOT NULL DEFAULT '',
        phone TEXT NOT NULL DEFAULT '',
        card_label TEXT NOT NULL DEFAULT '',
        card_last4 TEXT NOT NULL DEFAULT ''
            CHECK (card_last4 = '' OR card_last4 ~ '^[0-9]{4}$'),
        updated TIMESTAMPTZ NOT NULL
    );
    CREATE UNIQUE INDEX kits_unique_username ON kits (lower(username)) WHERE username <> '';
    CREATE UNIQUE INDEX kits_unique_email ON kits (lower(email)) WHERE email <> '';
    CREATE UNIQUE INDEX kits_unique_phone ON kits (phone) WHERE phone <> '';
    CREATE TABLE persona_proxies (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        username TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL CHECK (source IN ('persona', 'pool')),
        updated TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE sealed_generations (
        persona_id TEXT PRIMARY KEY,
        generation BIGINT NOT NULL CHECK (generation >= 0),
        pending BIGINT CHECK (pending IS NULL OR pending > generation),
        updated TIMESTAMPTZ NOT NULL
    );
    GRANT SELECT, INSERT, UPDATE, DELETE
        ON personas, kits, persona_proxies, sealed_generations TO station_app;
    GRANT USAGE ON SEQUENCE persona_seq TO station_app;
    """,
    # 2: leases. A row stays once made, so its token keeps growing from one sequence.
    """
    CREATE SEQUENCE lease_tokens;
    CREATE TABLE leases (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        member TEXT,
        host TEXT,
        since TIMESTAMPTZ,
        expires TIMESTAMPTZ NOT NULL,
        token BIGINT NOT NULL CHECK (token > 0),
        CHECK ((member IS NULL) = (host IS NULL) AND (member IS NULL) = (since IS NULL))
    );
    CREATE FUNCTION leases_token_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.token <= OLD.token THEN
            RAISE EXCEPTION 'a lease''s fencing token only grows' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER leases_token_only_grows BEFORE UPDATE OF token ON leases
        FOR EACH ROW EXECUTE FUNCTION leases_token_only_grows();
    GRANT SELECT, INSERT, UPDATE, DELETE ON leases TO station_app;
    GRANT USAGE ON SEQUENCE lease_tokens TO station_app;
    """,
    # 3: the team's audit trail, append-only for everyone.
    """
    CREATE TABLE audit_records (
        seq BIGSERIAL PRIMARY KEY,
        recorded TIMESTAMPTZ NOT NULL DEFAULT now(),
        member TEXT NOT NULL,
        host TEXT NOT NULL,
        record TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
        FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
    CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
        FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
    REVOKE ALL ON audit_records FROM PUBLIC;
    GRANT SELECT, INSERT ON audit_records TO station_app;
    GRANT USAGE ON SEQUENCE audit_records_seq_seq TO station_app;
    """,
    # 4: sealed blobs (chunked) and generations. A blob row is put in the same
    # transaction as all its chunks, so a blob is whole or absent.
    """
    CREATE TABLE blobs (
        persona_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
        name TEXT NOT NULL CHECK (name ~ '^[0-9a-f]+$'),
        size BIGINT NOT NULL CHECK (size >= 0),
        chunks INTEGER NOT NULL CHECK (chunks >= 0),
        PRIMARY KEY (persona_id, name)
    );
    CREATE TABLE blob_chunks (
        persona_id TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL CHECK (seq >= 0),
        data BYTEA NOT NULL,
        PRIMARY KEY (persona_id, name, seq),
        FOREIGN KEY (persona_id, name) REFERENCES blobs (persona_id, name) ON DELETE CASCADE
    );
    CREATE TABLE generations (
        persona_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
        generation BIGINT NOT NULL CHECK (generation > 0),
        manifest BYTEA NOT NULL,
        blob_names TEXT[] NOT NULL,
        token BIGINT NOT NULL,
        member TEXT NOT NULL,
        committed TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (persona_id, generation)
    );
    CREATE TABLE current_generations (
        persona_id TEXT PRIMARY KEY,
        generation BIGINT NOT NULL,
        FOREIGN KEY (persona_id, generation) REFERENCES generations (persona_id, generation)
    );
    GRANT SELECT, INSERT, UPDATE, DELETE
        ON blobs, blob_chunks, generations, current_generations TO station_app;
    """,
    # 5: the team, its members and the persona data keys wrapped for them.
    # Only the owner names the team (station_app may read it); a member row
    # can never say it approved itself, whoever writes it.
    """
    CREATE TABLE team (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        team_id TEXT NOT NULL CHECK (team_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
        created TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE members (
        member_id TEXT PRIMARY KEY CHECK (member_id ~ '^[a-z2-7]{16}$'),
        display_name TEXT NOT NULL,
        host TEXT NOT NULL,
        public_key BYTEA NOT NULL UNIQUE CHECK (length(public_key) = 32),
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'removed')),
        approved_by TEXT REFERENCES members (member_id),
        joined TIMESTAMPTZ NOT NULL DEFAULT now(),
        approved TIMESTAMPTZ,
        removed TIMESTAMPTZ,
        CHECK (approved_by IS NULL OR approved_by <> member_id)
    );
    CREATE TABLE wrapped_keys (
        persona_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
        member_id TEXT NOT NULL REFERENCES members (member_id),
        key_version BIGINT NOT NULL CHECK (key_version >= 1),
        sealed BYTEA NOT NULL,
        PRIMARY KEY (persona_id, member_id, key_version)
    );
    CREATE TABLE rekey_due (
        persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
        since TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    GRANT SELECT ON team TO station_app;
    GRANT SELECT, INSERT, UPDATE ON members TO station_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON wrapped_keys, rekey_due TO station_app;
    """,
    # 6: signed approvals, and members rows station's role cannot rewrite.
    # Each member's Ed25519 key and the signature of its approval (laptops
    # check the chain back to the founder: team.members.verified_roster).
    # station_app may update only the columns approve and remove set, and
    # only along pending -> approved -> removed; an approved row is inserted
    # only by the founder of a team without approved members.
    """
    ALTER TABLE members
        ADD COLUMN signing_key BYTEA CHECK (length(signing_key) = 32),
        ADD COLUMN approval BYTEA CHECK (length(approval) = 64);
    REVOKE UPDATE ON members FROM station_app;
    GRANT UPDATE (status, approved_by, approved, removed, approval) ON members TO station_app;
    CREATE FUNCTION members_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.status = 'approved'
                AND EXISTS (SELECT 1 FROM members WHERE status = 'approved') THEN
                RAISE EXCEPTION 'a member is approved by another member, never inserted approved';
            END IF;
            IF NEW.status = 'removed' THEN
                RAISE EXCEPTION 'a member is not inserted removed';
            END IF;
            RETURN NEW;
        END IF;
        IF OLD.status = 'removed' THEN
            RAISE EXCEPTION 'a removed member stays removed';
        END IF;
        IF NEW.member_id <> OLD.member_id OR NEW.public_key <> OLD.public_key
            OR NEW.signing_key IS DISTINCT FROM OLD.signing_key THEN
            RAISE EXCEPTION 'a member''s id and keys never change';
        END IF;
        IF OLD.status = 'approved' AND (NEW.status = 'pending'
            OR NEW.approval IS DISTINCT FROM OLD.approval
            OR NEW.approved_by IS DISTINCT FROM OLD.approved_by) THEN
            RAISE EXCEPTION 'an approval is never changed';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER members_guard BEFORE INSERT OR UPDATE ON members
        FOR EACH ROW EXECUTE FUNCTION members_guard();
    """,
    # 7: which data key version sealed each generation, so every laptop unseals
    # old and new generations with the right key after a re-key. Generations
    # committed before this migration were all sealed with version 1.
    """
    ALTER TABLE generations
        ADD COLUMN key_version BIGINT NOT NULL DEFAULT 1 CHECK (key_version >= 1);
    """,
    # 8 (the team's audit trail from every laptop): each record names the
    # laptop's own local record it copies (`origin`, that record's hash), so a
    # record sent again after a lost reply is not stored twice.
    """
    ALTER TABLE audit_records ADD COLUMN origin TEXT UNIQUE;
    """,
    # 9 (station team push): a persona moved in from a laptop's own registry is
    # hidden (`moving_in`: the member moving it) until its sealed profile is
    # committed, so that no laptop opens it empty or promotes it meanwhile.
    """
    ALTER TABLE personas ADD COLUMN moving_in TEXT;
    """,
    # 10 (rotation from another laptop): a request that the holder of a lease
    # close its session, for the token it was made for only (a new holder never
    # inherits it), and whether the holder has seen it. Every change of a
    # lease's token or close request is announced on the channel
    # `station_leases` (payload: the persona's id), so that a holder hears that
    # it was asked to close, or lost its lease, within a second.
    """
    ALTER TABLE leases
        ADD COLUMN close_token BIGINT,
        ADD COLUMN close_member TEXT,
        ADD COLUMN close_host TEXT,
        ADD COLUMN close_reason TEXT,
        ADD COLUMN close_asked TIMESTAMPTZ,
        ADD COLUMN close_seen TIMESTAMPTZ;
    CREATE FUNCTION leases_announce() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('station_leases', NEW.persona_id);
        RETURN NULL;
    END $$;
    CREATE TRIGGER leases_announce AFTER UPDATE OF token, close_token ON leases
        FOR EACH ROW EXECUTE FUNCTION leases_announce();
    """,
    # 11 (signed audit records): each record of the trail is signed by the
    # member who sent it (Ed25519 over the team id and the record's hash), so
    # a rewrite of the chain by whoever controls the database is seen by every
    # laptop's `audit verify`, not only by the one whose record was cut.
    """
    ALTER TABLE audit_records ADD COLUMN signature BYTEA;
    """,
    # 12 (kit secrets across laptops): a persona's kit secrets, sealed on a
    # laptop with a key derived from the persona's data key (`team.kit_secrets`);
    # the server holds ciphertext only. Deleted with the persona's keys when
    # it is shredded.
    """
    CREATE TABLE kit_secrets (
        persona_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
        field TEXT NOT NULL CHECK (field IN ('password', 'totp-seed')),
        key_version BIGINT NOT NULL CHECK (key_version >= 1),
        sealed BYTEA NOT NULL,
        updated TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (persona_id, field)
    );
    GRANT SELECT, INSERT, UPDATE, DELETE ON kit_secrets TO station_app;
    """,
    # 13 (proxy passwords across laptops): a persona's proxy password is kept
    # as its kit secrets are, sealed with the persona's key, so the persona's
    # proxy works on every member's laptop.
    """
    ALTER TABLE kit_secrets DROP CONSTRAINT kit_secrets_field_check;
    ALTER TABLE kit_secrets ADD CONSTRAINT kit_secrets_field_check
        CHECK (field IN ('password', 'totp-seed', 'proxy-password'));
    """,
)


def _who(member: str, name: str) -> str:
    """A member as colleagues know them: the name they joined with, and the id that proves it."""
    if not name:
        return member
    return _("{name} ({member})").format(name=printable(name), member=member)


@dataclass(frozen=True)
class CloseRequest:
    """Another laptop asked the lease's holder to close its session (`station rotate`)."""

    member: str
    host: str
    reason: str
    asked: datetime
    seen: datetime | None  # when the holder said it is closing (None: not yet)
    member_name: str = ""  # as the asker joined the team ("" if not a member)

    def who(self) -> str:
        return _who(self.member, self.member_name)


@dataclass(frozen=True)
class Lease:
    """Who holds a persona on the server, by the server's clock."""

    persona_id: str
    member: str
    host: str
    since: datetime
    expires: datetime
    token: int
    expired: bool
    # A request to close, made for this very token (a new holder never inherits one).
    close: CloseRequest | None = None
    member_name: str = ""  # as the holder joined the team ("" if not a member)

    def describe(self) -> str:
        when = self.since.astimezone().strftime("%Y-%m-%d %H:%M")
        return _("{member} on {host} since {when}").format(
            member=_who(self.member, self.member_name), host=printable(self.host), when=when
        )


@dataclass(frozen=True)
class AuditRecord:
    """One record of the team's audit trail as stored (`record` is opaque here)."""

    seq: int
    recorded: datetime
    member: str
    host: str
    record: str
    hash: str
    origin: str | None = None
    signature: bytes | None = None


def _audit_record(row: Mapping[str, Any]) -> AuditRecord:
    signature = row.get("signature")
    return AuditRecord(**{**row, "signature": bytes(signature) if signature is not None else None})


@dataclass(frozen=True)
class Generation:
    """A persona's current sealed generation on the server: its manifest is ciphertext."""

    persona_id: str
    generation: int
    manifest: bytes
    blob_names: tuple[str, ...]
    token: int
    member: str
    # The persona data key version its manifest and blobs are sealed with.
    key_version: int = 1


@dataclass(frozen=True)
class MemberRecord:
    """A member row as stored; `team.members.Member` judges it (its id must match its key)."""

    member_id: str
    display_name: str
    host: str
    public_key: bytes
    status: str
    approved_by: str | None
    joined: datetime
    approved: datetime | None
    removed: datetime | None
    signing_key: bytes | None = None
    approval: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WrappedKeyRecord:
    """A persona data key wrapped for one member, as stored (opaque `sealed`)."""

    persona_id: str
    member_id: str
    key_version: int
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class KitSecretRecord:
    """One kit secret as stored: sealed on a laptop with the persona's key (opaque `sealed`)."""

    persona_id: str
    name: str  # the kit's field: password or totp-seed
    key_version: int
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class ShredResult:
    """What the server deleted of a persona when it was shredded (counts of rows)."""

    wrapped_keys: int
    kit_secrets: int
    generations: int
    blobs: int


@dataclass(frozen=True)
class TeamConnection:
    """Where the team's server is: a libpq URL or conninfo, never holding a password."""

    url: str

    def __post_init__(self) -> None:
        params = _parse_conninfo(self.url)
        if "password" in params or "passfile" in params:
            # Not echoed: the URL holds a secret.
            raise UsageError(
                _(
                    "the team server URL must not contain a password; remove it from "
                    "the URL and keep the password in the OS keyring"
                )
            )

    @property
    def where(self) -> str:
        """host:port/database, for messages."""
        params = _parse_conninfo(self.url)
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        return f"{host}:{port}/{params.get('dbname') or params.get('user') or '?'}"


def _parse_conninfo(url: str) -> dict[str, str]:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    parsed: dict[str, Any] | None
    try:
        parsed = conninfo_to_dict(url)
    except ProgrammingError:
        parsed = None
    if parsed is None:
        # Raised outside the handler so that libpq's message, which quotes the
        # text it could not parse (perhaps a password), is not even the context.
        raise UsageError(
            _(
                "the team server URL is malformed; expected "
                "postgresql://ROLE@HOST:PORT/DATABASE?sslmode=verify-full"
            )
        )
    return {key: str(value) for key, value in parsed.items() if value is not None}


def password_entry(connection: TeamConnection) -> str:
    """The keyring entry holding the database password of this URL's role and server."""
    params = _parse_conninfo(connection.url)
    user = params.get("user", "")
    return f"{_KEYRING_PREFIX}{user}@{connection.where}"


def keyring_password(connection: TeamConnection) -> str:
    """The database password from the OS keyring; refused when none is stored."""
    from outreach_station import secret_store

    entry = password_entry(connection)
    found = secret_store.read(entry, what="team database password")
    if found is None:
        raise EnvironmentProblem(
            _(
                "no password for the team server {where} in the OS keyring (entry "
                "{entry!r}); join the team again (station team join URL)"
            ).format(where=connection.where, entry=entry)
        )
    return found


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _connect_problem(
    connection: TeamConnection, exc: BaseException, password: str | None
) -> StationError:
    """One line for a failed connection: never libpq's raw text, never the password."""
    text = _scrub(str(exc), password).lower()
    where = connection.where.rsplit("/", 1)[0]
    if "password authentication failed" in text or "no password supplied" in text:
        return SecurityError(
            _(
                "the team server {where} refused the database password; ask IT to "
                "check the role, then store the right password with station team "
                "join"
            ).format(where=where)
        )
    if "ssl" in text or "certificate" in text:
        return SecurityError(
            _(
                "no trusted TLS connection to the team server {where} (sslmode in "
                "the URL); check the server's certificate and sslrootcert with IT"
            ).format(where=where)
        )
    if "does not exist" in text:
        return EnvironmentProblem(
            _(
                "the team server {where} has no such database or role ({database}); "
                "check the URL with IT"
            ).format(where=where, database=connection.where)
        )
    return EnvironmentProblem(
        _(
            "cannot reach the team server at {where}; check the network (VPN) "
            "and that the server is running, then try again (a persona cannot "
            "be opened without it)"
        ).format(where=where)
    )


class PostgresStore:
    """The team store on one connection. Use as a context manager so it is closed."""

    def __init__(
        self,
        connection: TeamConnection,
        *,
        password: str | None,
        clock: Callable[[], datetime] = _utcnow,
        connect_timeout: int = 10,
    ) -> None:
        import psycopg

        self.connection = connection
        self.clock = clock
        self._depth = 0
        failed: StationError | None = None
        try:
            self._conn: psycopg.Connection[Any] = psycopg.connect(
                connection.url,
                password=password,
                autocommit=True,
                connect_timeout=connect_timeout,
                application_name="outreach-station",
            )
        except psycopg.Error as exc:
            failed = _connect_problem(connection, exc, password)
        if failed is not None:
            # Outside the handler: libpq's text is not kept even as the context.
            raise failed
        # Nothing below may need it: errors after this point cannot echo it.
        del password
        try:
            # Times come back in UTC whatever the server's own zone, as the local registry's.
            self._conn.execute("SET TIME ZONE 'UTC'")
            self._migrate()
        except psycopg.Error as exc:
            self._conn.close()
            raise self._problem(exc) from None
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # Transactions and errors.

    def _problem(self, exc: Exception) -> StationError:
        import psycopg
        from psycopg import errors as pg

        where = self.connection.where
        if isinstance(exc, pg.UniqueViolation) and "kits" in (exc.diag.table_name or ""):
            return UniqueConflict(_("another persona already uses one of these details"))
        if isinstance(exc, pg.InsufficientPrivilege):
            return SecurityError(
                _(
                    "the team server {where} refused: {message_primary}; station's role "
                    "lacks that right (see docs/team.md for the grants)"
                ).format(where=where, message_primary=exc.diag.message_primary)
            )
        if isinstance(exc, psycopg.OperationalError) and self._conn.closed:
            return EnvironmentProblem(
                _(
                    "lost the connection to the team server {where}; check the network, "
                    "then try again"
                ).format(where=where)
            )
        return EnvironmentProblem(
            _("the team server {where} failed: {reason}").format(
                where=where,
                reason=exc.diag.message_primary if hasattr(exc, "diag") else type(exc).__name__,
            )
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One server transaction; an inner one joins the outer."""
        with self._tx():
            yield

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        if self._depth:
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._conn.transaction():
                yield self._conn
        except psycopg.Error as exc:
            raise self._problem(exc) from None
        finally:
            self._depth = 0

    def _rows(self, query: str, args: Any = ()) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            with self._conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self._problem(exc) from None

    def _row_or_none(self, query: str, args: Any = ()) -> dict[str, Any] | None:
        rows = self._rows(query, args)
        return rows[0] if rows else None

    def _migrate(self) -> None:
        current = self._version()
        if current == len(MIGRATIONS):
            return  # the usual case: no lock, no DDL, nothing a station role may not do
        if current > len(MIGRATIONS):
            raise StateError(
                _(
                    "the team database {where} was written by a newer station (schema "
                    "{current}); upgrade station"
                ).format(where=self.connection.where, current=current)
            )
        import psycopg

        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                found = cur.fetchone()
                current = int(found[0]) if found else 0
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    cur.execute(MIGRATIONS[version - 1])
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                cur.execute(f"GRANT SELECT ON schema_migrations TO {APP_ROLE}")
        except psycopg.errors.UndefinedObject:
            raise EnvironmentProblem(
                _(
                    "the team database {where} has no role {APP_ROLE}; IT creates it "
                    "first (CREATE ROLE {APP_ROLE} NOLOGIN; see docs/team.md)"
                ).format(where=self.connection.where, APP_ROLE=APP_ROLE)
            ) from None
        except psycopg.errors.InsufficientPrivilege:
            raise EnvironmentProblem(
                _(
                    "the team database {where} needs schema {needed} (it has "
                    "{current}), and this role may not change it; ask IT to run station "
                    "team init with the owner role"
                ).format(where=self.connection.where, needed=len(MIGRATIONS), current=current)
            ) from None
        except psycopg.Error as exc:
            raise self._problem(exc) from None

    def _version(self) -> int:
        row = self._row_or_none("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        if not row or not row["present"]:
            return 0
        found = self._row_or_none("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        return int(found["v"]) if found else 0

    def schema_version(self) -> int:
        return self._version()

    def server_now(self) -> datetime:
        """The server's clock: what leases are measured by."""
        row = self._row_or_none("SELECT now() AS now")
        assert row is not None  # noqa: S101 - SELECT now() returns one row
        return row["now"]  # type: ignore[no-any-return]

    # Personas and their lifecycle (as storage.sqlite).

    def _now(self) -> datetime:
        # Seconds, as the local registry keeps them: a persona reads the same on both.
        return self.clock().replace(microsecond=0)

    @staticmethod
    def _persona(row: Mapping[str, Any]) -> Persona:
        return Persona(
            id=row["id"],
            platform=row["platform"],
            label=row["label"],
            status=row["status"],
            created=row["created"],
            last_opened=row["last_opened"],
            status_changed=row["status_changed"],
            status_reason=row["status_reason"],
            fingerprint=json.loads(row["fingerprint"]),
        )

    def _lock_platform(self, conn: psycopg.Connection[Any], platform: str) -> None:
        # Serialises "is there an active persona?" with the write that follows,
        # as SQLite's BEGIN IMMEDIATE does for the local registry.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('platform:' || %s))", (platform,))

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
        now = self._now()
        with self._tx() as conn:
            self._lock_platform(conn, platform)
            has_active = conn.execute(
                "SELECT 1 FROM personas WHERE platform = %s AND status = 'active'", (platform,)
            ).fetchone()
            status: Status = "standby" if standby or has_active else "active"
            persona_id = new_persona_id()
            conn.execute(
                "INSERT INTO personas (id, platform, label, status, created, status_changed, "
                "fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (persona_id, platform, label, status, now, now, json.dumps(fingerprint)),
            )
        return self.get(persona_id)

    def get(self, persona_id: str) -> Persona:
        validate_persona_id(persona_id)
        row = self._row_or_none(
            "SELECT * FROM personas WHERE id = %s AND moving_in IS NULL", (persona_id,)
        )
        if row is None:
            raise NotFoundError(
                _("no persona with id '{persona_id}'").format(persona_id=persona_id)
            )
        return self._persona(row)

    def list(self, *, platform: str | None = None, status: Status | None = None) -> list[Persona]:
        query = "SELECT * FROM personas WHERE moving_in IS NULL"
        args: list[str] = []
        if platform is not None:
            query += " AND platform = %s"
            args.append(platform)
        if status is not None:
            query += " AND status = %s"
            args.append(status)
        query += " ORDER BY created, seq"
        return [self._persona(r) for r in self._rows(query, args)]

    def active(self, platform: str) -> Persona | None:
        row = self._row_or_none(
            "SELECT * FROM personas WHERE platform = %s AND status = 'active'", (platform,)
        )
        return self._persona(row) if row else None

    def mark_opened(self, persona_id: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE personas SET last_opened = %s WHERE id = %s", (self._now(), persona_id)
            )

    def set_fingerprint(self, persona_id: str, fingerprint: dict[str, Any]) -> Persona:
        with self._tx() as conn:
            conn.execute(
                "UPDATE personas SET fingerprint = %s WHERE id = %s",
                (json.dumps(fingerprint), persona_id),
            )
        return self.get(persona_id)

    def rotate(
        self, platform: str, *, reason: str, fresh_fingerprint: Callable[[], dict[str, Any]]
    ) -> tuple[Persona | None, Persona, bool]:
        """Block the platform's active persona and put another in its place, atomically."""
        validate_reason(reason)
        now = self._now()
        with self._tx() as conn:
            self._lock_platform(conn, platform)
            active = conn.execute(
                "SELECT id FROM personas WHERE platform = %s AND status = 'active'", (platform,)
            ).fetchone()
            if active is not None:
                conn.execute(
                    "UPDATE personas SET status = 'blocked', status_changed = %s, "
                    "status_reason = %s WHERE id = %s",
                    (now, reason, active[0]),
                )
            standby = conn.execute(
                "SELECT id FROM personas WHERE platform = %s AND status = 'standby' "
                "AND moving_in IS NULL ORDER BY created, seq LIMIT 1",
                (platform,),
            ).fetchone()
            created = standby is None
            if standby is not None:
                new_id = str(standby[0])
                conn.execute(
                    "UPDATE personas SET status = 'active', status_changed = %s, "
                    "status_reason = %s WHERE id = %s",
                    (now, "promoted by rotation", new_id),
                )
            else:
                new_id = new_persona_id()
                conn.execute(
                    "INSERT INTO personas (id, platform, label, status, created, "
                    "status_changed, status_reason, fingerprint) "
                    "VALUES (%s, %s, '', 'active', %s, %s, 'created by rotation', %s)",
                    (new_id, platform, now, now, json.dumps(fresh_fingerprint())),
                )
        blocked = self.get(str(active[0])) if active is not None else None
        return blocked, self.get(new_id), created

    def undo_rotation(
        self, platform: str, *, blocked_id: str, promoted_id: str, reason: str
    ) -> tuple[Persona, Persona]:
        """Put the last rotation back, atomically (see `SqliteStore.undo_rotation`)."""
        validate_reason(reason)
        now = self._now()
        with self._tx() as conn:
            self._lock_platform(conn, platform)
            rows = dict(
                conn.execute(
                    "SELECT id, status FROM personas WHERE platform = %s AND id IN (%s, %s) "
                    "FOR UPDATE",
                    (platform, blocked_id, promoted_id),
                ).fetchall()
            )
            if rows.get(blocked_id) != "blocked" or rows.get(promoted_id) != "active":
                raise StateError(
                    _(
                        "platform {platform} changed since its last rotation; nothing was undone"
                    ).format(platform=platform)
                )
            conn.execute(
                "UPDATE personas SET status = 'standby', status_changed = %s, "
                "status_reason = %s WHERE id = %s",
                (now, reason, promoted_id),
            )
            conn.execute(
                "UPDATE personas SET status = 'active', status_changed = %s, "
                "status_reason = %s WHERE id = %s",
                (now, reason, blocked_id),
            )
        return self.get(blocked_id), self.get(promoted_id)

    def transition(self, persona_id: str, to: Status, *, reason: str = "") -> Persona:
        """Move a persona to another lifecycle state, refusing moves that make no sense."""
        validate_reason(reason)
        with self._tx() as conn:
            found = self._locked_persona(conn, persona_id)
            if to == "active":
                self._lock_platform(conn, found["platform"])
            current: Status = found["status"]
            if to not in ALLOWED_TRANSITIONS[current]:
                raise StateError(
                    _("persona {persona_id} is {current}; it cannot become {to}").format(
                        persona_id=persona_id, current=current, to=to
                    )
                    + (_(" (a retired persona never comes back)") if current == "retired" else "")
                )
            if to == "active":
                other = conn.execute(
                    "SELECT id FROM personas WHERE platform = %s AND status = 'active'",
                    (found["platform"],),
                ).fetchone()
                if other is not None:
                    raise StateError(
                        _("platform {platform} already has an active persona ({other})").format(
                            platform=found["platform"], other=other[0]
                        )
                    )
            conn.execute(
                "UPDATE personas SET status = %s, status_changed = %s, status_reason = %s "
                "WHERE id = %s",
                (to, self._now(), reason, persona_id),
            )
        return self.get(persona_id)

    def _locked_persona(self, conn: psycopg.Connection[Any], persona_id: str) -> dict[str, Any]:
        from psycopg.rows import dict_row

        with conn.cursor(row_factory=dict_row) as cur:
            found = cur.execute(
                "SELECT * FROM personas WHERE id = %s FOR UPDATE", (persona_id,)
            ).fetchone()
        if found is None:
            raise NotFoundError(
                _("no persona with id '{persona_id}'").format(persona_id=persona_id)
            )
        return found

    # Moving a laptop's own personas in (`station team push`, team/push.py).

    def moving_in(self, persona_id: str) -> tuple[Persona, str | None] | None:
        """The persona with this id, hidden or not, and the member moving it in (None: done)."""
        row = self._row_or_none("SELECT * FROM personas WHERE id = %s", (persona_id,))
        if row is None:
            return None
        return self._persona(row), row["moving_in"]

    def begin_move_in(
        self,
        persona: Persona,
        *,
        member: str,
        kit: Mapping[str, str] | None,
        proxy: ProxyRecord | None,
    ) -> None:
        """Add a laptop's persona as it is there, hidden until `finish_move_in`.

        Its row, kit details and proxy land together or not at all (a kit
        detail another persona of the team uses is a `UniqueConflict`). An
        active one waits as standby: the platform's active slot is decided at
        the finish.
        """
        status = "standby" if persona.status == "active" else persona.status
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO personas (id, platform, label, status, created, last_opened, "
                "status_changed, status_reason, fingerprint, moving_in) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    persona.id,
                    persona.platform,
                    persona.label,
                    status,
                    persona.created,
                    persona.last_opened,
                    persona.status_changed,
                    persona.status_reason,
                    json.dumps(persona.fingerprint),
                    member,
                ),
            )
            if kit is not None:
                self.put_kit(persona.id, kit)
            if proxy is not None:
                self.put_proxy(proxy)

    def finish_move_in(self, persona_id: str, *, wanted: Status, reason: str) -> Persona:
        """Show a moved-in persona to the team, `wanted` or standby if its platform has an active.

        Done once: a persona already shown is returned as it is.
        """
        with self._tx() as conn:
            found = self._locked_persona(conn, persona_id)
            if found["moving_in"] is None:
                return self._persona(found)
            self._lock_platform(conn, found["platform"])
            status, changed, why = wanted, found["status_changed"], found["status_reason"]
            if (
                wanted == "active"
                and conn.execute(
                    "SELECT 1 FROM personas WHERE platform = %s AND status = 'active'",
                    (found["platform"],),
                ).fetchone()
            ):
                status, changed, why = "standby", self._now(), reason
            conn.execute(
                "UPDATE personas SET status = %s, status_changed = %s, status_reason = %s, "
                "moving_in = NULL WHERE id = %s",
                (status, changed, why, persona_id),
            )
        return self.get(persona_id)

    # Identity kits.

    @staticmethod
    def _kit(row: Mapping[str, Any]) -> dict[str, str]:
        from outreach_station.clock import iso

        return {k: iso(v) if isinstance(v, datetime) else str(v) for k, v in row.items()}

    def kit_row(self, persona_id: str) -> dict[str, str] | None:
        row = self._row_or_none("SELECT * FROM kits WHERE persona_id = %s", (persona_id,))
        return self._kit(row) if row else None

    def kit_rows(self) -> tuple[dict[str, str], ...]:
        return tuple(self._kit(r) for r in self._rows("SELECT * FROM kits ORDER BY persona_id"))

    def put_kit(self, persona_id: str, values: Mapping[str, str]) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO kits (persona_id, username, email, phone, card_label, "
                "card_last4, updated) VALUES (%(persona_id)s, %(username)s, %(email)s, "
                "%(phone)s, %(card_label)s, %(card_last4)s, %(updated)s) "
                "ON CONFLICT (persona_id) DO UPDATE "
                "SET username = excluded.username, email = excluded.email, "
                "phone = excluded.phone, card_label = excluded.card_label, "
                "card_last4 = excluded.card_last4, updated = excluded.updated",
                {**values, "persona_id": persona_id, "updated": self._now()},
            )

    # Egress proxies.

    def proxy(self, persona_id: str) -> ProxyRecord | None:
        row = self._row_or_none(
            "SELECT url, username, source FROM persona_proxies WHERE persona_id = %s",
            (persona_id,),
        )
        if row is None:
            return None
        return ProxyRecord(
            persona_id=persona_id, url=row["url"], username=row["username"], source=row["source"]
        )

    def put_proxy(self, record: ProxyRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO persona_proxies (persona_id, url, username, source, updated) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (persona_id) DO UPDATE SET "
                "url = excluded.url, username = excluded.username, source = excluded.source, "
                "updated = excluded.updated",
                (record.persona_id, record.url, record.username, record.source, self._now()),
            )

    def delete_proxy(self, persona_id: str) -> bool:
        with self._tx() as conn:
            gone = conn.execute(
                "DELETE FROM persona_proxies WHERE persona_id = %s", (persona_id,)
            ).rowcount
        return bool(gone)

    def platform_proxies(self, platform: str, *, excluding: str) -> Sequence[tuple[str, Status]]:
        rows = self._rows(
            "SELECT p.url, s.status FROM persona_proxies p JOIN personas s ON s.id = p.persona_id "
            "WHERE s.platform = %s AND p.persona_id <> %s",
            (platform, excluding),
        )
        return [(str(r["url"]), r["status"]) for r in rows]

    # The local cache's sealed generation bookkeeping (the Store protocol).

    def sealed_generation(self, persona_id: str) -> tuple[int, int | None]:
        row = self._row_or_none(
            "SELECT generation, pending FROM sealed_generations WHERE persona_id = %s",
            (persona_id,),
        )
        if row is None:
            return 0, None
        return int(row["generation"]), None if row["pending"] is None else int(row["pending"])

    def begin_sealed_generation(self, persona_id: str, generation: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (%s, 0, %s, %s) ON CONFLICT (persona_id) DO UPDATE SET "
                "pending = excluded.pending, updated = excluded.updated",
                (persona_id, generation, self._now()),
            )

    def commit_sealed_generation(self, persona_id: str, generation: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sealed_generations (persona_id, generation, pending, updated) "
                "VALUES (%s, %s, NULL, %s) ON CONFLICT (persona_id) DO UPDATE SET "
                "generation = excluded.generation, pending = NULL, updated = excluded.updated",
                (persona_id, generation, self._now()),
            )

    # Leases: one person at a time, measured by the server's clock.

    @staticmethod
    def _lease(row: Mapping[str, Any]) -> Lease:
        close = None
        if row["close_token"] is not None and int(row["close_token"]) == int(row["token"]):
            close = CloseRequest(
                member=row["close_member"],
                host=row["close_host"],
                reason=row["close_reason"] or "",
                asked=row["close_asked"],
                seen=row["close_seen"],
                member_name=row["close_member_name"] or "",
            )
        return Lease(
            persona_id=row["persona_id"],
            member=row["member"],
            host=row["host"],
            since=row["since"],
            expires=row["expires"],
            token=int(row["token"]),
            expired=bool(row["expired"]),
            close=close,
            member_name=row["member_name"] or "",
        )

    def lease(self, persona_id: str) -> Lease | None:
        """Who holds the persona now (expired or not), or None if nobody does."""
        row = self._row_or_none(
            f"SELECT {_LEASE_COLUMNS} FROM leases "  # noqa: S608 - constant columns
            "WHERE persona_id = %s AND member IS NOT NULL",
            (persona_id,),
        )
        return self._lease(row) if row else None

    def leases(self) -> builtins.list[Lease]:
        """Every persona someone holds now (expired ones too), oldest first."""
        return [
            self._lease(r)
            for r in self._rows(
                f"SELECT {_LEASE_COLUMNS} FROM leases "  # noqa: S608 - constant columns
                "WHERE member IS NOT NULL ORDER BY since, persona_id"
            )
        ]

    def acquire_lease(self, persona_id: str, *, member: str, host: str, ttl: timedelta) -> Lease:
        """Take the persona, with a new fencing token; refused at once if another holds it.

        Free, expired, or held by the same member on the same host (a crashed
        session of this laptop: its token is fenced off by the new one) all
        give the lease; anything else is a `BusyError` naming the holder.
        """
        validate_persona_id(persona_id)
        row = self._row_or_none(
            "INSERT INTO leases AS l (persona_id, member, host, since, expires, token) "  # noqa: S608 - constant columns
            "VALUES (%(p)s, %(m)s, %(h)s, now(), now() + %(ttl)s, nextval('lease_tokens')) "
            "ON CONFLICT (persona_id) DO UPDATE SET member = excluded.member, "
            "host = excluded.host, since = excluded.since, expires = excluded.expires, "
            "token = excluded.token "
            "WHERE l.member IS NULL OR l.expires <= now() "
            "OR (l.member = excluded.member AND l.host = excluded.host) "
            f"RETURNING {_LEASE_COLUMNS}",
            {"p": persona_id, "m": member, "h": host, "ttl": ttl},
        )
        if row is not None:
            return self._lease(row)
        holder = self.lease(persona_id)
        if holder is None:  # released between the two statements: try once more
            return self.acquire_lease(persona_id, member=member, host=host, ttl=ttl)
        raise BusyError(
            _(
                "persona {persona_id} is open by {holder}; try again when they "
                "close it, or free it with station team unlock if that laptop is "
                "lost"
            ).format(persona_id=persona_id, holder=holder.describe())
        )

    def renew_lease(self, persona_id: str, token: int, *, ttl: timedelta) -> Lease:
        """Push the lease's expiry on; refused when `token` is no longer the lease's."""
        row = self._row_or_none(
            "UPDATE leases SET expires = now() + %s WHERE persona_id = %s AND token = %s "  # noqa: S608
            f"AND member IS NOT NULL RETURNING {_LEASE_COLUMNS}",
            (ttl, persona_id, token),
        )
        if row is None:
            raise self._lost(persona_id)
        return self._lease(row)

    def release_lease(self, persona_id: str, token: int) -> bool:
        """Give the persona back; False if `token` was no longer the lease's."""
        row = self._row_or_none(
            "UPDATE leases SET member = NULL, host = NULL, since = NULL, expires = now(), "
            "token = nextval('lease_tokens') WHERE persona_id = %s AND token = %s "
            "AND member IS NOT NULL RETURNING token",
            (persona_id, token),
        )
        return row is not None

    def force_unlock(self, persona_id: str) -> Lease | None:
        """Free the persona whoever holds it (the caller audits why); the lease freed, or None."""
        with self._tx() as conn:
            before = self.lease(persona_id)
            if before is None:
                return None
            conn.execute(
                "UPDATE leases SET member = NULL, host = NULL, since = NULL, expires = now(), "
                "token = nextval('lease_tokens') WHERE persona_id = %s",
                (persona_id,),
            )
        return before

    def request_close(
        self, persona_id: str, token: int, *, member: str, host: str, reason: str
    ) -> bool:
        """Ask the holder of `token` to close its session; False if that token no longer holds it.

        The holder's renewing thread hears it at once (`LEASE_CHANNEL`) or at
        its next renewal, and says it saw it (`close_seen`).
        """
        row = self._row_or_none(
            "UPDATE leases SET close_token = token, close_member = %s, close_host = %s, "
            "close_reason = %s, close_asked = now(), close_seen = NULL "
            "WHERE persona_id = %s AND token = %s AND member IS NOT NULL RETURNING token",
            (member, host, reason, persona_id, token),
        )
        return row is not None

    def withdraw_close(self, persona_id: str, token: int) -> None:
        """Take back a close request made for `token` (nobody waits for it any more)."""
        self._rows(
            "UPDATE leases SET close_token = NULL, close_member = NULL, close_host = NULL, "
            "close_reason = NULL, close_asked = NULL, close_seen = NULL "
            "WHERE persona_id = %s AND close_token = %s",
            (persona_id, token),
        )

    def close_seen(self, persona_id: str, token: int) -> None:
        """The holder of `token` says it is closing as it was asked."""
        self._rows(
            "UPDATE leases SET close_seen = now() WHERE persona_id = %s AND token = %s "
            "AND close_token = token AND close_seen IS NULL",
            (persona_id, token),
        )

    def listen_leases(self) -> None:
        """Hear every lease's token change and close request on this connection from now on."""
        self._rows(f"LISTEN {LEASE_CHANNEL}")

    def lease_news(self, timeout: float) -> set[str]:
        """The personas whose lease changed, heard within `timeout` seconds (after `listen_leases`).

        Returns as soon as one is heard; empty when none came in time.
        """
        import psycopg

        heard: set[str] = set()
        try:
            for note in self._conn.notifies(timeout=timeout, stop_after=1):
                if note.channel == LEASE_CHANNEL:
                    heard.add(note.payload)
        except psycopg.Error as exc:
            raise self._problem(exc) from None
        return heard

    def _lost(self, persona_id: str) -> StateError:
        holder = self.lease(persona_id)
        now = _(" and is now open by {holder}").format(holder=holder.describe()) if holder else ""
        return StateError(
            _(
                "the lease on persona {persona_id} was lost (it expired or was "
                "unlocked{now}); this session's changes are kept sealed on this "
                "laptop"
            ).format(persona_id=persona_id, now=now)
        )

    # The team's audit trail.

    def append_audit_record(
        self,
        *,
        member: str,
        host: str,
        make: Callable[[AuditRecord | None], tuple[str, str, bytes | None]],
        origin: str | None = None,
    ) -> AuditRecord | None:
        """Append one record chained to the trail's last one.

        `make(last)` returns the record's text, hash and signature from the
        last record (None for the first); it runs under a lock, so two
        laptops appending at once still make one chain. A record whose
        `origin` the trail holds already is not appended again (None): it was
        sent before and the reply was lost.
        """
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
            if origin is not None and self._row_or_none(
                "SELECT seq FROM audit_records WHERE origin = %s", (origin,)
            ):
                return None
            last = self._row_or_none("SELECT * FROM audit_records ORDER BY seq DESC LIMIT 1")
            record, digest, signature = make(_audit_record(last) if last else None)
            row = self._row_or_none(
                "INSERT INTO audit_records (member, host, record, hash, origin, signature) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                (member, host, record, digest, origin, signature),
            )
        assert row is not None  # noqa: S101 - INSERT ... RETURNING returns the row
        return _audit_record(row)

    def unsigned_audit_records(self) -> int:
        """How many records of the trail carry no signature (sent before records were signed)."""
        row = self._row_or_none("SELECT count(*) AS n FROM audit_records WHERE signature IS NULL")
        return int(row["n"]) if row is not None else 0

    def audit_records(self, *, after: int = 0) -> builtins.list[AuditRecord]:
        """The trail's records after `after`, oldest first."""
        return [
            _audit_record(r)
            for r in self._rows("SELECT * FROM audit_records WHERE seq > %s ORDER BY seq", (after,))
        ]

    # Sealed blobs and generations: ciphertext only.

    def missing_blobs(self, persona_id: str, names: Collection[str]) -> set[str]:
        """Which of `names` the server lacks: only these need uploading."""
        rows = self._rows(
            "SELECT name FROM blobs WHERE persona_id = %s AND name = ANY(%s)",
            (persona_id, list(names)),
        )
        return set(names) - {r["name"] for r in rows}

    def blob_names(self, persona_id: str) -> set[str]:
        return {
            r["name"]
            for r in self._rows("SELECT name FROM blobs WHERE persona_id = %s", (persona_id,))
        }

    def put_blob(self, persona_id: str, name: str, data: bytes | bytearray | memoryview) -> bool:
        """Upload one sealed blob in chunks, whole or not at all; False if the server had it."""
        view = memoryview(data)
        count = (len(view) + CHUNK_BYTES - 1) // CHUNK_BYTES
        with self._tx() as conn:
            made = conn.execute(
                "INSERT INTO blobs (persona_id, name, size, chunks) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (persona_id, name, len(view), count),
            ).fetchone()
            if made is None:
                return False
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO blob_chunks (persona_id, name, seq, data) VALUES (%s, %s, %s, %s)",
                    [
                        (
                            persona_id,
                            name,
                            i,
                            view[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES].tobytes(),
                        )
                        for i in range(count)
                    ],
                )
        return True

    def get_blob(self, persona_id: str, name: str) -> bytes:
        """A sealed blob's bytes; IntegrityError if the server holds it incomplete."""
        head = self._row_or_none(
            "SELECT size, chunks FROM blobs WHERE persona_id = %s AND name = %s",
            (persona_id, name),
        )
        if head is None:
            raise NotFoundError(
                _("the team server {where} has no blob {name} of persona {persona_id}").format(
                    where=self.connection.where, name=name, persona_id=persona_id
                )
            )
        rows = self._rows(
            "SELECT seq, data FROM blob_chunks WHERE persona_id = %s AND name = %s ORDER BY seq",
            (persona_id, name),
        )
        data = b"".join(bytes(r["data"]) for r in rows)
        if [r["seq"] for r in rows] != list(range(head["chunks"])) or len(data) != head["size"]:
            raise IntegrityError(
                _(
                    "blob {name} of persona {persona_id} on the team server is "
                    "incomplete or altered; it was changed outside station"
                ).format(name=name, persona_id=persona_id)
            )
        return data

    def commit_generation(
        self,
        persona_id: str,
        generation: int,
        manifest: bytes,
        *,
        token: int,
        blob_names: Collection[str],
        key_version: int = 1,
        rekey_since: datetime | None = None,
    ) -> None:
        """Make `generation` the persona's current one, if `token` is still the lease's.

        In one transaction: the lease row is locked and its token compared;
        every blob the manifest names must be on the server already; the
        generation must be newer than the current one. Anything else changes
        nothing. `key_version` is the data key version that sealed it.
        `rekey_since` is the persona's re-key mark as it was when the new key
        was made: the mark is cleared here only if no removal came after it.
        """
        names = sorted(set(blob_names))
        with self._tx() as conn:
            lease = conn.execute(
                "SELECT token, member FROM leases WHERE persona_id = %s FOR UPDATE", (persona_id,)
            ).fetchone()
            if lease is None or lease[1] is None or int(lease[0]) != token:
                raise self._lost(persona_id)
            current = conn.execute(
                "SELECT generation FROM current_generations WHERE persona_id = %s FOR UPDATE",
                (persona_id,),
            ).fetchone()
            if current is not None and int(current[0]) >= generation:
                raise StateError(
                    _(
                        "the team server already has generation {current} of persona "
                        "{persona_id}; generation {generation} is not newer"
                    ).format(current=current[0], persona_id=persona_id, generation=generation)
                )
            held = conn.execute(
                "SELECT count(*) FROM blobs WHERE persona_id = %s AND name = ANY(%s)",
                (persona_id, names),
            ).fetchone()
            if held is None or int(held[0]) != len(names):
                raise StateError(
                    _(
                        "generation {generation} of persona {persona_id} names blobs the "
                        "team server lacks; upload them first"
                    ).format(generation=generation, persona_id=persona_id)
                )
            conn.execute(
                "INSERT INTO generations (persona_id, generation, manifest, blob_names, token, "
                "member, key_version) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (persona_id, generation, manifest, names, token, lease[1], key_version),
            )
            if rekey_since is not None:
                # A removal after the new key was made marked it again, later: kept.
                conn.execute(
                    "DELETE FROM rekey_due WHERE persona_id = %s AND since <= %s",
                    (persona_id, rekey_since),
                )
            conn.execute(
                "INSERT INTO current_generations (persona_id, generation) VALUES (%s, %s) "
                "ON CONFLICT (persona_id) DO UPDATE SET generation = excluded.generation",
                (persona_id, generation),
            )

    def current_generation(self, persona_id: str) -> Generation | None:
        """The persona's current generation on the server, or None if none was committed."""
        row = self._row_or_none(
            "SELECT g.* FROM current_generations c JOIN generations g "
            "ON g.persona_id = c.persona_id AND g.generation = c.generation "
            "WHERE c.persona_id = %s",
            (persona_id,),
        )
        if row is None:
            return None
        return Generation(
            persona_id=row["persona_id"],
            generation=int(row["generation"]),
            manifest=bytes(row["manifest"]),
            blob_names=tuple(row["blob_names"]),
            token=int(row["token"]),
            member=row["member"],
            key_version=int(row["key_version"]),
        )

    # The team, its members and wrapped persona keys.

    def team_id(self) -> str | None:
        """The team's id, or None before `station team init` named it."""
        row = self._row_or_none("SELECT team_id FROM team")
        return None if row is None else str(row["team_id"])

    def create_team(self, team_id: str) -> str:
        """Name the team once (owner role); the id already there if it was named before."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO team (team_id) VALUES (%s) ON CONFLICT DO NOTHING", (team_id,)
            )
        found = self.team_id()
        assert found is not None  # noqa: S101 - inserted or already there
        return found

    @staticmethod
    def _member(row: Mapping[str, Any]) -> MemberRecord:
        binary = ("public_key", "signing_key", "approval")
        return MemberRecord(
            **{**row, **{k: None if row[k] is None else bytes(row[k]) for k in binary}}
        )

    def members(self) -> builtins.list[MemberRecord]:
        """Every member ever registered, in the order they joined."""
        return [
            self._member(r) for r in self._rows("SELECT * FROM members ORDER BY joined, member_id")
        ]

    def add_member(
        self,
        *,
        member_id: str,
        display_name: str,
        host: str,
        public_key: bytes,
        status: str,
        signing_key: bytes | None = None,
        approval: bytes | None = None,
    ) -> bool:
        """Register a member; False (nothing changed) if this key is registered already."""
        with self._tx() as conn:
            made = conn.execute(
                "INSERT INTO members (member_id, display_name, host, public_key, status, approved, "
                "signing_key, approval) "
                "VALUES (%s, %s, %s, %s, %s, CASE WHEN %s = 'approved' THEN now() END, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (
                    member_id,
                    display_name,
                    host,
                    public_key,
                    status,
                    status,
                    signing_key,
                    approval,
                ),
            ).fetchone()
        return made is not None

    def approve_member(
        self, member_id: str, *, approved_by: str, approval: bytes | None = None
    ) -> bool:
        """Mark a pending member approved by another approved one; False if it was not pending.

        `approval` is the approver's signature (`team.approvals`); laptops
        trust no approval without one.
        """
        with self._tx() as conn:
            done = conn.execute(
                "UPDATE members SET status = 'approved', approved_by = %s, approved = now(), "
                "approval = %s "
                "WHERE member_id = %s AND status = 'pending' AND EXISTS (SELECT 1 FROM members a "
                "WHERE a.member_id = %s AND a.status = 'approved' AND a.member_id <> %s)",
                (approved_by, approval, member_id, approved_by, member_id),
            ).rowcount
        return bool(done)

    def remove_member(self, member_id: str) -> builtins.list[str]:
        """Mark a member removed, delete its wrapped keys and mark those personas for re-key.

        One transaction: the personas whose keys it held, sorted. Their next
        seal makes a new key version it never gets.
        """
        with self._tx() as conn:
            conn.execute(
                "UPDATE members SET status = 'removed', removed = now() WHERE member_id = %s",
                (member_id,),
            )
            rows = conn.execute(
                "DELETE FROM wrapped_keys WHERE member_id = %s RETURNING persona_id", (member_id,)
            ).fetchall()
            personas = sorted({str(r[0]) for r in rows})
            if personas:
                with conn.cursor() as cur:
                    cur.executemany(
                        # The mark moves on: a re-key begun before this removal (a
                        # session open now) must not clear it (`commit_generation`).
                        "INSERT INTO rekey_due (persona_id, since) VALUES (%s, clock_timestamp()) "
                        "ON CONFLICT (persona_id) DO UPDATE SET since = excluded.since",
                        [(p,) for p in personas],
                    )
        return personas

    def put_first_wrapped_keys(self, persona_id: str, wraps: Sequence[WrappedKeyRecord]) -> bool:
        """Store a persona's first data key's wraps; False (nothing stored) if it has a key.

        A key can be made without the persona's lease (a kit secret set on a
        persona nobody opened yet): two laptops making one at once must not
        each seal with their own, so the first to store wins and the other
        unwraps that one.
        """
        with self._tx() as conn:
            if self._locked_persona(conn, persona_id)["status"] == "retired":
                # Shredded: a key made now would give its copies a reader again.
                raise StateError(
                    _("persona {persona_id} is retired; its keys were destroyed").format(
                        persona_id=persona_id
                    )
                )
            if conn.execute(
                "SELECT 1 FROM wrapped_keys WHERE persona_id = %s LIMIT 1", (persona_id,)
            ).fetchone():
                return False
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO wrapped_keys (persona_id, member_id, key_version, sealed) "
                    "VALUES (%s, %s, %s, %s)",
                    [(w.persona_id, w.member_id, w.key_version, w.sealed) for w in wraps],
                )
        return True

    def put_wrapped_keys(self, wraps: Sequence[WrappedKeyRecord]) -> None:
        """Store wrapped keys (replacing the same persona, member and version), all or none."""
        with self._tx() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO wrapped_keys (persona_id, member_id, key_version, sealed) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (persona_id, member_id, key_version) "
                "DO UPDATE SET sealed = excluded.sealed",
                [(w.persona_id, w.member_id, w.key_version, w.sealed) for w in wraps],
            )

    def wrapped_keys(
        self, persona_id: str, *, member_id: str | None = None
    ) -> builtins.list[WrappedKeyRecord]:
        """A persona's wrapped keys (one member's, if given), oldest version first."""
        query = "SELECT * FROM wrapped_keys WHERE persona_id = %s"
        args: builtins.list[str] = [persona_id]
        if member_id is not None:
            query += " AND member_id = %s"
            args.append(member_id)
        return [
            WrappedKeyRecord(
                persona_id=r["persona_id"],
                member_id=r["member_id"],
                key_version=int(r["key_version"]),
                sealed=bytes(r["sealed"]),
            )
            for r in self._rows(query + " ORDER BY key_version, member_id", args)
        ]

    def rekey_due(self) -> builtins.list[str]:
        """The personas to re-key at their next seal (a member who could read them was removed)."""
        return [str(r["persona_id"]) for r in self._rows("SELECT persona_id FROM rekey_due")]

    def rekey_mark(self, persona_id: str) -> datetime | None:
        """When the persona was last marked for re-key, by the server's clock; None if not due."""
        row = self._row_or_none("SELECT since FROM rekey_due WHERE persona_id = %s", (persona_id,))
        if row is None:
            return None
        since: datetime = row["since"]
        return since

    def rekey_done(self, persona_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM rekey_due WHERE persona_id = %s", (persona_id,))

    # Kit secrets: sealed on a laptop with the persona's key (`team.kit_secrets`).

    def kit_secret(self, persona_id: str, field: str) -> KitSecretRecord | None:
        row = self._row_or_none(
            "SELECT * FROM kit_secrets WHERE persona_id = %s AND field = %s", (persona_id, field)
        )
        if row is None:
            return None
        return KitSecretRecord(
            persona_id=row["persona_id"],
            name=row["field"],
            key_version=int(row["key_version"]),
            sealed=bytes(row["sealed"]),
        )

    def kit_secret_fields(self, persona_id: str) -> set[str]:
        rows = self._rows("SELECT field FROM kit_secrets WHERE persona_id = %s", (persona_id,))
        return {str(r["field"]) for r in rows}

    def delete_kit_secret(self, persona_id: str, field: str) -> bool:
        row = self._row_or_none(
            "DELETE FROM kit_secrets WHERE persona_id = %s AND field = %s RETURNING 1",
            (persona_id, field),
        )
        return row is not None

    def put_kit_secret(self, record: KitSecretRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO kit_secrets (persona_id, field, key_version, sealed, updated) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (persona_id, field) DO UPDATE SET "
                "key_version = excluded.key_version, sealed = excluded.sealed, "
                "updated = excluded.updated",
                (record.persona_id, record.name, record.key_version, record.sealed),
            )

    # Crypto-shredding.

    def shred(self, persona_id: str, *, token: int, reason: str) -> ShredResult:
        """Retire a persona and delete every key and sealed copy of it the server holds.

        One transaction, under the caller's lease (`token` must still be the
        lease's, so nobody has the persona open): the wrapped data keys of
        every member and version, the sealed kit secrets, the generations and
        the blobs go, the persona becomes retired and the lease is freed. With
        the wrapped keys gone no laptop can unseal any copy it still caches.
        The persona's row, its kit details and its audit records stay.
        """
        validate_reason(reason)
        with self._tx() as conn:
            lease = conn.execute(
                "SELECT token, member FROM leases WHERE persona_id = %s FOR UPDATE", (persona_id,)
            ).fetchone()
            if lease is None or lease[1] is None or int(lease[0]) != token:
                raise self._lost(persona_id)
            found = self._locked_persona(conn, persona_id)
            if "retired" not in ALLOWED_TRANSITIONS[found["status"]]:
                raise StateError(
                    _("persona {persona_id} is {current}; it cannot become {to}").format(
                        persona_id=persona_id, current=found["status"], to="retired"
                    )
                )

            def gone(query: str) -> int:
                return int(conn.execute(query, (persona_id,)).rowcount)

            for table in ("current_generations", "rekey_due"):
                conn.execute(
                    f"DELETE FROM {table} WHERE persona_id = %s",  # noqa: S608 - constant names
                    (persona_id,),
                )
            result = ShredResult(
                wrapped_keys=gone("DELETE FROM wrapped_keys WHERE persona_id = %s"),
                kit_secrets=gone("DELETE FROM kit_secrets WHERE persona_id = %s"),
                generations=gone("DELETE FROM generations WHERE persona_id = %s"),
                blobs=gone("DELETE FROM blobs WHERE persona_id = %s"),  # chunks cascade
            )
            conn.execute(
                "UPDATE personas SET status = 'retired', status_changed = %s, "
                "status_reason = %s WHERE id = %s",
                (self._now(), reason, persona_id),
            )
            conn.execute(
                "UPDATE leases SET member = NULL, host = NULL, since = NULL, expires = now(), "
                "token = nextval('lease_tokens') WHERE persona_id = %s",
                (persona_id,),
            )
        return result
