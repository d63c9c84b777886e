"""The Store protocol behaves the same on the embedded SQLite and the team's PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outreach_station.errors import NotFoundError, StateError
from outreach_station.storage import ProxyRecord, Store, UniqueConflict
from outreach_station.storage.sqlite import SqliteStore
from tests.team.conftest import TeamDb

FP = {"version": 1}

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new handle on one store (each call: a new connection to the same data)."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "r.sqlite3")
    team_db: TeamDb = request.getfixturevalue("team_db")
    team_db.owner_store().close()
    return team_db.member_store


@pytest.fixture
def store(opener: Opener) -> Iterator[Store]:
    with opener() as opened:
        yield opened


def test_first_persona_is_active_then_standby(store: Store) -> None:
    a = store.create("demo", fingerprint=FP, label="first")
    b = store.create("demo", fingerprint=FP)
    c = store.create("other", fingerprint=FP)
    assert (a.status, b.status, c.status) == ("active", "standby", "active")
    assert store.active("demo") == a
    assert [p.id for p in store.list(platform="demo")] == [a.id, b.id]
    assert [p.id for p in store.list(status="active")] == [a.id, c.id]
    assert store.get(a.id).label == "first"
    assert store.get(a.id).fingerprint == FP


def test_unknown_persona(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no persona with id 'abcdefghijkl'"):
        store.get("abcdefghijkl")
    with pytest.raises(NotFoundError):
        store.transition("abcdefghijkl", "retired")


def test_transitions_refused_and_allowed(store: Store) -> None:
    a = store.create("demo", fingerprint=FP)
    b = store.create("demo", fingerprint=FP)
    with pytest.raises(StateError, match="already has an active persona"):
        store.transition(b.id, "active")
    assert store.get(b.id).status == "standby"
    retired = store.transition(a.id, "retired", reason="done")
    assert (retired.status, retired.status_reason) == ("retired", "done")
    with pytest.raises(StateError, match="retired persona never comes back"):
        store.transition(a.id, "active")
    assert store.transition(b.id, "active").status == "active"


def test_rotate_promotes_standby_then_creates(store: Store) -> None:
    a = store.create("demo", fingerprint=FP)
    b = store.create("demo", fingerprint=FP)
    blocked, active, created = store.rotate("demo", reason="banned", fresh_fingerprint=dict)
    assert blocked is not None
    assert (blocked.id, blocked.status, blocked.status_reason) == (a.id, "blocked", "banned")
    assert (active.id, active.status, created) == (b.id, "active", False)
    blocked, fresh, created = store.rotate(
        "demo", reason="again", fresh_fingerprint=lambda: {"new": True}
    )
    assert blocked is not None and blocked.id == b.id
    assert created and fresh.fingerprint == {"new": True}
    assert store.active("demo") == fresh


def test_undo_rotation_puts_both_back_and_only_as_the_rotation_left_them(store: Store) -> None:
    a = store.create("demo", fingerprint=FP)
    b = store.create("demo", fingerprint=FP)
    blocked, active, _ = store.rotate("demo", reason="typo", fresh_fingerprint=dict)
    assert blocked is not None
    # The rotation stamps both with one moment: that is how undo pairs them.
    assert blocked.status_changed == active.status_changed
    restored, demoted = store.undo_rotation(
        "demo", blocked_id=a.id, promoted_id=b.id, reason="rotation undone"
    )
    assert (restored.id, restored.status) == (a.id, "active")
    assert (demoted.id, demoted.status) == (b.id, "standby")
    with pytest.raises(StateError, match="changed since its last rotation"):
        store.undo_rotation("demo", blocked_id=a.id, promoted_id=b.id, reason="again")
    assert store.active("demo") == store.get(a.id)
    assert store.get(b.id).status == "standby"


def test_transaction_rolls_back_as_one_and_nests(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.create("demo", fingerprint=FP)
        with store.transaction():
            store.create("other", fingerprint=FP)
        raise RuntimeError
    assert store.list() == []


def test_kits_refuse_a_detail_in_use(store: Store) -> None:
    a = store.create("demo", fingerprint=FP)
    b = store.create("demo", fingerprint=FP)
    row = {"username": "Anna", "email": "", "phone": "", "card_label": "", "card_last4": "1234"}
    store.put_kit(a.id, row)
    with pytest.raises(UniqueConflict):
        store.put_kit(b.id, {**row, "username": "anna", "card_last4": ""})
    assert store.kit_row(b.id) is None
    kit = store.kit_row(a.id)
    assert kit is not None
    assert (kit["username"], kit["card_last4"], kit["updated"][-1]) == ("Anna", "1234", "Z")
    assert [k["persona_id"] for k in store.kit_rows()] == [a.id]


def test_proxies(store: Store) -> None:
    a = store.create("demo", fingerprint=FP)
    b = store.create("demo", fingerprint=FP)
    store.put_proxy(ProxyRecord(a.id, "socks5://127.0.0.1:1080", "u", "persona"))
    store.put_proxy(ProxyRecord(b.id, "http://127.0.0.2:3128", "", "pool"))
    assert store.proxy(a.id) == ProxyRecord(a.id, "socks5://127.0.0.1:1080", "u", "persona")
    assert list(store.platform_proxies("demo", excluding=a.id)) == [
        ("http://127.0.0.2:3128", "standby")
    ]
    assert store.delete_proxy(b.id) is True
    assert store.delete_proxy(b.id) is False
    assert store.proxy(b.id) is None


def test_sealed_generation_bookkeeping(store: Store) -> None:
    assert store.sealed_generation("abcdefghijkl") == (0, None)
    store.begin_sealed_generation("abcdefghijkl", 1)
    assert store.sealed_generation("abcdefghijkl") == (0, 1)
    store.commit_sealed_generation("abcdefghijkl", 1)
    assert store.sealed_generation("abcdefghijkl") == (1, None)


def test_concurrent_creates_give_exactly_one_active(opener: Opener) -> None:
    opener().close()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            with opener() as s:
                barrier.wait()
                for _ in range(5):
                    s.create("demo", fingerprint=FP)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with opener() as s:
        statuses = [p.status for p in s.list(platform="demo")]
    assert len(statuses) == 20
    assert statuses.count("active") == 1
