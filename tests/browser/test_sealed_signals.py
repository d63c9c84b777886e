"""A session ended by a signal right after a page wrote something: what survives, and what is said.

Real Chromium, real keyring, real signals to a real `station open` process
(and to its whole process group, as a logout does).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from tests.browser.test_open import browser_cmdlines, wait_open
from tests.browser.test_sealed_open import (
    browser_pids,
    kill_browsers,
    marker_of,
    start_station,
    workspace_of,
)

pytestmark = [pytest.mark.browser, pytest.mark.keyring, pytest.mark.usefixtures("secret_service")]


class StoreSite:
    """`/set?v=X`: a page whose script sets a cookie and localStorage to X; `/get`: blank."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                value = self.path.partition("v=")[2]
                script = (
                    f"document.cookie = 'jar={value}; Max-Age=86400; Path=/';"
                    f"localStorage.setItem('store', '{value}');"
                    if self.path.startswith("/set")
                    else ""
                )
                body = f"<!doctype html><html><body><script>{script}</script></body></html>"
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def store_site() -> Iterator[StoreSite]:
    served = StoreSite()
    yield served
    served.close()


def read_back(persona_id: str, store_site: StoreSite) -> tuple[str, str | None]:
    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen["cookie"] = await page.evaluate("document.cookie")
        seen["store"] = await page.evaluate("localStorage.getItem('store')")

    api.open_platform(
        "site-one",
        persona_id=persona_id,
        url=f"{store_site.url}get",
        headless=True,
        hook=hook,
        close_after_hook=True,
    )
    return seen["cookie"], seen["store"]


def open_and_write(persona_id: str, store_site: StoreSite, value: str) -> Any:
    proc = start_station(
        "open", "site-one", "--persona", persona_id, "--headless",
        "--url", f"{store_site.url}set?v={value}",
    )  # fmt: skip
    wait_open(proc)
    return proc


@pytest.mark.parametrize(
    ("sig", "group"),
    [
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),
        (signal.SIGTERM, True),
        (signal.SIGHUP, True),
    ],
    ids=["SIGTERM", "SIGHUP", "SIGTERM-group", "SIGHUP-group"],
)
def test_a_signal_right_after_a_write_keeps_cookie_and_local_storage(
    platform_dir: Path,
    store_site: StoreSite,
    sig: signal.Signals,
    group: bool,
) -> None:
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(6)}"
    proc = open_and_write(persona.id, store_site, value)
    try:
        if group:
            os.killpg(proc.pid, sig)  # a logout: station, driver and browser all get it
        else:
            proc.send_signal(sig)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    said = (
        "the terminal or the desktop session was closed"
        if sig is signal.SIGHUP
        else "the computer asked station to stop, as at logout or shutdown"
    )
    assert f"persona {persona.id} closed ({said}); saved at " in err
    assert not workspace_of(persona.id).exists()
    cookie, store = read_back(persona.id, store_site)
    assert f"jar={value}" in cookie
    assert store == value
    assert browser_cmdlines(persona.id) == []


@pytest.mark.parametrize("runtime", ["short", "long"])
def test_sigkill_of_the_group_is_recovered_without_claiming_nothing_was_lost(
    platform_dir: Path,
    store_site: StoreSite,
    runtime: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if runtime == "short":
        # As /run/user/1000 is: short enough for the browser's socket under the workspace.
        short = Path(tempfile.mkdtemp(prefix="s", dir="/dev/shm"))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short))
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(6)}"
    proc = open_and_write(persona.id, store_site, value)
    socket_dir = Path(os.readlink(workspace_of(persona.id) / "profile" / "SingletonSocket")).parent
    if runtime == "short":
        # The browser's scratch space is the private workspace, and it is used there.
        assert socket_dir.parent == workspace_of(persona.id)
    else:
        # Too long a path for the browser's socket: it keeps the system's temp dir.
        assert socket_dir.parent == Path(tempfile.gettempdir())
    assert socket_dir.name.startswith(CHROMIUM_SCRATCH)
    # Everything dies at once, the browser included (its own process group), as
    # when a session is torn down: frozen first, so it cannot tidy up as it goes.
    for pid in browser_pids(persona.id):
        os.kill(pid, signal.SIGSTOP)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    kill_browsers(persona.id)
    assert marker_of(persona.id).exists()
    assert socket_dir.is_dir()  # what a kill leaves behind

    proc = start_station("open", "site-one", "--persona", persona.id, "--headless")
    try:
        opened = "".join(wait_open(proc))
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, opened + err
    assert "nothing of its last session was lost" not in opened
    assert f"persona {persona.id} recovered: the profile it left open is sealed" in opened
    assert "changes from its last moments may be missing" in opened
    assert not workspace_of(persona.id).exists()
    assert not socket_dir.exists()
    if runtime == "short":
        shutil.rmtree(short, ignore_errors=True)


CHROMIUM_SCRATCH = "org.chromium.Chromium."
