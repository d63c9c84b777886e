"""Every way a page can reach a host off the platform's allowlist, in real Chromium.

Two servers on loopback: the allowed site on 127.0.0.1 and a blocked one on
127.0.0.2, its own address and port. The blocked server records every
connection and request it gets, so each test asserts what reached it, not
only what the page shows: a browser that fetched the blocked host and then
hid the answer would still have leaked the visit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from outreach_station import api
from outreach_station.audit import AuditLog, default_path
from outreach_station.browser import build_launch, find_browser, run_session
from outreach_station.fingerprint import generate
from outreach_station.lockdown import Lockdown
from outreach_station.network import ProxySetting
from outreach_station.platforms import PlatformProfile
from tests.fixtures import write_platform
from tests.proxies import HttpProxy, Socks5Proxy
from tests.site import LoopbackServer, QuietHandler

pytestmark = pytest.mark.browser

PLATFORM = PlatformProfile(id="site-one", name="t", start_url="http://127.0.0.1/")
ALLOWED = ("127.0.0.1",)
BLOCKED_IP = "127.0.0.2"


class _Recording(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: BlockedSite, handler: Any) -> None:
        self.owner = owner
        super().__init__((BLOCKED_IP, 0), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self.owner.lock:
            self.owner.connections += 1
        return conn, addr


class BlockedSite:
    """A server on 127.0.0.2 that answers everything and records every connection."""

    __test__ = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.paths: list[str] = []
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with site.lock:
                    site.paths.append(self.path.split("?")[0])
                self._send(b"<h1>the blocked host answered</h1>", "text/html")

            def do_POST(self) -> None:
                self.do_GET()

        self._server = _Recording(self, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://{BLOCKED_IP}:{self._server.server_address[1]}"

    def reached(self) -> list[str]:
        with self.lock:
            return list(self.paths)

    def __enter__(self) -> BlockedSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _pages(blocked: str) -> dict[str, bytes]:
    """The allowed site's page for each way out; each aims at its own path on `blocked`."""
    # Each worker also fetches from the allowed site: proof that it ran at all.
    worker = f"fetch('/worker-allowed'); fetch('{blocked}/m/worker').catch(() => {{}});"
    service_worker = (
        "self.addEventListener('install', e => e.waitUntil(Promise.all(["
        f"fetch('/sw-allowed'), fetch('{blocked}/m/service-worker').catch(() => {{}})])));"
    )
    ws = blocked.replace("http://", "ws://")
    return {
        "/fetch": f"<script>fetch('{blocked}/m/fetch').catch(() => {{}})</script>".encode(),
        "/beacon": f"<script>navigator.sendBeacon('{blocked}/m/beacon', 'x')</script>".encode(),
        "/image": f"<img src='{blocked}/m/image'>".encode(),
        "/eventsource": f"<script>new EventSource('{blocked}/m/eventsource')</script>".encode(),
        "/prefetch": f"<link rel='prefetch' href='{blocked}/m/prefetch'>".encode(),
        "/iframe": f"<iframe src='{blocked}/m/iframe'></iframe>".encode(),
        "/meta-refresh": f"<meta http-equiv='refresh' content='0;url={blocked}/m/meta'>".encode(),
        "/location": f"<script>location.href = '{blocked}/m/location'</script>".encode(),
        "/redirecting-iframe": (
            f"<iframe src='/redir?to={blocked}/m/redirecting-iframe'></iframe>".encode()
        ),
        "/websocket": f"<script>new WebSocket('{ws}/m/websocket')</script>".encode(),
        "/worker": b"<script>new Worker('/worker.js')</script>",
        "/worker.js": worker.encode(),
        "/service-worker": b"<script>navigator.serviceWorker.register('/sw.js')</script>",
        "/sw.js": service_worker.encode(),
    }


class AllowedSite(LoopbackServer):
    __test__ = False

    def __init__(self, blocked: str) -> None:
        pages = _pages(blocked)
        self.paths: list[str] = []
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                site.paths.append(parts.path)
                if parts.path == "/redir":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts.path.endswith(".js"):
                    self._send(pages[parts.path], "text/javascript")
                elif parts.path in pages:
                    self._send(b"<!doctype html><title>t</title>" + pages[parts.path], "text/html")
                else:
                    self._send(b"<h1>hello from the site</h1>", "text/html")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self._send(str(len(self.rfile.read(length))).encode(), "text/plain")

        super().__init__(Handler)


@pytest.fixture(scope="module")
def blocked() -> Iterator[BlockedSite]:
    with BlockedSite() as served:
        yield served


