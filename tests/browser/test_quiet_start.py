"""What the browser calls by itself: nothing but the page, through the persona's proxy.

A persona is opened through a recording proxy on loopback and left alone on
its start page; the proxy lists every host the browser asked it for.
Chromium 156 with station's quiet switches still asks for one host of its
own, accounts.google.com (its sign-in cookie check): no switch turns that off
without changing what Google's sign-in pages see. A platform with an
allowlist refuses it at the gate, so there the page's host is all that goes out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.audit import AuditLog, default_path
from tests.browser.test_proxy import give_proxy, site_names, site_url
from tests.fixtures import write_platform
from tests.proxies import HttpProxy
from tests.site import TestSite

pytestmark = pytest.mark.browser

# Long enough for Chromium 156's start-up calls: left alone for 75 s, the
# only call it still made came after about 5 s.
QUIET_SECONDS = 12.0
SIGN_IN_CHECK = "accounts.google.com"


@pytest.fixture
def site() -> Iterator[TestSite]:
    with TestSite() as served:
        yield served


def open_and_wait(site: TestSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    directory = tmp_path / "profiles"
    directory.mkdir()
    monkeypatch.setenv("STATION_PROFILES", str(directory))
    write_platform(directory, "net", site_url(site))
    persona = api.create_persona("net")

    async def idle(_context: Any, page: Any) -> None:
        await page.wait_for_timeout(QUIET_SECONDS * 1000)

    with HttpProxy(names=site_names(site)) as proxy:
        give_proxy(persona.id, proxy.url)
        api.open_platform("net", headless=True, hook=idle, close_after_hook=True)
        return set(proxy.record.hosts())


def test_at_start_only_the_page_and_the_sign_in_check_go_out(
    site: TestSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = open_and_wait(site, tmp_path, monkeypatch)
    assert site.requests["/"] >= 1
    assert hosts - {SIGN_IN_CHECK} == {"site.test"}


def test_with_an_allowlist_only_the_page_goes_out(
    site: TestSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = paths.current().user_config
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[platform.net]\nallowlist = ["site.test"]\n')
    hosts = open_and_wait(site, tmp_path, monkeypatch)
    assert site.requests["/"] >= 1
    assert hosts == {"site.test"}
    # Chromium's own calls were refused without filling the audit trail.
    records = [r.to_record() for r in AuditLog(default_path()).records()]
    assert [r for r in records if r["event"] == "policy.violation"] == []
