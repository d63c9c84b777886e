"""Every location station uses, built in one place.

Nothing else in the package calls platformdirs or reads the environment
variables below; tests point `STATION_HOME` at a temporary directory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "outreach-station"

ENV_HOME = "STATION_HOME"
ENV_POLICY = "STATION_POLICY"
ENV_BROWSER = "STATION_BROWSER"
ENV_PROFILES = "STATION_PROFILES"

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StationPaths:
    """The directories and files of one station home."""

    home: Path

    @property
    def registry(self) -> Path:
        return self.home / "registry.sqlite3"

    @property
    def personas(self) -> Path:
        return self.home / "personas"

    def persona_dir(self, persona_id: str) -> Path:
        return self.personas / persona_id

    @property
    def locks(self) -> Path:
        return self.home / "locks"

    def persona_lock(self, persona_id: str) -> Path:
        return self.locks / f"{persona_id}.lock"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def audit_anchor(self) -> Path:
        """The audit log's anchor (see `audit.ChainAnchor`): beside the registry, not in it."""
        return self.home / "audit-anchor.sqlite3"

    @property
    def team_file(self) -> Path:
        """The team this home joined (`station team join/init`), when the policy lets staff join."""
        return self.home / "team.json"

    @property
    def team_audit_sent(self) -> Path:
        """How far this home's audit log has been copied to the team's trail (`team.audit`)."""
        return self.home / "team-audit-sent.json"

    @property
    def user_config(self) -> Path:
        return self.home / "config.toml"

    @property
    def user_profiles(self) -> Path:
        return self.home / "profiles"


def station_home() -> Path:
    """The root of all user state: `STATION_HOME`, else platformdirs' user data dir."""
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def current() -> StationPaths:
    return StationPaths(home=station_home())


def builtin_profiles_dir() -> Path:
    """Platform profiles shipped with station.

    A wheel carries them inside the package; a source checkout (editable
    install) has them at the top of the repository.
    """
    packaged = PACKAGE_DIR / "profiles"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "profiles"


def docs_dir() -> Path:
    """Station's documentation: inside the package in a wheel, `docs/` in a checkout."""
    packaged = PACKAGE_DIR / "docs"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "docs"


def extra_profiles_dirs() -> list[Path]:
    """Extra platform-profile directories from `STATION_PROFILES` (os.pathsep separated)."""
    raw = os.environ.get(ENV_PROFILES, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


# Where Chromium reads mandatory (managed) policies on Linux: Debian/Ubuntu's
# chromium package, then Google Chrome. (Windows: registry/GPO; macOS: a profile.)
MANAGED_BROWSER_POLICY_DIRS = (
    Path("/etc/chromium/policies/managed"),
    Path("/etc/opt/chrome/policies/managed"),
)

# The root under which the machine's installed policies are looked for. Only
# Python code can move it (the test suite's isolation fixture, so that no
# test reads or changes this machine's policy); an environment variable
# would let staff step out of the policy.
_system_root: dict[str, Path] = {}


def set_test_system_root(root: Path | None) -> None:
    """Look for installed policies below `root` instead of `/`; None restores `/`. Tests only."""
    if root is None:
        _system_root.clear()
    else:
        _system_root["root"] = root


def test_system_root() -> Path | None:
    """The root `set_test_system_root` set, if any; tests hand it to the stations they start."""
    return _system_root.get("root")


def _on_system(path: Path) -> Path:
    root = _system_root.get("root")
    return path if root is None else root / path.relative_to(path.anchor)


def managed_browser_policy_dirs() -> tuple[Path, ...]:
    """Where Chromium and Chrome read the policy `station policy apply-browser` writes."""
    return tuple(_on_system(directory) for directory in MANAGED_BROWSER_POLICY_DIRS)


def installed_policy_file() -> Path:
    """Where an image puts the system policy.

    On Linux always `/etc/xdg/outreach-station/policy.toml`: platformdirs'
    site config dir follows `XDG_CONFIG_DIRS`, which any user can set, and a
    policy that an environment variable can move is no policy. Elsewhere
    platformdirs' site config dir, which no user setting moves.
    """
    if sys.platform.startswith("linux"):
        return _on_system(Path("/etc/xdg") / APP_NAME / "policy.toml")
    site = Path(platformdirs.site_config_dir(APP_NAME, appauthor=False))
    return _on_system(site / "policy.toml")


def system_policy_file() -> Path:
    """The system policy in force.

    `STATION_POLICY` points elsewhere for tests and image builds, but never
    while a policy is installed: otherwise staff could escape the policy by
    setting an environment variable.
    """
    installed = installed_policy_file()
    override = os.environ.get(ENV_POLICY)
    if override and not installed.exists():
        return Path(override).expanduser()
    return installed


def browser_override() -> str | None:
    return os.environ.get(ENV_BROWSER) or None


def runtime_base() -> tuple[Path, bool]:
    """Where open personas' plaintext workspaces live, and whether it is RAM-backed.

    `$XDG_RUNTIME_DIR`, then `/dev/shm`, both memory-backed on Linux; otherwise
    the user cache dir, which the caller must warn about.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir() and os.access(xdg, os.W_OK):
        return Path(xdg) / APP_NAME, True
    shm = Path("/dev/shm")  # noqa: S108 - RAM-backed by design, private 0700 subdir
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"{APP_NAME}-{os.getuid()}", True
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "workspaces", False


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