@pytest.fixture(scope="module")
def allowed(blocked: BlockedSite) -> Iterator[AllowedSite]:
    with AllowedSite(blocked.origin) as served:
        yield served


# Each way out: the allowed page that tries it, and the path it aims at on the blocked host.
WAYS_OUT = {
    "fetch": ("/fetch", "/m/fetch"),
    "sendBeacon": ("/beacon", "/m/beacon"),
    "image": ("/image", "/m/image"),
    "EventSource": ("/eventsource", "/m/eventsource"),
    "prefetch": ("/prefetch", "/m/prefetch"),
    "iframe": ("/iframe", "/m/iframe"),
    "HTTP redirect": ("/redir?to={blocked}/m/redirect", "/m/redirect"),
    "meta refresh": ("/meta-refresh", "/m/meta"),
    "location change": ("/location", "/m/location"),
    "redirecting iframe": ("/redirecting-iframe", "/m/redirecting-iframe"),
    "WebSocket": ("/websocket", "/m/websocket"),
    "dedicated worker": ("/worker", "/m/worker"),
    "service worker": ("/service-worker", "/m/service-worker"),
}


@dataclasses.dataclass
class Ran:
    seen: dict[str, Any]
    violations: list[tuple[str, str]]


def run(
    tmp_path: Path,
    url: str,
    hook: Any,
    *,
    allowlist: tuple[str, ...] | None = ALLOWED,
    upstream: ProxySetting | None = None,
    login: dict[str, str] | None = None,
) -> Ran:
    root = tmp_path / "ws"
    lockdown = Lockdown("site-one", allowlist=allowlist)
    spec = build_launch(
        browser=find_browser(),
        fingerprint=generate(PLATFORM),
        user_data_dir=root / "profile",
        home=root / "home",
        headless=True,
        lockdown=lockdown,
        network_args=(f"--proxy-server={upstream.server}",) if upstream else (),
        proxy=login,
        upstream=upstream,
    )
    seen: dict[str, Any] = {}
    violations: list[tuple[str, str]] = []

    async def wrapped(context: Any, page: Any) -> None:
        await hook(context, page, seen)

    asyncio.run(
        run_session(
            spec,
            url,
            hook=wrapped,
            close_after_hook=True,
            lockdown=lockdown,
            on_violation=lambda kind, host: violations.append((kind, host)),
        )
    )
    return Ran(seen, violations)


async def body_text(page: Any) -> str:
    for _ in range(5):
        try:
            return str(await page.evaluate("document.body ? document.body.innerText : ''"))
        except Exception:  # a navigation may still be committing
            await page.wait_for_timeout(300)
    return ""


async def try_every_way(
    allowed: AllowedSite, blocked: BlockedSite, page: Any, seen: dict[str, Any]
) -> None:
    """Open each way out's page in turn; note whether its aim reached the blocked host."""
    origin = allowed.url.rstrip("/")
    for name, (path, aim) in WAYS_OUT.items():
        before = len(blocked.reached())
        await page.goto(origin + path.format(blocked=blocked.origin))
        await page.wait_for_timeout(1200)
        seen[name] = aim in blocked.reached()[before:]


def test_no_way_out_reaches_a_blocked_host(
    tmp_path: Path, allowed: AllowedSite, blocked: BlockedSite
) -> None:
    origin = allowed.url.rstrip("/")

    async def try_and_look(context: Any, page: Any, seen: dict[str, Any]) -> None:
        await try_every_way(allowed, blocked, page, seen)
        # After a blocked redirect the person sees station's page, not an error.
        await page.goto(f"{origin}/redir?to={blocked.origin}/m/last")
        await page.wait_for_timeout(500)
        seen["shown"] = await body_text(page)

    connections = blocked.connections
    ran = run(tmp_path, allowed.url, try_and_look)

    shown = ran.seen.pop("shown")
    assert ran.seen == dict.fromkeys(WAYS_OUT, False)
    assert shown.startswith("Blocked by IT policy")
    assert blocked.connections == connections, blocked.reached()
    # The workers did run, and reached the allowed site through the gate.
    assert {"/worker-allowed", "/sw-allowed"} <= set(allowed.paths)
    assert {host for _kind, host in ran.violations} == {BLOCKED_IP}
    assert "navigation" in {kind for kind, _host in ran.violations}


