"""Show one page of HTML in the user's own web browser, served on 127.0.0.1.

Why not a file: the managed browser policy of a locked laptop blocks
`file://` addresses, so a report written to disk cannot be opened there.
Why not a persona: a persona is an identity on a platform; a management
report has nothing to do in its profile. So the page is served from memory
on the loopback interface, at an address with a random path, to whatever
browser the desktop opens for web links, until the person is done.
"""

from __future__ import annotations

import secrets
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from outreach_station.errors import EnvironmentProblem
from outreach_station.i18n import _

LOOPBACK: Final = "127.0.0.1"


@dataclass(frozen=True)
class ServedPage:
    url: str
    server: ThreadingHTTPServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(content: str, *, name: str = "report.html") -> ServedPage:
    """Serve `content` at one unguessable address on 127.0.0.1 (any other path: 404)."""
    body = content.encode("utf-8")
    path = f"/{secrets.token_urlsafe(16)}/{name}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # The page is inline only (no script, nothing fetched); say so to the browser.
            self.send_header(
                "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"
            )
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # nothing on the terminal per request

    try:
        server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot serve the page on {address}: {reason}; write it with --html FILE").format(
                address=LOOPBACK, reason=exc.strerror
            )
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="showpage", daemon=True).start()
    port = server.server_address[1]
    return ServedPage(url=f"http://{LOOPBACK}:{port}{path}", server=server)


def show(
    content: str,
    *,
    tell: Callable[[str], None],
    opener: Callable[[str], bool] = webbrowser.open,
    wait: Callable[[ServedPage], None] | None = None,
) -> None:
    """Open `content` in the default browser and serve it until Ctrl+C (or `wait` returns)."""
    page = serve(content)
    try:
        try:
            opened = opener(page.url)
        except Exception:
            # Any failure of the desktop's opener means "not opened": the address is shown.
            opened = False
        if opened:
            tell(f"the report is open in your web browser at {page.url}")
        else:
            tell(f"open this address in your web browser: {page.url}")
        tell("press Ctrl+C here when you have read it")
        if wait is not None:
            wait(page)
            return
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            tell("stopped showing the report")
    finally:
        page.stop()
