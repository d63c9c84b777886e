"""`station open` with sealed profiles, end to end: real Chromium, real keyring, real signals.

What is proved here is what the vault promises a person: nothing of a
session is left readable on disk once it ends, a crash loses nothing that
reached the browser's store (or says exactly what was lost), and a damaged
profile or a missing key is refused without touching the evidence.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import keyring
import keyring.errors
import pytest

from outreach_station import api, paths, secret_store, workspace
from outreach_station.errors import ExitCode
from outreach_station.vault import Vault, new_path, read_settings
from tests.browser.test_open import browser_cmdlines, wait_open
from tests.fixtures import station_argv
from tests.site import TestSite

pytestmark = [pytest.mark.browser, pytest.mark.keyring, pytest.mark.usefixtures("secret_service")]

COOKIE_NAME = b"station_flush"
# Bytes of the test site's pages, as Chromium's HTTP cache would store them.
PAGE_MARKERS = (b"<h1>Test site</h1>", b"window.cachedLoaded = true;")
BIG_FILE_BYTES = 150 * 1024 * 1024


# -- fixtures and helpers ----------------------------------------------------------


class ChurnSite:
    """A loopback page that gets a cookie from the test site, then churns cookies.

    Chromium commits its cookie store every 30 s or after 512 pending
    changes; the churn makes the commit come at once, so a crash test does
    not have to sit out the timer (it still polls the store to be sure).
    Same host as the test site, so the cookies are the same cookies.
    """

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                target = query.get("target", [""])[0]
                body = (
                    "<!doctype html><html><body>"
                    f'<iframe src="{target}"></iframe><script>'
                    "addEventListener('load', () => {"
                    "  for (let i = 0; i < 700; i++) {"
                    "    document.cookie = `churn=${i}; Max-Age=86400; Path=/`;"
                    "  }"
                    "});</script></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url_setting(self, site: TestSite, value: str) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/churn?target={site.url}set-cookie%3Fv%3D{value}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def churn() -> Iterator[ChurnSite]:
    served = ChurnSite()
    yield served
    served.close()


STOPPED = "the computer asked station to stop, as at logout or shutdown"


def start_station(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    # A new session: no controlling terminal, as under a service manager, and
    # so that a passphrase prompt reads stdin rather than /dev/tty.
    return subprocess.Popen(
        station_argv(*args),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    return err


def browser_pids(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"--user-data-dir=" in argv and marker.encode() in argv:
            found.append(int(entry.name))
    return found


def kill_browsers(marker: str) -> None:
    for pid in browser_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while browser_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)


def workspace_of(persona_id: str) -> Path:
    return workspace.workspace_dir(paths.current(), persona_id)


def sealed_of(persona_id: str) -> Path:
    return workspace.sealed_file(paths.current(), persona_id)


def marker_of(persona_id: str) -> Path:
    return paths.current().persona_dir(persona_id) / workspace.OPEN_MARKER


def wait_in_cookie_store(persona_id: str, needle: bytes, timeout: float = 45) -> None:
    store = workspace_of(persona_id) / "profile" / "Default" / "Cookies"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if needle in store.read_bytes():
                return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never reached {store}")


def read_cookies(persona_id: str) -> str:
    seen: dict[str, str] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen["cookie"] = await page.evaluate("document.cookie")

    api.open_platform(
        "site-one", persona_id=persona_id, headless=True, hook=hook, close_after_hook=True
    )
    return seen["cookie"]


def files_under(root: Path, *, newer_than: float = 0.0) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        # The harness that runs these sessions keeps its own logs in /tmp.
        dirnames[:] = [d for d in dirnames if not d.startswith("bash_jobs.")]
        for name in filenames:
            path = Path(directory) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime >= newer_than:
                yield path


def holding(files: Iterable[Path], needles: Iterable[bytes]) -> list[tuple[str, bytes]]:
    """Which files hold which needle, scanned in overlapping blocks."""
    wanted = [n for n in needles if n]
    overlap = max(len(n) for n in wanted)
    hits = []
    for path in files:
        try:
            with path.open("rb") as source:
                tail = b""
                while block := source.read(1 << 22):
                    window = tail + block
                    for needle in wanted:
                        if needle in window and (str(path), needle) not in hits:
                            hits.append((str(path), needle))
                    tail = window[-overlap:]
        except OSError:
            continue
    return hits


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def crash_with_cookie(persona_id: str, churn: ChurnSite, site: TestSite, value: str) -> None:
    """Open the persona, let a cookie reach Chromium's store, then SIGKILL station."""
    proc = start_station(
        "open", "site-one", "--persona", persona_id, "--headless",
        "--url", churn.url_setting(site, value),
    )  # fmt: skip
    try:
        wait_open(proc)
        wait_in_cookie_store(persona_id, b"churn")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert marker_of(persona_id).exists()
    assert workspace_of(persona_id).is_dir()


