"""A persona's traffic leaves through its proxy, in real Chromium, through real proxies.

The test site is reachable only as `site.test`, a name that only the
proxies in tests/proxies.py resolve: a page that loads at all went through
the proxy, DNS included. The counts at the proxy and at the site are then
compared, so a request that went around the proxy would show.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.audit import default_path
from outreach_station.errors import ExitCode
from outreach_station.network import get_proxy, set_persona_proxy
from tests.browser.test_open import browser_cmdlines, start_station, wait_open
from tests.fixtures import write_platform
from tests.proxies import HttpProxy, Socks5Proxy
from tests.site import TestSite

pytestmark = pytest.mark.browser

PROBE = "() => ({title: document.title, cached: window.cachedLoaded === true})"


@pytest.fixture
def site() -> Iterator[TestSite]:
    # A fresh site per test: its request counts are this test's alone.
    with TestSite() as served:
        yield served


def site_names(site: TestSite) -> dict[str, tuple[str, int]]:
    return {"site.test": ("127.0.0.1", int(site.url.rsplit(":", 1)[1].strip("/")))}


def site_url(site: TestSite) -> str:
    return f"http://site.test:{site_names(site)['site.test'][1]}/"


def give_proxy(persona_id: str, url: str, *, password: str | None = None) -> None:
    """Give a persona its own proxy (what `api.set_proxy` does, less the audit record)."""
    with api.registry() as reg:
        set_persona_proxy(reg, reg.get(persona_id), url, password=password)


def load_page(platform_id: str, persona_id: str | None = None) -> tuple[str, dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        from playwright.async_api import Error as PlaywrightError

        # Chromium's own error page (name not resolved) may navigate once more
        # while we look; look again on the page it settles on.
        for _ in range(3):
            try:
                seen.update(await page.evaluate(PROBE))
                return
            except PlaywrightError as exc:
                if "Execution context was destroyed" not in str(exc):
                    raise
                await page.wait_for_load_state()
        raise AssertionError("the page never settled")

    result = api.open_platform(
        platform_id, persona_id=persona_id, headless=True, hook=hook, close_after_hook=True
    )
    return result.persona.id, seen


def is_google(host: str) -> bool:
    return host.endswith((".google.com", ".googleapis.com", ".gstatic.com"))


def settle(site: TestSite, proxy: HttpProxy | Socks5Proxy) -> tuple[int, list[int]]:
    """Requests at the site once in-flight ones (a favicon) have landed, and the
    client ports of those that did not come from one of the proxy's onward
    connections (none, when every request went through the proxy)."""
    deadline = time.monotonic() + 3
    seen = -1
    while len(site.peer_ports) != seen and time.monotonic() < deadline:
        seen = len(site.peer_ports)
        time.sleep(0.3)
    with proxy.record.lock:
        onward = set(proxy.record.outbound_ports)
    return len(site.peer_ports), [port for port in site.peer_ports if port not in onward]


def test_http_proxy_set_on_the_persona_carries_every_request(
    site: TestSite, profiles: Path
) -> None:
    write_platform(profiles, "net", site_url(site))
    persona = api.create_persona("net")
    with HttpProxy(names=site_names(site)) as proxy:
        give_proxy(persona.id, proxy.url)
        _pid, seen = load_page("net", persona.id)
        at_site, bypassed = settle(site, proxy)
        hosts = set(proxy.record.hosts())
    assert seen == {"title": "Test site", "cached": True}
    assert site.requests["/"] >= 1 and site.requests["/cached.js"] >= 1
    assert at_site >= 2 and bypassed == []
    # An HTTP proxy sees each request itself: one for each that reached the site.
    assert proxy.record.count("site.test") == at_site
    # Besides the page, only Chromium's own calls home (accounts.google.com,
    # clients2.google.com, update.googleapis.com: the quiet switches do not
    # stop them all), and those too left through the proxy.
    assert "site.test" in hosts and all(is_google(h) for h in hosts - {"site.test"})
    # The page's requests came as absolute URIs naming site.test: the proxy resolved it.
    assert all(m == "GET" for m, h, _p in proxy.record.requests if h == "site.test")


def test_socks5_proxy_from_the_pool_carries_every_request_and_its_dns(
    site: TestSite, profiles: Path
) -> None:
    with Socks5Proxy(names=site_names(site)) as proxy:
        write_platform(profiles, "net", site_url(site), proxies=[proxy.url])
        persona_id, seen = load_page("net")
        at_site, bypassed = settle(site, proxy)
    assert seen == {"title": "Test site", "cached": True}
    # SOCKS relays connections, not requests: a connection Chromium opens
    # ahead of need may carry none, so compare where requests came from.
    assert at_site >= 2 and bypassed == []
    # Chromium handed the name to the proxy: no local DNS lookup of site.test.
    assert set(proxy.record.address_types) == {"domain"}
    assert all(is_google(h) for h in set(proxy.record.hosts()) - {"site.test"})
    # The pool's proxy is now the persona's, kept for its next session.
    with api.registry() as reg:
        setting = get_proxy(reg, persona_id)
    assert setting is not None and setting.source == "pool" and setting.server == proxy.url


def test_without_a_proxy_the_name_does_not_resolve(site: TestSite, profiles: Path) -> None:
    # The control for the two tests above: only a proxy can reach site.test.
    write_platform(profiles, "net", site_url(site))
    _pid, seen = load_page("net")
    assert seen.get("title") != "Test site"
    assert sum(site.requests.values()) == 0


def _leaks(secret: bytes) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                if secret in (entry / name).read_bytes():
                    found.append(f"{entry.name}/{name}")
            except OSError:
                continue
    return found


def test_proxy_login_reaches_the_proxy_and_the_password_nothing_else(
    site: TestSite, profiles: Path
) -> None:
    password = secrets.token_urlsafe(18)
    write_platform(profiles, "net", site_url(site))
    persona = api.create_persona("net")
    with HttpProxy(names=site_names(site), credentials=("outreach", password)) as proxy:
        host_port = proxy.url.removeprefix("http://")
        give_proxy(persona.id, f"http://outreach@{host_port}", password=password)
        proc = start_station("open", "net", "--headless")
        try:
            wait_open(proc)
            deadline = time.monotonic() + 15
            while site.requests["/cached.js"] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            running = browser_cmdlines(persona.id)
            leaked = _leaks(password.encode())
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        authorizations = list(proxy.record.authorizations)
        expected = proxy.expected_auth
    assert proc.returncode == 0
    assert running, "the browser was not running while the processes were searched"
    assert site.requests["/cached.js"] >= 1
    # The first request went without credentials, was refused, then the browser logged in.
    assert authorizations[0] is None
    assert expected in authorizations
    assert not leaked, f"password found in /proc entries {leaked}"
    assert password not in out and password not in err
    audit_text = default_path().read_text(encoding="utf-8")
    assert "persona.opened" in audit_text
    assert password not in audit_text


def test_require_proxy_refuses_to_open_without_one(
    site: TestSite, profiles: Path, runner: Any
) -> None:
    write_platform(profiles, "net", site_url(site), require_proxy=True)
    persona = api.create_persona("net")
    result = runner.invoke(["open", "net", "--headless"])
    assert result.exit_code == ExitCode.STATE
    assert f"platform net requires a proxy and persona {persona.id} has none" in result.stderr
    assert browser_cmdlines(persona.id) == []
    assert "persona.opened" not in default_path().read_text(encoding="utf-8")
    assert api.get_persona(persona.id).last_opened is None
    assert sum(site.requests.values()) == 0


def test_rotation_moves_the_new_persona_to_another_proxy(site: TestSite, profiles: Path) -> None:
    with HttpProxy(names=site_names(site)) as one, HttpProxy(names=site_names(site)) as two:
        write_platform(profiles, "net", site_url(site), proxies=[one.url, two.url])
        blocked_id, seen = load_page("net")
        assert seen["cached"] is True
        first = one if one.record.count("site.test") else two
        other = two if first is one else one
        assert other.record.count("site.test") == 0
        before = first.record.count("site.test")

        rotated = api.rotate("net", reason="blocked in test")
        assert rotated.blocked is not None and rotated.blocked.id == blocked_id
        fresh_id, seen = load_page("net")
        assert fresh_id == rotated.active.id != blocked_id
    assert seen["cached"] is True
    # The fresh persona left through the other proxy, and none of its requests
    # went through the address the platform had just blocked.
    assert other.record.count("site.test") >= 2
    assert first.record.count("site.test") == before


def test_set_proxy_is_audited_without_the_password(profiles: Path) -> None:
    write_platform(profiles, "net", "http://site.test:1/")
    persona = api.create_persona("net")
    password = secrets.token_urlsafe(18)
    shown = api.set_proxy(persona.id, "http://outreach@127.0.0.1:3128", password=password)
    assert shown == "http://127.0.0.1:3128 as outreach (set on the persona)"
    audit_text = default_path().read_text(encoding="utf-8")
    assert "persona.proxy_set" in audit_text and password not in audit_text
