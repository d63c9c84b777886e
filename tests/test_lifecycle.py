"""Rotation, standby pools, retention and retirement against the real registry and keyring."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.audit import default_log
from outreach_station.errors import BusyError, ExitCode, StateError
from outreach_station.workspace import sealed_file

pytestmark = pytest.mark.keyring


def test_rotate_with_an_empty_pool_creates_a_fresh_persona() -> None:
    first = api.create_persona("demo", label="first")
    result = api.rotate("demo", reason="suspended")
    assert result.blocked is not None and result.blocked.id == first.id
    assert result.blocked.status == "blocked"
    assert result.blocked.status_reason == "suspended"
    assert result.created
    assert result.active.id != first.id
    assert result.active.status == "active"
    assert result.active.fingerprint != first.fingerprint or result.active.id != first.id
    assert api.get_persona(first.id).status == "blocked"
    events = [e.event.value for e in default_log().records()]
    assert events[-3:] == ["persona.blocked", "persona.created", "persona.rotated"]
    assert default_log().verify().ok


def test_rotate_promotes_the_oldest_standby() -> None:
    api.create_persona("demo")
    older, newer = api.create_personas("demo", standby=True, count=2)
    result = api.rotate("demo")
    assert not result.created
    assert result.active.id == older.id
    assert api.get_persona(newer.id).status == "standby"


def test_a_second_rotation_moments_later_is_refused_unless_forced() -> None:
    api.create_persona("demo")
    first = api.rotate("demo")
    with pytest.raises(BusyError, match="was rotated moments ago"):
        api.rotate("demo")
    assert api.get_persona(first.active.id).status == "active"
    forced = api.rotate("demo", force=True)
    assert forced.blocked is not None and forced.blocked.id == first.active.id


def _rotate_in_child(home: str, runtime: str, system_root: str, queue: Any) -> None:
    paths.set_test_system_root(Path(system_root))
    os.environ["STATION_HOME"] = home
    os.environ["XDG_RUNTIME_DIR"] = runtime
    try:
        result = api.rotate("demo", reason="race")
        queue.put(("won", result.active.id))
    except BusyError as exc:
        queue.put(("refused", str(exc)))


def test_concurrent_rotations_only_one_wins(isolation: Path) -> None:
    original = api.create_persona("demo")
    api.create_personas("demo", standby=True, count=3)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [
        ctx.Process(
            target=_rotate_in_child,
            args=(
                str(isolation),
                os.environ["XDG_RUNTIME_DIR"],
                str(paths.test_system_root()),
                queue,
            ),
        )
        for _ in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    outcomes = [queue.get(timeout=5) for _ in children]
    assert sorted(kind for kind, _ in outcomes) == ["refused", "refused", "refused", "won"]
    personas = api.list_personas(platform_id="demo")
    assert [p.status for p in personas].count("active") == 1
    assert [p.id for p in personas if p.status == "blocked"] == [original.id]
    assert [p.status for p in personas].count("standby") == 2
    assert default_log().verify().ok


def test_status_warns_below_the_minimum_standby(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "pool.toml").write_text(
        'name = "Pool"\nstart_url = "https://example.se/"\nmin_standby = 2\n'
    )
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    api.create_persona("pool")
    api.create_persona("pool", standby=True)
    result = runner.invoke(["status", "--json"])
    assert result.exit_code == 0
    import json

    (row,) = [r for r in json.loads(result.stdout) if r["platform"] == "pool"]
    assert row["standby"] == 1 and row["min_standby"] == 2
    assert row["warnings"] == ["standby pool below minimum (1 of 2)"]
    assert "station: warning: pool: standby pool below minimum (1 of 2)" in result.stderr


def _sealed_persona() -> Any:
    """A persona with a real sealed profile: opened once in real Chromium."""
    result = api.open_platform("demo", headless=True, hook=_noop, close_after_hook=True)
    return result.persona


async def _noop(_context: Any, _page: Any) -> None:
    return None


@pytest.mark.browser
def test_retention_shreds_blocked_personas_only_after_the_configured_days() -> None:
    persona = _sealed_persona()
    station = paths.current()
    sealed = sealed_file(station, persona.id)
    key = station.persona_dir(persona.id) / "datakey.wrapped"
    assert sealed.exists() and key.exists()
    blocked = api.rotate("demo", reason="blocked").blocked
    assert blocked is not None

    assert api.enforce_retention(now=blocked.status_changed + timedelta(days=89)) == []
    assert sealed.exists() and key.exists()

    done = api.enforce_retention(now=blocked.status_changed + timedelta(days=90, seconds=1))
    assert [d.persona.id for d in done] == [persona.id]
    assert not sealed.exists() and not key.exists()
    assert api.get_persona(persona.id).status == "retired"
    events = [(e.event.value, e.persona) for e in default_log().records()]
    assert ("persona.shredded", persona.id) in events
    # The new active persona was not touched.
    assert api.status()[0].active is not None


@pytest.mark.browser
def test_open_at_the_start_of_a_shift_shreds_what_retention_let_go() -> None:
    persona = _sealed_persona()
    station = paths.current()
    blocked = api.rotate("demo", reason="blocked").blocked
    assert blocked is not None and sealed_file(station, persona.id).exists()
    # 91 days pass (the registry's own record of when it was blocked, moved back).
    long_ago = blocked.status_changed - timedelta(days=91)
    with sqlite3.connect(station.registry) as db:
        db.execute(
            "UPDATE personas SET status_changed = ? WHERE id = ?",
            (long_ago.isoformat().replace("+00:00", "Z"), persona.id),
        )
    assert api.get_persona(persona.id).status_changed == long_ago

    said: list[str] = []
    api.open_platform("demo", headless=True, hook=_noop, close_after_hook=True, notify=said.append)

    assert api.get_persona(persona.id).status == "retired"
    assert not sealed_file(station, persona.id).exists()
    assert any(persona.id in line and "shredded" in line for line in said), said


@pytest.mark.browser
def test_retire_needs_confirmation_then_destroys_for_good(runner: Any) -> None:
    persona = _sealed_persona()
    station = paths.current()
    sealed = sealed_file(station, persona.id)
    before = sealed.read_bytes()

    refused = runner.invoke(["persona", "retire", persona.id])
    assert refused.exit_code == ExitCode.USAGE
    assert "confirm with --yes" in refused.stderr
    assert sealed.read_bytes() == before
    assert api.get_persona(persona.id).status == "active"

    done = runner.invoke(["persona", "retire", persona.id, "--yes", "--json"])
    assert done.exit_code == 0, done.stderr
    import json

    assert json.loads(done.stdout)["key_destroyed"] is True
    assert not sealed.exists()
    assert api.get_persona(persona.id).status == "retired"
    with pytest.raises(StateError, match="already retired"):
        api.shred_persona(persona.id, reason="again")
    again = runner.invoke(["open", "demo", "--persona", persona.id, "--headless"])
    assert again.exit_code == ExitCode.STATE
    assert f"persona {persona.id} is retired and cannot be opened" in again.stderr


@pytest.mark.browser
def test_open_promotes_the_oldest_standby_when_none_is_active() -> None:
    older, newer = api.create_personas("demo", standby=True, count=2)
    result = api.open_platform("demo", headless=True, hook=_noop, close_after_hook=True)
    assert not result.created
    assert result.persona.id == older.id
    assert result.persona.status == "active"
    assert api.get_persona(newer.id).status == "standby"
    assert len(api.list_personas(platform_id="demo")) == 2


def test_shredding_forgets_the_proxy_password(secret_service: None) -> None:
    from outreach_station import network

    persona = api.create_persona("demo")
    with api.registry() as reg:
        network.set_persona_proxy(reg, persona, "http://staff@127.0.0.1:3128", password="pw-1")
    assert network.read_password(persona.id) is not None
    api.shred_persona(persona.id, reason="test")
    assert network.read_password(persona.id) is None
    assert api.get_persona(persona.id).status == "retired"


def test_a_v3_persona_keeps_the_machines_font_rendering_until_refreshed() -> None:
    from outreach_station.fingerprint import RENDERINGS

    persona = api.create_persona("demo")
    stored = dict(persona.fingerprint, version=3)
    del stored["font_rendering"]
    with api.registry() as reg:
        reg.set_fingerprint(persona.id, stored)
    # Upgraded when read: the same canvas as before the upgrade (no rendering block).
    assert api.get_persona(persona.id).presents.font_rendering == ""
    refreshed = api.refresh_fingerprint(persona.id)
    assert refreshed.presents.version == 4
    assert refreshed.presents.font_rendering in RENDERINGS