# -- 1. nothing in plaintext after a session -----------------------------------------


def test_a_closed_session_leaves_nothing_readable(
    platform_dir: Path, site: TestSite, tmp_path: Path
) -> None:
    started = time.time() - 1
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(16)}"
    proc = start_station(
        "open", "site-one", "--headless", "--url", f"{site.url}set-cookie?v={value}"
    )
    try:
        wait_open(proc)
        directory = workspace_of(persona.id)
        root = directory.parent.parent
        # While open: the plaintext lives in private directories on RAM, marked open.
        for private in (root, directory.parent, directory, directory / "profile"):
            assert mode(private) == 0o700, private
        assert str(directory).startswith(os.environ["XDG_RUNTIME_DIR"])
        assert marker_of(persona.id).exists()
    finally:
        err = finish(proc)
    assert proc.returncode == 0, err

    sealed = sealed_of(persona.id)
    assert sealed.is_file()
    assert mode(sealed) == 0o600
    assert mode(sealed.parent) == 0o700
    assert not directory.exists()
    assert not marker_of(persona.id).exists()
    assert not new_path(sealed).exists()

    secrets_needles = [value.encode()]
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    cache = Path(os.environ["XDG_CACHE_HOME"])
    home = paths.current().home
    mine = [*files_under(home), *files_under(runtime), *files_under(cache), *files_under(tmp_path)]
    assert holding(mine, [*secrets_needles, *PAGE_MARKERS]) == []
    # Everything new in the temp dir, whoever wrote it (Chromium, Playwright, station).
    others = files_under(Path(tempfile.gettempdir()), newer_than=started)
    assert holding(others, secrets_needles) == []

    # The check above could only pass vacuously if the session kept nothing:
    # the value is in plaintext inside the profile once it is unsealed.
    vault = Vault.open(paths.current())
    check = runtime / "unsealed-check"
    try:
        check.mkdir(mode=0o700)
        state = workspace.SealedState(paths.current(), persona.id)
        state.unseal(check, vault.data_key(persona.id), None)
        assert holding(files_under(check), secrets_needles) != []
    finally:
        shutil.rmtree(check, ignore_errors=True)
    assert f"station_flush={value}" in read_cookies(persona.id)


# -- 2. a crash loses nothing that reached the browser's store -----------------------


def test_a_killed_station_is_recovered_at_the_next_open(
    platform_dir: Path, site: TestSite, churn: ChurnSite
) -> None:
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(8)}"
    crash_with_cookie(persona.id, churn, site, value)

    proc = start_station("open", "site-one", "--persona", persona.id, "--headless")
    try:
        opened = "".join(wait_open(proc))
    finally:
        err = finish(proc)
    assert proc.returncode == 0, opened + err
    assert f"persona {persona.id} was not closed cleanly; sealing the profile it left open" in (
        opened
    )
    assert (
        f"persona {persona.id} recovered: the profile it left open is sealed; its browser was "
        "stopped without closing, so changes from its last moments may be missing"
    ) in opened
    assert f"persona {persona.id} closed ({STOPPED}); saved at " in err
    assert not marker_of(persona.id).exists()
    assert not workspace_of(persona.id).exists()

    assert f"station_flush={value}" in read_cookies(persona.id)
    assert browser_cmdlines(persona.id) == []
    recovered = [
        e for e in api.audit_log().records(persona=persona.id) if e.event == "persona.recovered"
    ]
    assert [e.detail["resealed"] for e in recovered] == [True]


