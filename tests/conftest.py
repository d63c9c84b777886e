from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach_station import paths
from tests.fixtures import (  # noqa: F401 - fixtures for every test module
    clock,
    platform_dir,
    profiles,
    system_policy,
)
from tests.keyrings import no_keyring, secret_service  # noqa: F401 - fixtures for every test module
from tests.site import TestSite

# The suite reads station's messages in English, the source text, whatever the
# machine's locale (tests/test_i18n.py and the Swedish CLI tests set their own).
for _name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
    if os.environ.get(_name, "").lower().startswith("sv"):
        os.environ[_name] = "" if _name == "LANGUAGE" else "C.UTF-8"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under the README's test command, the real parts must be there: never skip them."""
    if not os.environ.get("STATION_TEST_REQUIRE_REAL_PARTS"):
        return
    import keyring

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if name != "keyring.backends.SecretService.Keyring":
        pytest.exit(f"no real Secret Service (keyring chose {name}); run 'bash setup.sh test'", 3)
    for tool in ("Xvfb", "xclip"):
        if shutil.which(tool) is None:
            pytest.exit(f"{tool} is missing; run 'bash setup.sh test'", 3)
    from outreach_station.browser import find_browser
    from outreach_station.errors import BrowserError

    with _scratch_cache():
        try:
            find_browser()
        except BrowserError as exc:
            pytest.exit(str(exc), 3)


@contextlib.contextmanager
def _scratch_cache() -> Iterator[None]:
    """A throwaway XDG_CACHE_HOME: find_browser caches the engine version there, not at home."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="station-test-cache-")
    try:
        yield
    finally:
        shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved


# Fixtures that bring a real part with them: a test using one needs that part.
_FIXTURE_MARKERS = {"secret_service": "keyring", "xvfb": "headed", "display": "headed"}


def _missing_parts() -> dict[str, str]:
    """Which real parts this run lacks (marker -> reason); found once per session."""
    from tests.keyrings import SECRET_SERVICE, backend_name

    missing: dict[str, str] = {}
    if backend_name() != SECRET_SERVICE:
        missing["keyring"] = (
            f"needs a real Secret Service (keyring chose {backend_name()}); "
            "run 'bash setup.sh test'"
        )
    if shutil.which("Xvfb") is None:
        missing["headed"] = "needs Xvfb for a virtual display (apt-get install xvfb)"
    from outreach_station.browser import find_browser
    from outreach_station.errors import BrowserError

    try:
        find_browser()
    except BrowserError as exc:
        missing["browser"] = f"needs Chromium: {exc}"
    return missing


def _skip_browser_under_managed_policy(items: list[pytest.Item]) -> None:
    """Chromium itself reads this machine's managed policy, and no launch option
    turns that off: with one installed, browser tests would test IT's policy."""
    managed = sorted(
        str(f) for d in paths.MANAGED_BROWSER_POLICY_DIRS if d.is_dir() for f in d.glob("*.json")
    )
    if managed:
        reason = f"this machine has a managed Chromium policy ({', '.join(managed)})"
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside `bash setup.sh test`, skip (with the reason) what needs a part that is missing.

    Under setup.sh test (STATION_TEST_REQUIRE_REAL_PARTS) nothing is skipped
    for that reason: pytest_sessionstart has already refused a run without them.
    """
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    _skip_browser_under_managed_policy(items)
    if os.environ.get("STATION_TEST_REQUIRE_REAL_PARTS"):
        return
    wanted = {m for item in items for m in ("keyring", "headed", "browser") if m in item.keywords}
    if not wanted:
        return
    with _scratch_cache():
        missing = _missing_parts()
    for item in items:
        for marker, reason in missing.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(autouse=True)
def isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every station location at tmp_path: no test touches the real home.

    Open profiles go to a private directory on /dev/shm (RAM, as in use),
    removed after the test.
    """
    home = tmp_path / "station-home"
    # No test reads or changes this machine's installed policies: the station
    # policy and the managed browser policy are looked for below an empty root.
    paths.set_test_system_root(tmp_path / "system-root")
    runtime = Path(tempfile.mkdtemp(prefix="station-test-", dir="/dev/shm"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("STATION_HOME", str(home))
    monkeypatch.setenv("STATION_POLICY", str(tmp_path / "no-policy.toml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("STATION_PROFILES", raising=False)
    monkeypatch.delenv("STATION_BROWSER", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "dumb")
    try:
        yield home
    finally:
        paths.set_test_system_root(None)
        shutil.rmtree(runtime, ignore_errors=True)


class StationRunner(CliRunner):
    """CliRunner that lets unexpected exceptions surface (as hatch's does)."""

    def invoke(self, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        from outreach_station.cli import app

        kwargs.setdefault("catch_exceptions", False)
        return super().invoke(app, *args, **kwargs)


@pytest.fixture
def runner() -> StationRunner:
    return StationRunner()


@pytest.fixture(scope="session")
def site() -> Iterator[TestSite]:
    with TestSite() as served:
        yield served


def _free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A virtual display for headed tests."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    number = _free_display()
    proc = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def display(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DISPLAY", xvfb)
    return xvfb


@pytest.fixture
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def station_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
