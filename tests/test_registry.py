from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from outreach_station.errors import NotFoundError, StateError, UsageError
from outreach_station.ids import validate_persona_id
from outreach_station.registry import MIGRATIONS, Registry

FP = {"version": 1}


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    with Registry(tmp_path / "r.sqlite3") as registry:
        yield registry


def test_first_persona_is_active_then_standby(reg: Registry) -> None:
    a = reg.create("demo", fingerprint=FP, label="first")
    b = reg.create("demo", fingerprint=FP)
    c = reg.create("other", fingerprint=FP)
    assert (a.status, b.status, c.status) == ("active", "standby", "active")
    assert reg.active("demo") == a
    assert [p.id for p in reg.list(platform="demo")] == [a.id, b.id]
    assert reg.get(a.id).label == "first"


def test_explicit_standby(reg: Registry) -> None:
    assert reg.create("demo", fingerprint=FP, standby=True).status == "standby"
    assert reg.active("demo") is None


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    Registry(path).close()
    with Registry(path) as again:
        assert again.schema_version() == len(MIGRATIONS)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    conn.close()
    assert rows == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_retired_never_comes_back(reg: Registry) -> None:
    p = reg.create("demo", fingerprint=FP)
    reg.transition(p.id, "retired", reason="done")
    with pytest.raises(StateError, match="retired persona never comes back"):
        reg.transition(p.id, "active")
    assert reg.get(p.id).status == "retired"


def test_only_one_active_per_platform(reg: Registry) -> None:
    reg.create("demo", fingerprint=FP)
    b = reg.create("demo", fingerprint=FP)
    with pytest.raises(StateError, match="already has an active persona"):
        reg.transition(b.id, "active")
    assert reg.get(b.id).status == "standby"


def test_database_itself_refuses_two_active(reg: Registry, tmp_path: Path) -> None:
    reg.create("demo", fingerprint=FP)
    conn = sqlite3.connect(tmp_path / "r.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO personas (id, platform, status, created, status_changed, fingerprint) "
            "VALUES ('aaaaaaaaaaaa', 'demo', 'active', 'x', 'x', '{}')"
        )
    conn.close()


def test_concurrent_creates_give_exactly_one_active(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    Registry(path).close()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with Registry(path) as r:
                for _ in range(5):
                    r.create("demo", fingerprint=FP)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Registry(path) as r:
        statuses = [p.status for p in r.list(platform="demo")]
    assert len(statuses) == 20
    assert statuses.count("active") == 1


@pytest.mark.parametrize(
    "bad", ["../x", "", "ABCDEFGHIJKL", "aaaaaaaaaaa", "aaaaaaaaaaaa/", "a" * 13]
)
def test_malformed_ids_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="malformed persona id"):
        validate_persona_id(bad)


def test_unknown_id(reg: Registry) -> None:
    with pytest.raises(NotFoundError, match="no persona with id 'abcdefghijkl'"):
        reg.get("abcdefghijkl")