# -- 3. RAM cleared by a reboot: the last sealed generation, and a clear word --------


def test_a_lost_workspace_falls_back_to_the_last_sealed_profile(
    platform_dir: Path, site: TestSite, churn: ChurnSite
) -> None:
    persona = api.create_persona("site-one")
    kept, lost = f"k{secrets.token_hex(8)}", f"l{secrets.token_hex(8)}"
    api.open_platform(
        "site-one",
        persona_id=persona.id,
        url=f"{site.url}set-cookie?v={kept}",
        headless=True,
        hook=_noop,
        close_after_hook=True,
    )
    sealed_before = sealed_of(persona.id).read_bytes()
    crash_with_cookie(persona.id, churn, site, lost)
    # A reboot stops the browser and empties RAM.
    kill_browsers(persona.id)
    shutil.rmtree(workspace_of(persona.id))

    proc = start_station("open", "site-one", "--persona", persona.id, "--headless")
    try:
        opened = "".join(wait_open(proc))
        # The last sealed generation was used, not something rebuilt.
        assert sealed_of(persona.id).read_bytes() == sealed_before
    finally:
        err = finish(proc)
    assert proc.returncode == 0, opened + err
    assert (
        f"persona {persona.id} was not closed cleanly and its open profile is gone "
        "(the machine restarted?): what happened since 20"
    ) in opened
    assert "is lost; the last sealed profile is used" in opened

    cookies = read_cookies(persona.id)
    assert f"station_flush={kept}" in cookies
    assert lost not in cookies
    assert browser_cmdlines(persona.id) == []


async def _noop(_context: Any, _page: Any) -> None:
    return None


# -- 4. a damaged sealed profile is refused and kept --------------------------------


def test_a_tampered_profile_is_refused_and_kept_for_investigation(
    platform_dir: Path, site: TestSite, runner: Any
) -> None:
    persona = api.create_persona("site-one")
    api.open_platform("site-one", headless=True, hook=_noop, close_after_hook=True)
    sealed = sealed_of(persona.id)
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    probe = f"/never-loaded-{secrets.token_hex(4)}"

    result = runner.invoke(["open", "site-one", "--headless", "--url", f"{site.url}{probe[1:]}"])

    assert result.exit_code == ExitCode.INTEGRITY
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("station: error: the sealed profile of persona ")
    assert persona.id in lines[0]
    assert "failed authentication" in lines[0]
    assert "Traceback" not in result.output + result.stderr
    assert sealed.read_bytes() == bytes(data)
    assert not workspace_of(persona.id).exists()
    assert not marker_of(persona.id).exists()
    assert site.requests[probe] == 0
    assert browser_cmdlines(persona.id) == []


# -- 5. a missing master key is never silently replaced -----------------------------


def test_a_missing_master_key_is_refused_without_creating_one(
    platform_dir: Path, site: TestSite, runner: Any
) -> None:
    persona = api.create_persona("site-one")
    api.open_platform("site-one", headless=True, hook=_noop, close_after_hook=True)
    station = paths.current()
    settings = read_settings(station)
    assert settings is not None
    sealed = sealed_of(persona.id)
    before = {p: p.read_bytes() for p in (sealed, station.home / "vault.json")}
    wrapped = station.persona_dir(persona.id) / "datakey.wrapped"
    before[wrapped] = wrapped.read_bytes()
    keyring.delete_password(secret_store.SERVICE, settings.keyring_entry)
    probe = f"/never-loaded-{secrets.token_hex(4)}"

    result = runner.invoke(["open", "site-one", "--headless", "--url", f"{site.url}{probe[1:]}"])

    assert result.exit_code == ExitCode.STATE
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("station: error: the master key is missing from the OS keyring")
    assert "refusing to create a new master key" in lines[0]
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) is None
    assert {p: p.read_bytes() for p in before} == before
    assert read_settings(station) == settings
    assert not workspace_of(persona.id).exists()
    assert site.requests[probe] == 0


