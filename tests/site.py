"""A test website on loopback: pages that set and read browser state.

`/cached.js` is served with a long cache lifetime and counts its requests,
so a test can tell whether a persona's HTTP cache was shared with another.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

PAGE = b"""<!doctype html><html lang="sv"><head><meta charset="utf-8"><title>Test site</title>
<script src="/cached.js"></script></head><body><h1>Test site</h1></body></html>"""

SERVICE_WORKER = b"self.addEventListener('fetch', () => {});"


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers in one call."""

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 and an ephemeral port, as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class TestSite(LoopbackServer):
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        # The client port each request came from (see proxies.Record.outbound_ports).
        self.peer_ports: list[int] = []
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                site.requests[path] += 1
                site.peer_ports.append(self.client_address[1])
                site.headers.append({k.lower(): v for k, v in self.headers.items()})
                if path == "/cached.js":
                    self._send(
                        b"window.cachedLoaded = true;",
                        "text/javascript",
                        {"Cache-Control": "public, max-age=86400"},
                    )
                elif path == "/sw.js":
                    self._send(SERVICE_WORKER, "text/javascript")
                elif path == "/set-cookie":
                    value = self.path.partition("v=")[2] or "set"
                    self._send(
                        PAGE,
                        "text/html; charset=utf-8",
                        {"Set-Cookie": f"station_flush={value}; Max-Age=86400; Path=/"},
                    )
                elif path in ("/", "/index.html"):
                    self._send(PAGE, "text/html; charset=utf-8")
                else:
                    self.send_error(404)

        super().__init__(Handler)
