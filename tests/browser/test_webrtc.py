"""WebRTC reveals no address of a persona's machine, in real Chromium.

A STUN server on loopback answers that the browser is at 203.0.113.7, as a
real one would tell the public address; the inspector page gathers ICE
candidates in the persona's browser. Station's switch must leave neither a
host candidate nor a server-reflexive one, with or without a proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.inspector import InspectorServer
from outreach_station.network import WEBRTC_SWITCH
from tests.browser.test_open import browser_cmdlines
from tests.fixtures import write_platform
from tests.proxies import Socks5Proxy, StunServer

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/lib/chromium/chromium"


@pytest.fixture
def stun() -> Iterator[StunServer]:
    with StunServer() as server:
        yield server


def write_rtc_platform(directory: Path, proxies: list[str] | None = None) -> None:
    write_platform(directory, "rtc", "https://example.invalid/", name="WebRTC", proxies=proxies)


def gather(stun: StunServer) -> tuple[dict[str, Any], list[list[str]]]:
    """ICE candidates gathered in the persona's own browser, and its command lines."""
    persona = api.create_persona("rtc")
    got: dict[str, Any] = {}
    with InspectorServer() as server:

        async def hook(_context: Any, _page: Any) -> None:
            import asyncio

            got["cmdlines"] = browser_cmdlines(persona.id)
            got["report"] = await asyncio.get_running_loop().run_in_executor(
                None, server.wait_for_report, 30.0
            )

        api.open_platform(
            "rtc",
            persona_id=persona.id,
            url=server.page_url(stun=stun.address),
            headless=True,
            hook=hook,
            close_after_hook=True,
        )
    return got["report"]["webrtc"], got["cmdlines"]


def assert_nothing_revealed(webrtc: dict[str, Any], stun: StunServer) -> None:
    assert webrtc["stun"] == stun.address and webrtc["error"] is None
    # No host candidate (not even an mDNS name) and no server-reflexive one:
    # with no TURN server configured there is nothing at all to gather.
    assert webrtc["candidates"] == []
    # The STUN server was never even asked, so it learnt no address either.
    assert stun.requests == 0


def test_persona_without_proxy_reveals_no_address(profiles: Path, stun: StunServer) -> None:
    write_rtc_platform(profiles)
    webrtc, cmdlines = gather(stun)
    assert cmdlines and all(WEBRTC_SWITCH in args for args in cmdlines if "--type" not in str(args))
    assert_nothing_revealed(webrtc, stun)


def test_persona_behind_a_proxy_reveals_no_address(profiles: Path, stun: StunServer) -> None:
    with Socks5Proxy() as proxy:
        write_rtc_platform(profiles, proxies=[proxy.url])
        webrtc, cmdlines = gather(stun)
    assert any(f"--proxy-server={proxy.url}" in args for args in cmdlines)
    assert_nothing_revealed(webrtc, stun)


@pytest.mark.parametrize(
    "switch",
    [
        # The look-alike the previous attempt used: Chromium 156 ignores it.
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        # A value Chromium does not know: the policy stays at its default.
        "--webrtc-ip-handling-policy=bogus",
    ],
)
def test_control_the_leak_is_seen_without_the_working_switch(
    stun: StunServer, tmp_path: Path, switch: str
) -> None:
    """The same page in Chromium without station's switch shows the fake public address."""
    from playwright.sync_api import sync_playwright

    with InspectorServer() as server, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            ignore_default_args=True,
            args=["--remote-debugging-pipe", "--no-sandbox", "--headless", switch, "about:blank"],
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(server.page_url(stun=stun.address))
            webrtc = server.wait_for_report(timeout=30)["webrtc"]
        finally:
            context.close()
    srflx = {c["address"] for c in webrtc["candidates"] if c["type"] == "srflx"}
    assert srflx == {StunServer.MAPPED}
    assert stun.requests > 0