def test_without_an_allowlist_every_way_out_reaches_the_host(
    tmp_path: Path, allowed: AllowedSite, blocked: BlockedSite
) -> None:
    """The control for the test above: each way out is a real attempt."""

    async def try_all(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        await try_every_way(allowed, blocked, page, seen)

    ran = run(tmp_path, allowed.url, try_all, allowlist=None)
    assert ran.seen == dict.fromkeys(WAYS_OUT, True)


def test_allowed_host_still_loads_through_the_gate(tmp_path: Path, allowed: AllowedSite) -> None:
    async def look(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        seen["text"] = await body_text(page)
        seen["posted"] = await page.evaluate(
            "fetch('/echo', {method: 'POST', body: 'x'.repeat(300000)}).then(r => r.text())"
        )

    ran = run(tmp_path, allowed.url, look)
    assert ran.seen["text"] == "hello from the site"
    assert ran.seen["posted"] == "300000"  # the whole body reached the site
    assert ran.violations == []


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_the_gate_chains_to_the_persona_proxy(
    tmp_path: Path, allowed: AllowedSite, blocked: BlockedSite, kind: str
) -> None:
    """With an allowlist, the persona's own proxy still carries every allowed request."""
    names = {"site.test": ("127.0.0.1", allowed.port)}
    credentials = ("outreach", "proxy-pw-not-in-argv") if kind == "http" else None
    proxy_cls: Any = HttpProxy if kind == "http" else Socks5Proxy
    extra: dict[str, Any] = {"credentials": credentials} if credentials else {}
    with proxy_cls(names=names, **extra) as proxy:
        upstream = ProxySetting(
            scheme=kind,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=proxy.port,
            username=credentials[0] if credentials else "",
        )
        login = (
            {"server": upstream.server, "username": credentials[0], "password": credentials[1]}
            if credentials
            else None
        )
        before = len(blocked.reached())

        async def look(_context: Any, page: Any, seen: dict[str, Any]) -> None:
            seen["text"] = await body_text(page)
            await page.goto(f"http://site.test:{allowed.port}/redir?to={blocked.origin}/m/chain")
            await page.wait_for_timeout(500)
            seen["redirected"] = await body_text(page)

        ran = run(
            tmp_path,
            f"http://site.test:{allowed.port}/",
            look,
            allowlist=("site.test",),
            upstream=upstream,
            login=login,
        )
        hosts = set(proxy.record.hosts())
    # site.test resolves only at the persona's proxy: the page came through it.
    assert ran.seen["text"] == "hello from the site"
    assert ran.seen["redirected"].startswith("Blocked by IT policy")
    assert hosts == {"site.test"}
    assert blocked.reached()[before:] == []
    assert ("navigation", BLOCKED_IP) in ran.violations


def test_station_open_blocks_and_audits_a_redirect_off_the_allowlist(
    tmp_path: Path,
    allowed: AllowedSite,
    blocked: BlockedSite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "profiles"
    write_platform(directory, "site-one", allowed.url)
    monkeypatch.setenv("STATION_PROFILES", str(directory))
    from outreach_station import paths

    config = paths.current().user_config
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[platform.site-one]\nallowlist = ["127.0.0.1"]\n')
    seen: dict[str, Any] = {}

    async def look(_context: Any, page: Any) -> None:
        await page.wait_for_timeout(500)
        seen["text"] = await body_text(page)

    before = len(blocked.reached())
    target = f"{allowed.url}redir?to={blocked.origin}/private/path?case=42"
    api.open_platform("site-one", url=target, headless=True, hook=look, close_after_hook=True)

    assert seen["text"].startswith("Blocked by IT policy")
    assert blocked.reached()[before:] == []
    records = [r.to_record() for r in AuditLog(default_path()).records()]
    violations = [r["detail"] for r in records if r["event"] == "policy.violation"]
    assert {"kind": "navigation", "host": BLOCKED_IP} in violations
    raw = default_path().read_text()
    assert "private/path" not in raw and "case=42" not in raw


def test_an_https_hop_off_the_allowlist_shows_the_blocked_page(
    tmp_path: Path, allowed: AllowedSite, blocked: BlockedSite
) -> None:
    # An HTTPS hop reaches the gate as a tunnel request, which the browser
    # answers with a bare connection error when refused; station's page replaces it.
    target = blocked.origin.replace("http://", "https://") + "/m/https"
    before = blocked.connections

    async def look(_context: Any, page: Any, seen: dict[str, Any]) -> None:
        try:
            await page.goto(f"{allowed.url}redir?to={target}")
        except Exception as exc:  # the replacement aborts this navigation
            seen["error"] = str(exc)
        await page.wait_for_timeout(800)
        seen["text"] = await body_text(page)

    ran = run(tmp_path, allowed.url, look)
    assert ran.seen["text"].startswith("Blocked by IT policy")
    assert BLOCKED_IP in ran.seen["text"]
    assert blocked.connections == before
    assert ("navigation", BLOCKED_IP) in ran.violations
