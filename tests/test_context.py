"""The per-command context: built once, lazy, and the one place each command reads its policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths, policy
from outreach_station.context import Station
from outreach_station.errors import StationError
from outreach_station.storage import sqlite as sqlite_store


def test_a_context_reads_nothing_until_asked(isolation: Path) -> None:
    station = Station.load()
    home = paths.current().home
    before = sorted(home.rglob("*")) if home.exists() else []
    assert station.paths == paths.current()
    # Made, but nothing looked at: no registry, no audit log, no policy read.
    assert (sorted(home.rglob("*")) if home.exists() else []) == before
    assert "effective" not in station.__dict__
    assert "store" not in station.__dict__


def test_a_context_loads_the_policy_once_and_opens_one_store(
    isolation: Path, counted: tuple[list[int], list[Path]]
) -> None:
    loads, opened = counted
    with Station.load() as station:
        created = api.create_personas("demo", count=3, station=station)
        api.list_personas(platform_id="demo", station=station)
        api.get_persona(created[0].id, station=station)
        api.status(station=station)
    assert len(loads) == 1
    assert len(opened) == 1


def test_closing_the_context_closes_its_store(isolation: Path) -> None:
    with Station.load() as station:
        api.create_persona("demo", station=station)
        store = station.store
    with pytest.raises(StationError, match="closed database"):
        store.list()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[Path]]:
    """Count policy loads and store connections from here on."""
    loads: list[int] = []
    opened: list[Path] = []
    real_load = policy.load_policy
    real_init = sqlite_store.SqliteStore.__init__

    def counting_load(**kwargs: Any) -> Any:
        loads.append(1)
        return real_load(**kwargs)

    def counting_init(self: Any, path: Path, **kwargs: Any) -> None:
        opened.append(path)
        real_init(self, path, **kwargs)

    monkeypatch.setattr(policy, "load_policy", counting_load)
    monkeypatch.setattr(sqlite_store.SqliteStore, "__init__", counting_init)
    return loads, opened


async def _close_at_once(_context: Any, _page: Any) -> None:
    return None


@pytest.mark.browser
def test_one_open_loads_the_policy_once_and_opens_one_store(
    isolation: Path, counted: tuple[list[int], list[Path]]
) -> None:
    loads, opened = counted
    # The first open creates the persona too: the most steps an open takes.
    result = api.open_platform("demo", headless=True, hook=_close_at_once, close_after_hook=True)
    assert result.created
    assert result.outcome.ended_by == "hook-done"
    assert len(loads) == 1
    assert len(opened) == 1
