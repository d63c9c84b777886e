"""Personas never see each other's state; a persona's state comes back.

Real Chromium against the loopback test site: cookies, localStorage,
IndexedDB, Cache Storage and service workers come back on reopen; the HTTP
cache is never shared (it is not sealed: the browser rebuilds it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from tests.fixtures import write_platform
from tests.site import TestSite

pytestmark = pytest.mark.browser

SET_STATE = """async (tag) => {
  document.cookie = `station_probe=${tag}; max-age=86400; path=/`;
  localStorage.setItem('station_probe', tag);
  await new Promise((resolve, reject) => {
    const req = indexedDB.open('station_db_' + tag, 1);
    req.onupgradeneeded = () => req.result.createObjectStore('s');
    req.onsuccess = () => { req.result.close(); resolve(null); };
    req.onerror = () => reject(req.error);
  });
  const cache = await caches.open('station_cache_' + tag);
  await cache.put('/probe', new Response(tag));
  await navigator.serviceWorker.register('/sw.js');
  await navigator.serviceWorker.ready;
}"""

READ_STATE = """async () => ({
  cookie: document.cookie,
  local: localStorage.getItem('station_probe'),
  idb: (await indexedDB.databases()).map(d => d.name).sort(),
  caches: (await caches.keys()).sort(),
  workers: (await navigator.serviceWorker.getRegistrations()).length,
})"""


@pytest.fixture
def platforms(profiles: Path, site: TestSite) -> Path:
    write_platform(profiles, "site-one", site.url)
    write_platform(profiles, "site-two", site.url)
    return profiles


def run_in(platform_id: str, persona_id: str | None, script: str, arg: Any = None) -> Any:
    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen["value"] = await page.evaluate(script, arg)

    result = api.open_platform(
        platform_id, persona_id=persona_id, headless=True, hook=hook, close_after_hook=True
    )
    seen["persona"] = result.persona.id
    return seen


def test_state_is_isolated_between_personas_and_survives_reopen(
    platforms: Path, site: TestSite
) -> None:
    a = api.create_persona("site-one", label="A")
    b = api.create_persona("site-one", label="B")  # standby on the same platform
    c = api.create_persona("site-two", label="C")  # another platform, same site

    run_in("site-one", a.id, SET_STATE, "alpha")
    cached_after_a = site.requests["/cached.js"]

    for other in (b, c):
        state = run_in(other.platform, other.id, READ_STATE)["value"]
        assert "station_probe" not in state["cookie"]
        assert state["local"] is None
        assert "station_db_alpha" not in state["idb"]
        assert state["caches"] == []
        assert state["workers"] == 0
    # B and C each fetched the script again: no HTTP cache was shared with A.
    assert site.requests["/cached.js"] == cached_after_a + 2

    again = run_in("site-one", a.id, READ_STATE)["value"]
    assert "station_probe=alpha" in again["cookie"]
    assert again["local"] == "alpha"
    assert "station_db_alpha" in again["idb"]
    assert again["caches"] == ["station_cache_alpha"]
    assert again["workers"] == 1


def test_open_without_persona_uses_the_active_one_and_creates_it_first(platforms: Path) -> None:
    first = run_in("site-one", None, "1")
    second = run_in("site-one", None, "1")
    assert first["persona"] == second["persona"]
    personas = api.list_personas(platform_id="site-one")
    assert [(p.id, p.status) for p in personas] == [(first["persona"], "active")]
    assert personas[0].last_opened is not None
