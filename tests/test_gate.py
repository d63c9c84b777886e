"""The allowlist gate as a proxy, spoken to over raw sockets (no browser).

What a browser does through it is in tests/browser/test_allowlist_escapes.py;
here: it serves only the session it was started for, refuses what the
allowlist does not cover before any connection onward, and reports kind and
host, never the address.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest

from outreach_station.gate import Gate, Upstream
from outreach_station.network import ProxySetting
from tests.proxies import HttpProxy
from tests.site import TestSite


@pytest.fixture
def site() -> Iterator[TestSite]:
    with TestSite() as served:
        yield served


def basic(login: dict[str, str]) -> str:
    token = f"{login['username']}:{login['password']}".encode()
    return "Basic " + base64.b64encode(token).decode()


async def ask(port: int, head: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1"))
    await writer.drain()
    data = b""
    try:
        # To the end, except for an open tunnel: its head is the answer.
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            data += chunk
            if data.startswith(b"HTTP/1.1 200 Connection") and b"\r\n\r\n" in data:
                break
        return data
    finally:
        writer.close()


def run_gate(
    allowed: set[str], requests: list[str], upstream: Upstream | None = None
) -> tuple[list[bytes], list[tuple[str, str]]]:
    """Start a gate, send each request (`{auth}` filled in), return the answers and reports."""
    reported: list[tuple[str, str]] = []

    async def main() -> list[bytes]:
        gate = await Gate(
            lambda host: host in allowed,
            upstream=upstream,
            on_blocked=lambda kind, host: reported.append((kind, host)),
        ).start()
        try:
            auth = basic(gate.login())
            return [await ask(gate.port, r.format(auth=auth)) for r in requests]
        finally:
            await gate.close()

    return asyncio.run(main()), reported


def test_the_gate_serves_only_its_own_session(site: TestSite) -> None:
    url = f"http://127.0.0.1:{site.port}/"
    answers, reported = run_gate(
        {"127.0.0.1"},
        [
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            f"GET {url} HTTP/1.1\r\nProxy-Authorization: Basic c3RhdGlvbjp3cm9uZw==\r\n\r\n",
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: {{auth}}\r\n\r\n",
        ],
    )
    assert answers[0].startswith(b"HTTP/1.1 407 ")
    assert answers[1].startswith(b"HTTP/1.1 407 ")
    assert answers[2].startswith(b"HTTP/1.0 200 ") and b"Test site" in answers[2]
    assert site.requests["/"] == 1
    assert reported == []


def test_hosts_off_the_allowlist_are_refused_and_reported(site: TestSite) -> None:
    auth = "Proxy-Authorization: {auth}\r\n"
    answers, reported = run_gate(
        {"127.0.0.1"},
        [
            f"CONNECT localhost:{site.port} HTTP/1.1\r\n{auth}\r\n",
            f"GET http://localhost:{site.port}/private?case=42 HTTP/1.1\r\n"
            f"Accept: text/html\r\n{auth}\r\n",
            f"GET http://localhost:{site.port}/pixel.gif HTTP/1.1\r\n"
            f"Sec-Fetch-Mode: no-cors\r\n{auth}\r\n",
            f"CONNECT accounts.google.com:443 HTTP/1.1\r\n{auth}\r\n",
        ],
    )
    assert [a.split(b"\r\n")[0] for a in answers] == [b"HTTP/1.1 403 Forbidden"] * 4
    assert b"Blocked" in answers[1] or b"blocked" in answers[1]
    assert sum(site.requests.values()) == 0
    # Kind and host only; Chromium's own service host is refused without a report.
    assert reported == [
        ("connection", "localhost"),
        ("navigation", "localhost"),
        ("subresource", "localhost"),
    ]


def test_allowed_traffic_leaves_through_the_persona_proxy_with_its_login(site: TestSite) -> None:
    names = {"site.test": ("127.0.0.1", site.port)}
    with HttpProxy(names=names, credentials=("outreach", "pw-only-in-memory")) as proxy:
        upstream = Upstream(
            ProxySetting("http", "127.0.0.1", proxy.port, username="outreach"),
            password="pw-only-in-memory",
        )
        answers, _reported = run_gate(
            {"site.test"},
            [
                f"GET http://site.test:{site.port}/ HTTP/1.1\r\nHost: site.test\r\n"
                "Proxy-Authorization: {auth}\r\n\r\n",
                f"CONNECT site.test:{site.port} HTTP/1.1\r\nProxy-Authorization: {{auth}}\r\n\r\n",
            ],
            upstream=upstream,
        )
        authorizations = list(proxy.record.authorizations)
        requests = list(proxy.record.requests)
    assert b"Test site" in answers[0]
    assert answers[1].startswith(b"HTTP/1.1 200 Connection Established")
    assert [m for m, _h, _p in requests] == ["GET", "CONNECT"]
    assert authorizations == [proxy.expected_auth] * 2
    # The browser's login to the gate never goes on to the persona's proxy.
    assert "pw-only-in-memory" not in repr(upstream)
