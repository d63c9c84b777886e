"""Re-keying a team persona after a member's removal, against a real PostgreSQL.

Laptop A is this process; laptops B and C are other station homes run in
child processes with their own keyrings (`tests.keyrings`). A persona's data
key of one version is the same for every member it was wrapped for, so the
key A unwraps for version 1 is exactly the key B held before its removal.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.errors import ExitCode, IntegrityError
from outreach_station.storage.postgres import PostgresStore
from outreach_station.team.config import read_team_file
from outreach_station.team.keys import WrappedKey, load_member_key, unwrap_data_key
from outreach_station.vault.blobs import StoreKeys, open_blob, read_manifest
from tests.site import TestSite
from tests.team import test_team_cli, test_team_open
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import LaptopB

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.browser, pytest.mark.keyring]


class _Generation:
    """One stored generation of the server as a read-only `BlobStore`, old ones included."""

    def __init__(self, store: PostgresStore, persona_id: str, generation: int) -> None:
        row = store._conn.execute(
            "SELECT manifest FROM generations WHERE persona_id = %s AND generation = %s",
            (persona_id, generation),
        ).fetchone()
        assert row is not None
        self._store, self._persona, self._manifest = store, persona_id, bytes(row[0])
        self.location = f"generation {generation} on the server"

    def get_manifest(self, generation: int) -> bytes:
        return self._manifest

    def get(self, name: str) -> bytes:
        return self._store.get_blob(self._persona, name)


def _data_key(store: PostgresStore, persona_id: str, version: int) -> bytes:
    """Laptop A's unwrap of the persona's key `version` (the same key every holder has)."""
    joined = read_team_file(paths.current())
    assert joined is not None
    key = load_member_key(paths.current(), joined.team_id)
    (mine,) = [
        w
        for w in store.wrapped_keys(persona_id, member_id=key.member_id)
        if w.key_version == version
    ]
    wrapped = WrappedKey(mine.persona_id, mine.member_id, mine.key_version, mine.sealed)
    return unwrap_data_key(wrapped, key, persona_id=persona_id, key_version=version)


def _opens(store: PostgresStore, persona_id: str, generation: int, data_key: bytes) -> int:
    """Authenticate the generation's manifest and every blob with `data_key`; the blob count."""
    keys = StoreKeys.derive(data_key, persona_id)
    view = _Generation(store, persona_id, generation)
    manifest = read_manifest(view, keys, generation)  # type: ignore[arg-type]
    for name in manifest.blob_sizes:
        open_blob(keys.aead(), keys, name, view.get(name), view.location)
    return len(manifest.blob_sizes)


async def _nothing(_context: Any, _page: Any) -> None:
    return None


def _join(runner: Any, laptop: LaptopB, name: str) -> str:
    joined = laptop.run("team", "join", laptop.url, "--name", name, "--json", store_password=True)
    assert joined.returncode == 0, joined.stderr
    member: str = json.loads(joined.stdout)["member_id"]
    approved = runner.invoke(["team", "approve", member, "--yes"])
    assert approved.exit_code == 0, approved.output
    return member


