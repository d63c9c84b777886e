"""Sync and leases against a real PostgreSQL: two laptops (two station homes) and one server.

Profiles are sealed with the vault's own code (`workspace.SealedState`); the
persona's data key is one random key both laptops hold, as team members do
once it is unwrapped for them.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import workspace
from outreach_station.errors import BusyError, EnvironmentProblem, IntegrityError, StateError
from outreach_station.paths import StationPaths
from outreach_station.storage.postgres import PostgresStore, TeamConnection
from outreach_station.storage.sqlite import SqliteStore
from outreach_station.team import sync
from outreach_station.vault.blobs import StoreKeys, read_manifest
from tests.team.conftest import TeamDb

TTL = timedelta(minutes=5)
FP = {"version": 1}


@dataclass
class Laptop:
    """One simulated laptop: its own station home, registry and connection to the server."""

    name: str
    paths: StationPaths
    registry: SqliteStore
    server: PostgresStore
    persona: str
    key: bytes

    @property
    def copy(self) -> sync.LocalCopy:
        return sync.LocalCopy.of(self.paths, self.registry, self.persona)

    @property
    def keys(self) -> StoreKeys:
        return StoreKeys.derive(self.key, self.persona)

    def state(self) -> workspace.SealedState:
        return workspace.SealedState(self.paths, self.persona, store=self.registry)

    def seal(self, files: dict[str, bytes], tmp: Path) -> tuple[int, bytes, dict[str, int]]:
        """Seal a profile holding `files` as the next generation; its number, manifest, blobs."""
        src = tmp / f"{self.name}-src-{secrets.token_hex(3)}"
        for relative, data in files.items():
            (src / "profile" / relative).parent.mkdir(parents=True, exist_ok=True)
            (src / "profile" / relative).write_bytes(data)
        self.state().seal(src, self.key, None)
        generation = self.registry.sealed_generation(self.persona)[0]
        manifest = self.copy.blobs.get_manifest(generation)
        names = read_manifest(self.copy.blobs, self.keys, generation).blob_sizes
        return generation, manifest, names

    def unseal(self, tmp: Path) -> dict[str, bytes]:
        out = tmp / f"{self.name}-out-{secrets.token_hex(3)}"
        out.mkdir()
        self.state().unseal(out, self.key, None)
        root = out / "profile"
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def upload(self, sealed: tuple[int, bytes, dict[str, int]], token: int, **kw: Any) -> Any:
        generation, manifest, names = sealed
        return sync.upload(
            self.server,
            self.copy,
            generation,
            manifest,
            names,
            token=token,
            member=f"member-{self.name}",
            host=f"laptop-{self.name}",
            **kw,
        )

    def hold(self, team_db: TeamDb, ttl: timedelta = TTL) -> Any:
        return sync.hold(
            self.server,
            self.persona,
            f"member-{self.name}",
            f"laptop-{self.name}",
            ttl,
            connect=team_db.member_store,
        )


@pytest.fixture
def laptops(
    pg_store: PostgresStore, team_db: TeamDb, tmp_path: Path
) -> Iterator[tuple[Laptop, Laptop]]:
    persona = pg_store.create("demo", fingerprint=FP).id
    key = os.urandom(32)
    made = []
    for name in ("a", "b"):
        home = StationPaths(tmp_path / f"home-{name}")
        home.home.mkdir()
        made.append(
            Laptop(name, home, SqliteStore(home.registry), team_db.member_store(), persona, key)
        )
    try:
        yield made[0], made[1]
    finally:
        for laptop in made:
            laptop.registry.close()
            with_suppressed_close(laptop.server)


def with_suppressed_close(store: PostgresStore) -> None:
    try:
        store.close()
    except Exception:
        return


def _profile(marker: str = "") -> dict[str, bytes]:
    return {
        "Default/Cookies": b"SQLite format 3\x00" + os.urandom(200_000),
        "Default/big.bin": os.urandom(3 * (1 << 20) + 123),
        "Default/Preferences": f'{{"marker": "{marker}"}}'.encode(),
        **{f"Default/small/{i}.txt": f"file {i} {marker}".encode() for i in range(20)},
    }


def _kill_connections(team_db: TeamDb) -> None:
    with team_db.server.admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (team_db.name,),
        )


def test_what_a_seals_and_uploads_b_fetches_byte_for_byte(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    files = _profile("hello")
    seen: list[tuple[int, int]] = []
    with a.hold(team_db) as session:
        sealed = a.seal(files, tmp_path)
        done = a.upload(sealed, session.token, progress=lambda d, t: seen.append((d, t)))
    assert (done.status, done.generation) == ("uploaded", 1)
    assert done.blobs_sent == len(sealed[2])
    assert (
        seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    )
    assert sync.pending(a.paths) == []

    with b.hold(team_db):
        got = sync.fetch(b.server, b.copy, b.keys)
    assert (got.status, got.generation, got.blobs_received) == ("fetched", 1, len(sealed[2]))
    assert b.copy.blobs.names() == a.copy.blobs.names()
    for name in a.copy.blobs.names():
        assert b.copy.blobs.get(name) == a.copy.blobs.get(name)
    assert b.copy.blobs.get_manifest(1) == a.copy.blobs.get_manifest(1) == sealed[1]
    assert b.registry.sealed_generation(b.persona) == (1, None)
    assert b.unseal(tmp_path) == files
    # Fetching again does nothing.
    assert sync.fetch(b.server, b.copy, b.keys).status == "current"

    # B changes one small file; A then fetches only what changed.
    changed = {**files, "Default/Preferences": b'{"marker": "second"}'}
    with b.hold(team_db) as session:
        second = b.seal(changed, tmp_path)
        sent = b.upload(second, session.token)
    assert sent.status == "uploaded"
    assert 0 < sent.blobs_sent < len(second[2])  # only what the server lacked
    with a.hold(team_db):
        again = sync.fetch(a.server, a.copy, a.keys)
    assert (again.status, again.generation) == ("fetched", 2)
    assert 0 < again.blobs_received < len(second[2])
    assert a.registry.sealed_generation(a.persona) == (2, None)
    assert a.unseal(tmp_path) == changed


def test_while_b_holds_the_persona_a_is_refused_naming_b(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb
) -> None:
    a, b = laptops
    with b.hold(team_db) as session:
        since = session.lease.since.astimezone().strftime("%Y-%m-%d %H:%M")
        started = time.monotonic()
        with pytest.raises(BusyError) as refused, a.hold(team_db):
            pytest.fail("A got the lease B holds")
        assert time.monotonic() - started < 2
        assert f"open by member-b on laptop-b since {since}" in str(refused.value)
        assert session.state == "held"
    assert session.state == "released"
    with a.hold(team_db) as mine:
        assert mine.token > session.token


def test_the_lease_is_renewed_and_unproven_while_the_server_is_gone(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb
) -> None:
    a, _b = laptops
    reachable = threading.Event()
    reachable.set()
    dead = TeamConnection(team_db.url().replace(str(team_db.server.port), "1"))

    def connect() -> PostgresStore:
        if reachable.is_set():
            return team_db.member_store()
        return PostgresStore(dead, password=team_db.server.member_password, connect_timeout=2)

    ttl = timedelta(seconds=1.5)
    with sync.hold(a.server, a.persona, "member-a", "laptop-a", ttl, connect=connect) as session:
        first = session.lease.expires
        time.sleep(1.2)
        assert session.state == "held"
        assert session.lease.expires > first
        reachable.clear()
        _kill_connections(team_db)
        deadline = time.monotonic() + 10
        while session.state != "unproven" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session.state == "unproven"
        assert "lease unproven" in (session.problem or "")
        # Back: the same token renews (nobody took the persona meanwhile).
        reachable.set()
        deadline = time.monotonic() + 10
        while session.state != "held" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session.state == "held"
        token = session.token
    with team_db.member_store() as check:
        assert check.lease(a.persona) is None  # released through a fresh connection
        taken = check.acquire_lease(a.persona, member="x", host="y", ttl=TTL)
        assert taken.token > token


def test_a_lease_taken_over_is_lost_and_not_released_from_its_new_holder(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb
) -> None:
    a, b = laptops
    with a.hold(team_db) as session:
        assert session.renew() == "held"
        b.server.force_unlock(a.persona)
        with b.hold(team_db) as other:
            assert session.renew() == "lost"
            # Named as B's when A's check came after B took it; A's renewing thread
            # hears the unlock at once (NOTIFY) and may find the lease still free.
            assert (session.problem or "").startswith(
                f"the lease on persona {a.persona} was lost (it expired or was unlocked"
            )
        held_by_b = other.token
        taken = b.server.acquire_lease(a.persona, member="member-b", host="laptop-b", ttl=TTL)
    # A leaving its block gave nothing back: B's new lease stands.
    assert session.state == "lost"
    still = b.server.lease(a.persona)
    assert still is not None and still.token == taken.token > held_by_b


def test_a_stale_token_cannot_commit_and_nothing_is_lost(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    files = _profile("one")
    with a.hold(team_db) as session:
        assert a.upload(a.seal(files, tmp_path), session.token).status == "uploaded"
        stale = session.token
        # A's laptop is cut off; IT unlocks the persona; B works on it.
        b.server.force_unlock(a.persona)
        with b.hold(team_db) as other:
            sync.fetch(b.server, b.copy, b.keys)
            b_files = {**files, "Default/Preferences": b"B's work"}
            assert b.upload(b.seal(b_files, tmp_path), other.token).status == "uploaded"
        a_files = {**files, "Default/Preferences": b"A's work"}
        mine = a.seal(a_files, tmp_path)
        with pytest.raises(StateError) as refused:
            a.upload(mine, stale)
    message = str(refused.value)
    assert "generation 2 sealed on this laptop was not sent" in message
    assert "the team server has generation 2 (from member-b)" in message
    assert "sealed from generation 1" in message
    current = b.server.current_generation(a.persona)
    assert current is not None and current.member == "member-b"
    # A's work is kept aside, sealed, whole; the server's is A's persona from now on.
    aside = sync.set_aside(a.paths, a.persona)
    assert len(aside) == 1 and str(aside[0]) in message
    from outreach_station.storage.blobs import LocalBlobStore

    kept = LocalBlobStore(aside[0])
    assert kept.get_manifest(2) == mine[1]
    assert kept.names() == set(mine[2])
    assert sync.pending(a.paths) == []
    with a.hold(team_db):
        got = sync.fetch(a.server, a.copy, a.keys)
    assert (got.status, got.generation) == ("fetched", 2)
    assert a.unseal(tmp_path) == b_files


def test_an_expired_lease_nobody_took_lets_the_pending_generation_through(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, _b = laptops
    with a.hold(team_db) as session:
        assert a.upload(a.seal(_profile(), tmp_path), session.token).status == "uploaded"
        a.server.force_unlock(a.persona)  # the lease is gone, but nobody committed since
        second = a.seal(_profile("two"), tmp_path)
        with pytest.raises(StateError, match="it stays on this laptop, pending"):
            a.upload(second, session.token)
    assert [p.generation for p in sync.pending(a.paths)] == [2]
    with pytest.raises(StateError, match="waiting for the team server"):
        sync.fetch(a.server, a.copy, a.keys)
    with a.hold(team_db) as fresh:
        done = sync.flush_pending(a.server, a.copy, token=fresh.token)
    assert done is not None and done.status == "uploaded"
    current = a.server.current_generation(a.persona)
    assert current is not None and (current.generation, current.manifest) == (2, second[1])
    assert sync.pending(a.paths) == []


def test_server_lost_mid_upload_leaves_nothing_partial_and_the_generation_pending(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    files = _profile("lost")
    calls: list[int] = []

    def cut_off(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:
            _kill_connections(team_db)

    with a.hold(team_db) as session:
        sealed = a.seal(files, tmp_path)
        done = a.upload(sealed, session.token, progress=cut_off)
        token = session.token
    assert done.status == "pending" and done.blobs_sent == 1
    assert "team server" in done.problem
    with team_db.member_store() as look:
        assert look.current_generation(a.persona) is None
        assert len(look.missing_blobs(a.persona, sealed[2])) == len(sealed[2]) - 1
    waiting = sync.pending(a.paths)
    assert [(p.persona_id, p.generation, p.base, p.token) for p in waiting] == [
        (a.persona, 1, 0, token)
    ]
    assert "team server" in waiting[0].problem
    # The local generation is whole and still A's.
    assert a.registry.sealed_generation(a.persona) == (1, None)
    assert a.unseal(tmp_path) == files
    b.server = team_db.member_store()  # every connection was cut
    assert sync.fetch(b.server, b.copy, b.keys).status == "none"

    # The server is back: A opens again and sends it with its new lease's token.
    a.server = team_db.member_store()
    with a.hold(team_db) as session:
        sent = sync.flush_pending(a.server, a.copy, token=session.token)
    assert sent is not None and sent.status == "uploaded"
    assert sent.blobs_sent == len(sealed[2]) - 1  # only what the server lacked
    assert sync.pending(a.paths) == []
    assert sync.fetch(b.server, b.copy, b.keys).status == "fetched"
    assert b.unseal(tmp_path) == files


def test_a_tampered_blob_on_the_server_is_refused_and_not_kept(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    with a.hold(team_db) as session:
        sealed = a.seal(_profile(), tmp_path)
        a.upload(sealed, session.token)
    victim = sorted(sealed[2])[0]
    with team_db.server.admin(team_db.name) as admin:
        admin.execute(
            # One bit of the ciphertext flipped (byte 29: past the 24-byte header of any blob).
            "UPDATE blob_chunks SET data = set_byte(data, 29, get_byte(data, 29) # 1) "
            "WHERE persona_id = %s AND name = %s AND seq = 0",
            (a.persona, victim),
        )
    with pytest.raises(IntegrityError, match=f"blob {victim} failed authentication"):
        sync.fetch(b.server, b.copy, b.keys)
    assert victim not in b.copy.blobs.names()
    assert b.copy.blobs.manifests() == []
    assert b.registry.sealed_generation(b.persona) == (0, None)


def test_a_server_rolled_back_to_an_older_generation_is_refused(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, _b = laptops
    with a.hold(team_db) as session:
        a.upload(a.seal(_profile("one"), tmp_path), session.token)
        a.upload(a.seal(_profile("two"), tmp_path), session.token)
    # As if the server were restored from yesterday's backup.
    with team_db.server.admin(team_db.name) as admin:
        admin.execute(
            "UPDATE current_generations SET generation = 1 WHERE persona_id = %s", (a.persona,)
        )
    before = a.copy.blobs.get_manifest(2)
    with pytest.raises(IntegrityError, match="offers generation 1, older than generation 2"):
        sync.fetch(a.server, a.copy, a.keys)
    assert a.copy.blobs.get_manifest(2) == before
    assert a.registry.sealed_generation(a.persona) == (2, None)


def test_a_laptop_whose_copy_vanished_does_not_accept_an_older_server_generation(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    with a.hold(team_db) as session:
        a.upload(a.seal(_profile("one"), tmp_path), session.token)
    sync.fetch(b.server, b.copy, b.keys)
    # B's registry knows generation 2; its copy and sync record are gone; the server has 1.
    b.registry.commit_sealed_generation(b.persona, 2)
    b.copy.blobs.delete_manifest(1)
    b.copy.state_file.unlink()
    with pytest.raises(IntegrityError, match="offers the older generation 1 and the laptop's copy"):
        sync.fetch(b.server, b.copy, b.keys)
    assert b.registry.sealed_generation(b.persona) == (2, None)
    assert b.copy.blobs.manifests() == []


def test_a_tampered_manifest_on_the_server_is_refused(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    with a.hold(team_db) as session:
        a.upload(a.seal(_profile(), tmp_path), session.token)
    with team_db.server.admin(team_db.name) as admin:
        admin.execute(
            "UPDATE generations SET manifest = "
            "set_byte(manifest, 40, get_byte(manifest, 40) # 1) "
            "WHERE persona_id = %s",
            (a.persona,),
        )
    with pytest.raises(IntegrityError, match="manifest 1 failed authentication"):
        sync.fetch(b.server, b.copy, b.keys)
    assert b.copy.blobs.names() == set()
    assert b.registry.sealed_generation(b.persona) == (0, None)


def test_fifty_races_of_two_laptops_for_one_lease_have_one_winner(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb
) -> None:
    contenders = list(laptops)
    for race in range(50):
        start, attempted = threading.Barrier(2), threading.Barrier(2)
        outcome: dict[int, Any] = {}

        def contend(
            i: int, start: Any = start, attempted: Any = attempted, out: Any = outcome
        ) -> None:
            start.wait()
            try:
                with contenders[i].hold(team_db) as session:
                    out[i] = session.token
                    attempted.wait()  # hold until the other one has tried
            except BusyError as exc:
                out[i] = exc
                attempted.wait()

        threads = [threading.Thread(target=contend, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [i for i in (0, 1) if isinstance(outcome[i], int)]
        assert len(won) == 1, (race, outcome)
        loser = 1 - won[0]
        assert f"member-{'ab'[won[0]]} on laptop-{'ab'[won[0]]}" in str(outcome[loser])


def test_a_dump_of_the_server_holds_no_plaintext(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, _b = laptops
    marker = f"PLAINTEXT-MARKER-{secrets.token_hex(8)}"
    files = {**_profile(marker), f"Default/{marker}.txt": marker.encode() * 50}
    with a.hold(team_db) as session:
        assert a.upload(a.seal(files, tmp_path), session.token).status == "uploaded"
    dumped = team_db.server.dump(team_db.name)
    assert b"COPY public.blob_chunks" in dumped and len(dumped) > 3 * (1 << 20)
    for form in (marker.encode(), marker.encode().hex().encode()):
        assert form not in dumped


def test_upload_refuses_a_broken_connection_by_raising_nothing_but_pending(
    laptops: tuple[Laptop, Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, _b = laptops
    with a.hold(team_db) as session:
        sealed = a.seal(_profile(), tmp_path)
        _kill_connections(team_db)
        done = a.upload(sealed, session.token)
    assert done.status == "pending" and done.blobs_sent == 0
    with pytest.raises(EnvironmentProblem):
        a.server.current_generation(a.persona)
