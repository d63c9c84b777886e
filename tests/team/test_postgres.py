"""The team store's own parts against a real PostgreSQL: migrations, leases, generations, audit."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from outreach_station.errors import (
    BusyError,
    EnvironmentProblem,
    SecurityError,
    StateError,
    StationError,
)
from outreach_station.storage.postgres import (
    CHUNK_BYTES,
    MIGRATIONS,
    AuditRecord,
    PostgresStore,
    TeamConnection,
)
from tests.team.conftest import TeamDb

FP = {"version": 1}
TTL = timedelta(minutes=5)


def _raw(team_db: TeamDb, *, role: str = "station") -> Any:
    """A plain psycopg connection as `role`, for what the store would never do itself."""
    password = (
        team_db.server.owner_password if role == "station_owner" else team_db.server.member_password
    )
    return psycopg.connect(team_db.url(role=role), password=password, autocommit=True)


# Migrations.


def test_migrations_are_recorded_and_idempotent(team_db: TeamDb) -> None:
    team_db.owner_store().close()
    with team_db.owner_store() as again:
        assert again.schema_version() == len(MIGRATIONS)
    with _raw(team_db, role="station_owner") as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_concurrent_first_opens_migrate_once(team_db: TeamDb) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        try:
            barrier.wait()
            team_db.owner_store().close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with _raw(team_db, role="station_owner") as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )


def test_station_role_may_not_create_the_schema(team_db: TeamDb) -> None:
    with pytest.raises(EnvironmentProblem, match="ask IT to run station team init") as caught:
        team_db.member_store()
    assert team_db.name in str(caught.value)
    with _raw(team_db, role="station_owner") as conn:
        assert conn.execute("SELECT to_regclass('personas')").fetchone() == (None,)


def test_a_newer_schema_is_refused(team_db: TeamDb) -> None:
    team_db.owner_store().close()
    with _raw(team_db, role="station_owner") as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StateError, match="written by a newer station"):
        team_db.member_store()


# Leases.


def test_fifty_races_of_two_laptops_for_one_persona_have_one_winner(
    pg_store: PostgresStore, team_db: TeamDb
) -> None:
    laptops = [team_db.member_store(), team_db.member_store()]
    try:
        persona = pg_store.create("demo", fingerprint=FP)
        tokens: list[int] = []
        for race in range(50):
            if race % 2:
                # Half the races on a lease row that exists (released), half on a new persona.
                held = pg_store.lease(persona.id)
                assert held is not None
                assert pg_store.release_lease(persona.id, held.token)
            else:
                persona = pg_store.create("demo", fingerprint=FP)
            barrier = threading.Barrier(2)
            outcome: dict[int, Any] = {}

            def contend(
                i: int, pid: str = persona.id, barrier: Any = barrier, outcome: Any = outcome
            ) -> None:
                barrier.wait()
                try:
                    outcome[i] = laptops[i].acquire_lease(
                        pid, member=f"member{i}", host=f"laptop{i}", ttl=TTL
                    )
                except BusyError as exc:
                    outcome[i] = exc

            threads = [threading.Thread(target=contend, args=(i,)) for i in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            won = [i for i in (0, 1) if not isinstance(outcome[i], BusyError)]
            assert len(won) == 1, (race, outcome)
            winner, loser = won[0], 1 - won[0]
            assert f"open by member{winner} on laptop{winner} since" in str(outcome[loser])
            tokens.append(outcome[winner].token)
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == 50
    finally:
        for laptop in laptops:
            laptop.close()


def test_lease_expires_by_server_time_and_tokens_only_grow(pg_store: PostgresStore) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    first = pg_store.acquire_lease(persona.id, member="a", host="h1", ttl=timedelta(0))
    # ttl 0: expired by the server's clock at its next statement.
    held = pg_store.lease(persona.id)
    assert held is not None and held.expired
    second = pg_store.acquire_lease(persona.id, member="b", host="h2", ttl=TTL)
    assert second.token > first.token and not second.expired
    with pytest.raises(StateError, match=r"lease on persona \w+ was lost .*open by b on h2"):
        pg_store.renew_lease(persona.id, first.token, ttl=TTL)
    assert pg_store.release_lease(persona.id, first.token) is False
    renewed = pg_store.renew_lease(persona.id, second.token, ttl=timedelta(hours=1))
    assert renewed.expires > second.expires and renewed.token == second.token
    assert pg_store.release_lease(persona.id, second.token) is True
    assert pg_store.lease(persona.id) is None
    third = pg_store.acquire_lease(persona.id, member="a", host="h1", ttl=TTL)
    assert third.token > second.token
    # Station's role may update leases, but a trigger refuses to move a token back.
    with pytest.raises(StationError), pg_store.transaction():
        pg_store._conn.execute("UPDATE leases SET token = 1")  # type: ignore[attr-defined]
    held = pg_store.lease(persona.id)
    assert held is not None and held.token == third.token


def test_acquire_refused_at_once_naming_the_holder(pg_store: PostgresStore) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    pg_store.acquire_lease(persona.id, member="anna", host="laptop-3", ttl=TTL)
    with pytest.raises(BusyError, match="open by anna on laptop-3 since 20"):
        pg_store.acquire_lease(persona.id, member="bo", host="laptop-7", ttl=TTL)
    # The same member on the same laptop (a crashed session) takes it over with a new token.
    again = pg_store.acquire_lease(persona.id, member="anna", host="laptop-3", ttl=TTL)
    held = pg_store.lease(persona.id)
    assert held is not None and held.token == again.token


def test_a_holder_who_is_a_member_is_named_as_they_joined_escaped(
    pg_store: PostgresStore,
) -> None:
    from outreach_station.team.keys import MemberKey

    key = MemberKey.generate("team-x")
    # Written straight to the server: station's own join refuses such a name.
    pg_store.add_member(
        member_id=key.member_id,
        display_name="Anna\u202eadmin\x1b[31m",
        host="laptop-3",
        public_key=key.public_key,
        status="approved",
    )
    persona = pg_store.create("demo", fingerprint=FP)
    taken = pg_store.acquire_lease(persona.id, member=key.member_id, host="laptop-3", ttl=TTL)
    assert taken.member_name == "Anna\u202eadmin\x1b[31m"
    with pytest.raises(BusyError) as refused:
        pg_store.acquire_lease(persona.id, member="bo", host="laptop-7", ttl=TTL)
    assert f"open by Anna\\u202eadmin\\x1b[31m ({key.member_id}) on laptop-3 since 20" in str(
        refused.value
    )
    assert "\u202e" not in str(refused.value) and "\x1b" not in str(refused.value)
    (listed,) = pg_store.leases()
    assert (listed.member, listed.member_name) == (key.member_id, "Anna\u202eadmin\x1b[31m")


def test_force_unlock_frees_and_fences(pg_store: PostgresStore) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    lease = pg_store.acquire_lease(persona.id, member="anna", host="lost-laptop", ttl=TTL)
    freed = pg_store.force_unlock(persona.id)
    assert freed is not None and (freed.member, freed.host) == ("anna", "lost-laptop")
    assert pg_store.force_unlock(persona.id) is None
    with pytest.raises(StateError, match="was lost"):
        pg_store.commit_generation(persona.id, 1, b"m", token=lease.token, blob_names=[])
    assert pg_store.current_generation(persona.id) is None


# Sealed blobs and generations.


def _name(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def test_blobs_round_trip_in_chunks_and_upload_only_what_is_missing(
    pg_store: PostgresStore,
) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    big = bytes(range(256)) * ((CHUNK_BYTES * 2 + 1000) // 256)
    small = b"sealed"
    names = {_name(big), _name(small)}
    assert pg_store.missing_blobs(persona.id, names) == names
    assert pg_store.put_blob(persona.id, _name(big), big) is True
    assert pg_store.missing_blobs(persona.id, names) == {_name(small)}
    assert pg_store.put_blob(persona.id, _name(big), big) is False
    assert pg_store.put_blob(persona.id, _name(small), small) is True
    assert pg_store.get_blob(persona.id, _name(big)) == big
    assert pg_store.get_blob(persona.id, _name(small)) == small
    with pg_store._conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT count(*) FROM blob_chunks WHERE name = %s", (_name(big),))
        assert cur.fetchone() == (3,)


def test_a_missing_chunk_is_refused(pg_store: PostgresStore, team_db: TeamDb) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    data = b"x" * (CHUNK_BYTES + 1)
    pg_store.put_blob(persona.id, _name(data), data)
    with _raw(team_db) as conn:
        conn.execute("DELETE FROM blob_chunks WHERE seq = 1")
    with pytest.raises(StationError, match="incomplete or altered"):
        pg_store.get_blob(persona.id, _name(data))


def test_a_stale_token_cannot_commit_a_generation(pg_store: PostgresStore, team_db: TeamDb) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    pg_store.put_blob(persona.id, "aa", b"blob")
    a = pg_store.acquire_lease(persona.id, member="a", host="h1", ttl=timedelta(0))
    pg_store.commit_generation(persona.id, 1, b"manifest-1", token=a.token, blob_names=["aa"])
    with team_db.member_store() as laptop_b:
        b = laptop_b.acquire_lease(persona.id, member="b", host="h2", ttl=TTL)
        laptop_b.commit_generation(persona.id, 2, b"manifest-2", token=b.token, blob_names=["aa"])
    # A wakes from suspend with its old token and a generation 3 of its own.
    with pytest.raises(StateError, match=r"lease on persona \w+ was lost"):
        pg_store.commit_generation(persona.id, 3, b"stale", token=a.token, blob_names=["aa"])
    current = pg_store.current_generation(persona.id)
    assert current is not None
    assert (current.generation, current.manifest, current.member) == (2, b"manifest-2", "b")
    with pytest.raises(StateError, match="not newer"):
        pg_store.commit_generation(persona.id, 2, b"again", token=b.token, blob_names=["aa"])
    with pytest.raises(StateError, match="names blobs the team server lacks"):
        pg_store.commit_generation(persona.id, 3, b"m", token=b.token, blob_names=["aa", "bb"])
    assert pg_store.current_generation(persona.id) == current


def test_an_upload_killed_midway_is_never_visible(pg_store: PostgresStore, team_db: TeamDb) -> None:
    persona = pg_store.create("demo", fingerprint=FP)
    lease = pg_store.acquire_lease(persona.id, member="a", host="h1", ttl=TTL)
    pg_store.put_blob(persona.id, "01", b"first")
    pg_store.commit_generation(persona.id, 1, b"manifest-1", token=lease.token, blob_names=["01"])
    big = b"y" * (CHUNK_BYTES * 3)
    with team_db.member_store() as laptop:
        laptop_lease = laptop.acquire_lease(persona.id, member="a", host="h1", ttl=TTL)
        pid = laptop._conn.info.backend_pid  # type: ignore[attr-defined]
        lost = pytest.raises(EnvironmentProblem, match="lost the connection to the team server")
        with lost, laptop.transaction():
            laptop.put_blob(persona.id, "02", big)
            with team_db.server.admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            laptop.put_blob(persona.id, "03", b"more")
            laptop.commit_generation(
                persona.id, 2, b"manifest-2", token=laptop_lease.token, blob_names=["02", "03"]
            )
    assert pg_store.missing_blobs(persona.id, {"01", "02", "03"}) == {"02", "03"}
    current = pg_store.current_generation(persona.id)
    assert current is not None and (current.generation, current.manifest) == (1, b"manifest-1")
    # Blobs uploaded (each whole) but the connection lost before the commit: still generation 1.
    with team_db.member_store() as laptop:
        laptop.put_blob(persona.id, "02", big)
        pid = laptop._conn.info.backend_pid  # type: ignore[attr-defined]
        with team_db.server.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(EnvironmentProblem):
            laptop.commit_generation(
                persona.id, 2, b"manifest-2", token=laptop_lease.token, blob_names=["02"]
            )
    current = pg_store.current_generation(persona.id)
    assert current is not None and current.generation == 1


# The audit trail.


def test_audit_records_chain_across_laptops(pg_store: PostgresStore, team_db: TeamDb) -> None:
    def make(last: AuditRecord | None) -> tuple[str, str, bytes]:
        previous = last.hash if last else "0" * 64
        record = f"after {previous}"
        return record, hashlib.sha256(record.encode()).hexdigest(), b"signed " + record.encode()

    laptops = [team_db.member_store() for _ in range(3)]
    barrier = threading.Barrier(3)

    def append(i: int) -> None:
        barrier.wait()
        for _ in range(10):
            laptops[i].append_audit_record(member=f"m{i}", host=f"h{i}", make=make)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for laptop in laptops:
        laptop.close()
    records = pg_store.audit_records()
    assert len(records) == 30
    previous = "0" * 64
    for record in records:
        assert record.record == f"after {previous}"
        assert record.signature == b"signed " + record.record.encode()  # stored as given
        previous = record.hash
    assert {r.member for r in records} == {"m0", "m1", "m2"}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET record = 'edited'",
        "DELETE FROM audit_records",
        "TRUNCATE audit_records",
    ],
)
@pytest.mark.parametrize("role", ["station", "station_owner"])
def test_audit_records_cannot_be_changed(
    pg_store: PostgresStore, team_db: TeamDb, statement: str, role: str
) -> None:
    pg_store.append_audit_record(member="m", host="h", make=lambda last: ("opened", "h1", None))
    with _raw(team_db, role=role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    assert [(r.record, r.hash) for r in pg_store.audit_records()] == [("opened", "h1")]


def test_station_role_changing_audit_records_through_the_store_is_one_line(
    pg_store: PostgresStore,
) -> None:
    pg_store.append_audit_record(member="m", host="h", make=lambda last: ("opened", "h1", None))
    refused = pytest.raises(SecurityError, match="permission denied for table audit_records")
    with refused, pg_store.transaction():
        pg_store._conn.execute("DELETE FROM audit_records")  # type: ignore[attr-defined]
    assert len(pg_store.audit_records()) == 1


def test_team_connection_parts(team_db: TeamDb) -> None:
    connection = TeamConnection(team_db.url(extra="sslmode=disable"))
    assert connection.where == f"127.0.0.1:{team_db.server.port}/{team_db.name}"


# Members: station's role may only move a member along pending -> approved -> removed.


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE members SET public_key = decode(repeat('ab', 32), 'hex')",
        "UPDATE members SET member_id = 'aaaaaaaaaaaaaaaa'",
        "UPDATE members SET display_name = 'IT support'",
        "UPDATE members SET status = 'pending' WHERE status = 'approved'",
        "UPDATE members SET status = 'approved', removed = NULL WHERE status = 'removed'",
        "INSERT INTO members (member_id, display_name, host, public_key, status) "
        "VALUES ('bbbbbbbbbbbbbbbb', 'x', 'h', decode(repeat('cd', 32), 'hex'), 'approved')",
        "DELETE FROM members",
    ],
)
def test_station_role_cannot_rewrite_or_forge_member_rows(
    pg_store: PostgresStore, team_db: TeamDb, statement: str
) -> None:
    from outreach_station.team.keys import MemberKey

    keys = [MemberKey.generate("team-x") for _ in range(3)]
    for key, status in zip(keys, ("approved", "pending", "pending"), strict=True):
        pg_store.add_member(
            member_id=key.member_id,
            display_name="n",
            host="h",
            public_key=key.public_key,
            status=status,
        )
    assert pg_store.approve_member(keys[1].member_id, approved_by=keys[0].member_id)
    pg_store.remove_member(keys[1].member_id)
    before = pg_store.members()

    with (
        _raw(team_db) as conn,
        pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.RaiseException)),
    ):
        conn.execute(statement)

    assert pg_store.members() == before