def test_after_a_removal_the_next_seal_uses_a_new_key_the_removed_member_never_gets(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
) -> None:
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    a = json.loads(founded.stdout)["member_id"]
    b = _join(runner, laptop_b, "Bo")
    laptop_c = LaptopB(laptop_b.root.parent / "laptop-c", laptop_b.url, laptop_b.password)
    c = _join(runner, laptop_c, "Cai")
    value = f"v{secrets.token_hex(8)}"

    opened = api.open_platform(
        "site-one",
        url=f"{site.url}set-cookie?v={value}",
        headless=True,
        hook=_nothing,
        close_after_hook=True,
    )
    persona = opened.persona.id
    with laptop_a.owner_store() as store:
        assert sorted(w.member_id for w in store.wrapped_keys(persona)) == sorted([a, b, c])
        first = store.current_generation(persona)
        assert first is not None and (first.generation, first.key_version) == (1, 1)
        # What B holds after its removal: the version-1 key.
        old_key = _data_key(store, persona, 1)

    removed = runner.invoke(["team", "remove", b])
    assert removed.exit_code == 0, removed.output
    # No open since the removal: the persona is still due, and status says so.
    status = runner.invoke(["team", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["rekey_due"] == [persona]
    shown = runner.invoke(["team", "status"])
    assert f"re-key due: persona {persona} gets a new key at its next open" in shown.stdout
    with laptop_a.owner_store() as store:
        assert store.rekey_due() == [persona]
        current = store.current_generation(persona)
        assert current is not None and current.generation == 1  # nothing sealed yet

    # A opens and closes the persona: the new generation is sealed with version 2.
    again = api.open_platform("site-one", headless=True, hook=_nothing, close_after_hook=True)
    assert again.persona.id == persona
    with laptop_a.owner_store() as store:
        second = store.current_generation(persona)
        assert second is not None and (second.generation, second.key_version) == (2, 2)
        assert store.rekey_due() == []
        wraps = {(w.member_id, w.key_version) for w in store.wrapped_keys(persona)}
        assert wraps == {(a, 1), (c, 1), (a, 2), (c, 2)}
        new_key = _data_key(store, persona, 2)
        assert new_key != old_key
        # B's old key fails authentication on the new generation's manifest and blobs.
        with pytest.raises(IntegrityError, match=r"manifest"):
            _opens(store, persona, 2, old_key)
        sealed = StoreKeys.derive(old_key, persona)
        for name in second.blob_names:
            with pytest.raises(IntegrityError):
                open_blob(sealed.aead(), sealed, name, store.get_blob(persona, name), "server")
        assert _opens(store, persona, 2, new_key) > 0
        # The old generation still opens with version 1, for members who hold it.
        assert _opens(store, persona, 1, old_key) > 0

    # B, removed, is refused; C opens the re-keyed generation and sees A's cookie.
    refused = test_team_open._run_b(
        laptop_b, test_team_open._B_CLI, "open", "site-one", "--headless"
    )
    assert refused.returncode == ExitCode.SECURITY, refused.stderr
    assert f"this laptop's member {b} is removed in the team" in refused.stderr
    seen = test_team_open._run_b(laptop_c, test_team_open._B_OPEN)
    assert seen.returncode == 0, seen.stderr
    assert f"station_flush={value}" in seen.stdout.strip().splitlines()[-1]
    with laptop_a.owner_store() as store:
        third = store.current_generation(persona)
        assert third is not None
        assert (third.generation, third.member, third.key_version) == (3, c, 2)
        assert store.rekey_due() == []


def test_a_removal_during_a_re_keyed_session_leaves_the_persona_due(
    laptop_a: TeamDb,
) -> None:
    """The mark is cleared only by a generation whose key was made after the last removal."""
    with laptop_a.owner_store() as store:
        persona = store.create("demo", fingerprint={})
        store._conn.execute("INSERT INTO rekey_due (persona_id) VALUES (%s)", (persona.id,))
        seen = store.rekey_mark(persona.id)
        assert seen is not None
        # A second removal while the re-keyed session runs moves the mark on.
        store._conn.execute(
            "UPDATE rekey_due SET since = clock_timestamp() WHERE persona_id = %s", (persona.id,)
        )
        blob = "ab" * 16
        store.put_blob(persona.id, blob, b"sealed")
        lease = store.acquire_lease(persona.id, member="m", host="h", ttl=timedelta(minutes=5))
        store.commit_generation(
            persona.id,
            1,
            b"manifest",
            token=lease.token,
            blob_names=[blob],
            key_version=2,
            rekey_since=seen,
        )
        assert store.rekey_due() == [persona.id]
        store.commit_generation(
            persona.id,
            2,
            b"manifest",
            token=lease.token,
            blob_names=[blob],
            key_version=2,
            rekey_since=store.rekey_mark(persona.id),
        )
        assert store.rekey_due() == []
        current = store.current_generation(persona.id)
        assert current is not None and current.key_version == 2


def test_a_crashed_session_of_a_persona_due_is_recovered_under_the_new_key(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
) -> None:
    """What a killed session left open after a removal is not sealed with the old key."""

    founded = runner.invoke(["team", "init", laptop_a.url(), "--json"])
    assert founded.exit_code == 0, founded.output
    b = _join(runner, laptop_b, "Bo")
    first = api.open_platform("site-one", headless=True, hook=_nothing, close_after_hook=True)
    persona = first.persona.id
    with laptop_a.owner_store() as store:
        old_key = _data_key(store, persona, 1)
    assert runner.invoke(["team", "remove", b]).exit_code == 0
    test_team_open.leave_crashed_session(persona)
    seen: dict[str, Any] = {}

    async def look(_context: Any, _page: Any) -> None:
        with laptop_a.member_store() as store:
            seen["current"] = store.current_generation(persona)

    api.open_platform(
        "site-one", persona_id=persona, headless=True, hook=look, close_after_hook=True
    )
    # The recovered generation went up, sealed with the new key, before the browser started.
    assert (seen["current"].generation, seen["current"].key_version) == (2, 2)
    with laptop_a.owner_store() as store:
        with pytest.raises(IntegrityError):
            _opens(store, persona, 2, old_key)
        assert _opens(store, persona, 2, _data_key(store, persona, 2)) > 0
        now = store.current_generation(persona)
        assert now is not None and (now.generation, now.key_version) == (3, 2)
        assert store.rekey_due() == []