# -- 7./8. large profiles: progress, and signals while sealing ---------------------


def _fill_workspace(persona_id: str) -> str:
    """Put a large random file into the open profile, as a big site cache or download would."""
    (cmdline,) = [
        a for a in browser_cmdlines(persona_id) if not any(x.startswith("--type=") for x in a)
    ]
    user_data = Path(next(a for a in cmdline if a.startswith("--user-data-dir=")).partition("=")[2])
    assert user_data == workspace_of(persona_id) / "profile"
    digest = hashlib.sha256()
    with (user_data / "big-download.bin").open("wb") as out:
        left = BIG_FILE_BYTES
        while left:
            # All of it: 150 MiB is not a whole number of 4 MiB blocks.
            block = os.urandom(min(left, 1 << 22))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def _big_file_digest(persona_id: str) -> str:
    seen: dict[str, str] = {}

    async def hook(_context: Any, _page: Any) -> None:
        digest = hashlib.sha256()
        with (workspace_of(persona_id) / "profile" / "big-download.bin").open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        seen["digest"] = digest.hexdigest()

    api.open_platform(
        "site-one", persona_id=persona_id, headless=True, hook=hook, close_after_hook=True
    )
    return seen["digest"]


def _progress(err: str, action: str) -> list[int]:
    return [
        int(line.split(": ")[1].split("%")[0])
        for line in err.splitlines()
        if line.startswith(f"{action} profile: ")
    ]


def _blob_bytes(persona_id: str) -> int:
    """What the sealed store holds for a persona: its blobs (the manifest is small)."""
    blobs = paths.current().persona_dir(persona_id) / "blobs"
    return sum(p.stat().st_size for p in blobs.iterdir()) if blobs.is_dir() else 0


def test_sealing_and_unsealing_a_large_profile_show_progress(platform_dir: Path) -> None:
    persona = api.create_persona("site-one")
    proc = start_station("open", "site-one", "--headless")
    try:
        wait_open(proc)
        _fill_workspace(persona.id)
    finally:
        err = finish(proc)
    assert proc.returncode == 0, err
    sealing = _progress(err, "sealing")
    assert sealing, err
    assert sealing == sorted(sealing)
    assert sealing[-1] == 100
    assert f"persona {persona.id} closed ({STOPPED}); saved at " in err.splitlines()[-1]
    # Progress lines come before the closing line, i.e. while sealing ran.
    assert _blob_bytes(persona.id) > BIG_FILE_BYTES

    proc = start_station("open", "site-one", "--headless")
    try:
        opened = "".join(wait_open(proc))
    finally:
        err = finish(proc)
    assert proc.returncode == 0, err
    unsealing = _progress(opened, "unsealing")
    assert unsealing, opened
    assert unsealing[-1] == 100


def test_sigterm_while_sealing_is_deferred_until_the_profile_is_sealed(
    platform_dir: Path,
) -> None:
    persona = api.create_persona("site-one")
    proc = start_station("open", "site-one", "--headless")
    try:
        wait_open(proc)
        digest = _fill_workspace(persona.id)
        proc.send_signal(signal.SIGTERM)  # ends the session: sealing starts
        pending = new_path(sealed_of(persona.id))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if _blob_bytes(persona.id) > 8 * 1024 * 1024:
                    break
            time.sleep(0.005)
        else:
            raise AssertionError("sealing never started")
        # The shift ends (or a second Ctrl-C) in the middle of sealing.
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"persona {persona.id} closed ({STOPPED}); saved at " in err
    assert not pending.exists()
    assert not workspace_of(persona.id).exists()
    assert not marker_of(persona.id).exists()
    assert _big_file_digest(persona.id) == digest
