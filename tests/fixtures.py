"""Fixtures and helpers the whole suite shares (conftest.py makes the fixtures global).

- `system_policy`: where a test's trusted system policy goes; `install_policy` writes it.
- `profiles`, `platform_dir` and `write_platform`: the platform profiles a test uses.
- `Clock` and `clock`: a time the test sets or lets tick, for code that takes a clock.
- `station_argv`: the command that runs station in a child process, as hermetic as the test.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach_station import paths
from tests.site import TestSite

# --- the system policy ------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="a trusted system policy must be owned by root"
)


@pytest.fixture
def system_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's system policy goes: `<tmp>/etc/policy.toml`, named by STATION_POLICY.

    The directory is made 0755 (as /etc is, whatever the umask); the file is
    not written: `install_policy` writes it root-owned 0644, which the trust
    check accepts when the tests run as root. The isolation fixture keeps any
    policy installed on this machine out of sight, so STATION_POLICY applies.
    """
    directory = tmp_path / "etc"
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    policy = directory / "policy.toml"
    monkeypatch.setenv("STATION_POLICY", str(policy))
    return policy


def install_policy(policy: Path, text: str) -> Path:
    """Write a system policy the trust check accepts: root-owned, 0644."""
    policy.write_text(text, "utf-8")
    policy.chmod(0o644)
    # Whatever the test machine's umask, the trust check must pass for real.
    assert policy.stat().st_uid == 0
    assert not policy.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return policy


# Only Python code can move where station looks for the machine's policies (an
# environment variable would let staff step out of them), so a child station is
# started through this stub, which moves it to the test's root before `-m`'s work.
_CHILD_STATION = """\
import runpy, sys
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(sys.argv.pop(1)))
runpy.run_module("outreach_station", run_name="__main__", alter_sys=True)
"""


def station_argv(*args: str) -> list[str]:
    """`python -m outreach_station ARGS` for a child process that, like the test
    starting it, never reads the policies installed on this machine."""
    root = paths.test_system_root()
    assert root is not None, "the isolation fixture sets the system root of every test"
    return [sys.executable, "-c", _CHILD_STATION, str(root), *args]


# --- platform profiles --------------------------------------------------------------------


def write_platform(
    directory: Path,
    platform_id: str,
    url: str,
    device: str = "desktop",
    *,
    name: str | None = None,
    proxies: list[str] | None = None,
    require_proxy: bool = False,
) -> Path:
    """Write `<platform_id>.toml` into `directory` (made if missing)."""
    lines = [
        f'name = "{name or f"Test {platform_id}"}"',
        f'start_url = "{url}"',
        f'device = "{device}"',
    ]
    if proxies is not None:
        lines.append("proxies = [" + ", ".join(f'"{p}"' for p in proxies) + "]")
    if require_proxy:
        lines.append("require_proxy = true")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{platform_id}.toml"
    target.write_text("\n".join(lines) + "\n")
    return target


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory of extra platform profiles, named by STATION_PROFILES."""
    directory = tmp_path / "profiles"
    directory.mkdir(exist_ok=True)
    monkeypatch.setenv("STATION_PROFILES", str(directory))
    return directory


@pytest.fixture
def platform_dir(profiles: Path, site: TestSite) -> Path:
    """`profiles` with one platform, site-one, whose start page is the test site."""
    write_platform(profiles, "site-one", site.url)
    return profiles


# --- time ---------------------------------------------------------------------------------

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A clock to pass as `clock=`: says `now`, then moves on by `step` (zero: stands still).

    Set `now` to jump; a registry or audit log built with it records those times.
    """

    now: datetime = START
    step: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        moment = self.now
        self.now = moment + self.step
        return moment


@pytest.fixture
def clock() -> Clock:
    """A clock standing at START until the test moves it."""
    return Clock(START)
