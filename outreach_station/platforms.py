"""Platform profiles: the websites where outreach happens.

A profile is a TOML file named `<id>.toml`. Station reads the profiles it
ships (`profiles/`), the directories in `STATION_PROFILES` and the user's
`$STATION_HOME/profiles`; a later directory overrides an earlier one for the
same id. The built-in `demo` platform needs no file: its start page is the
inspector that station serves itself.

A malformed profile never stops the other platforms from working: it is
reported as a `ProfileProblem` and only using that platform fails.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from outreach_station import paths
from outreach_station.errors import ConfigError, NotFoundError, UsageError

DeviceClass = Literal["desktop", "mobile"]

DEMO_ID = "demo"
PLATFORM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


@dataclass(frozen=True)
class PlatformProfile:
    """One platform as configured by a profile file (or built in)."""

    id: str
    name: str
    start_url: str
    device: DeviceClass = "desktop"
    locale: str = "sv-SE"
    languages: tuple[str, ...] = ()
    timezone: str = "Europe/Stockholm"
    min_standby: int = 0
    source: str = "built-in"
    # Egress proxies handed out to the platform's personas (outreach_station.network).
    proxies: tuple[str, ...] = ()
    require_proxy: bool = False
    builtin: bool = False

    @property
    def accept_languages(self) -> tuple[str, ...]:
        """The language list a browser of this locale sends, most preferred first."""
        if self.languages:
            return self.languages
        return default_languages(self.locale)


@dataclass(frozen=True)
class ProfileProblem:
    """A profile file that could not be used, and why."""

    path: Path
    message: str


@dataclass(frozen=True)
class PlatformCatalogue:
    platforms: Mapping[str, PlatformProfile]
    problems: tuple[ProfileProblem, ...] = field(default=())

    def get(self, platform_id: str) -> PlatformProfile:
        validate_platform_id(platform_id)
        found = self.platforms.get(platform_id)
        if found is not None:
            return found
        for problem in self.problems:
            if problem.path.stem == platform_id:
                raise ConfigError(problem.message)
        known = ", ".join(sorted(self.platforms)) or "none"
        raise NotFoundError(f"unknown platform '{platform_id}' (known platforms: {known})")


def default_languages(locale: str) -> tuple[str, ...]:
    """What a browser set up for `locale` lists: the locale, its language, then English."""
    langs: list[str] = [locale]
    base = locale.split("-", maxsplit=1)[0]
    if base != locale:
        langs.append(base)
    for extra in ("en-US", "en"):
        if extra not in langs:
            langs.append(extra)
    return tuple(langs)


def validate_platform_id(platform_id: str) -> str:
    if not PLATFORM_ID_RE.fullmatch(platform_id):
        raise UsageError(
            f"malformed platform id '{platform_id}': use lower-case letters, digits and '-'"
        )
    return platform_id


def demo_profile() -> PlatformProfile:
    # The start URL is only known once the inspector is serving; "station:inspector"
    # stands for it and the launcher substitutes the real loopback address.
    return PlatformProfile(
        id=DEMO_ID,
        name="Demo: what a website sees of this persona",
        start_url=INSPECTOR_URL,
        builtin=True,
    )


INSPECTOR_URL = "station:inspector"

_ALLOWED_KEYS = {
    "id",
    "name",
    "start_url",
    "device",
    "locale",
    "languages",
    "timezone",
    "min_standby",
    "proxies",
    "require_proxy",
}


def _field_error(path: Path, key: str, expected: str, got: object) -> ConfigError:
    return ConfigError(
        f"{path}: field '{key}': expected {expected}, got {type(got).__name__} {got!r}"
    )


def parse_profile(path: Path, data: Mapping[str, Any]) -> PlatformProfile:
    """Validate one profile's TOML table; raise ConfigError naming file and field."""
    unknown = sorted(set(data) - _ALLOWED_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_KEYS))
        raise ConfigError(f"{path}: unknown field '{unknown[0]}' (allowed: {allowed})")
    for required in ("name", "start_url"):
        if required not in data:
            raise ConfigError(f"{path}: missing required field '{required}'")

    def text(key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise _field_error(path, key, "a non-empty string", value)
        return value

    platform_id = text("id", path.stem)
    if not PLATFORM_ID_RE.fullmatch(platform_id):
        raise ConfigError(
            f"{path}: field 'id': expected lower-case letters, digits and '-', got {platform_id!r}"
        )
    if platform_id != path.stem:
        raise ConfigError(
            f"{path}: field 'id': '{platform_id}' must match the file name '{path.stem}.toml'"
        )
    if platform_id == DEMO_ID:
        raise ConfigError(f"{path}: field 'id': '{DEMO_ID}' is built in and cannot be redefined")
    start_url = text("start_url")
    parts = urlsplit(start_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{path}: field 'start_url': expected an http(s) URL with a host, got {start_url!r}"
        )
    device = text("device", "desktop")
    if device not in ("desktop", "mobile"):
        raise ConfigError(f"{path}: field 'device': expected 'desktop' or 'mobile', got {device!r}")
    locale = text("locale", "sv-SE")
    if not LOCALE_RE.fullmatch(locale):
        raise ConfigError(f"{path}: field 'locale': expected a tag like 'sv-SE', got {locale!r}")
    raw_langs = data.get("languages", [])
    if not isinstance(raw_langs, list) or not all(
        isinstance(x, str) and LOCALE_RE.fullmatch(x) for x in raw_langs
    ):
        raise _field_error(path, "languages", "a list of tags like ['sv-SE', 'sv']", raw_langs)
    timezone = text("timezone", "Europe/Stockholm")
    if not _is_timezone(timezone):
        raise ConfigError(
            f"{path}: field 'timezone': expected an IANA zone like 'Europe/Stockholm', "
            f"got {timezone!r}"
        )
    min_standby = data.get("min_standby", 0)
    if isinstance(min_standby, bool) or not isinstance(min_standby, int) or min_standby < 0:
        raise _field_error(path, "min_standby", "a whole number >= 0", min_standby)
    proxies, require_proxy = _network_fields(path, data)
    return PlatformProfile(
        id=platform_id,
        name=text("name"),
        start_url=start_url,
        device=device,  # type: ignore[arg-type]  # checked just above
        locale=locale,
        languages=tuple(raw_langs),
        timezone=timezone,
        min_standby=min_standby,
        source=str(path),
        proxies=proxies,
        require_proxy=require_proxy,
    )


def _network_fields(path: Path, data: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    from outreach_station.network import validate_pool

    proxies = validate_pool(path, data.get("proxies", []))
    require_proxy = data.get("require_proxy", False)
    if not isinstance(require_proxy, bool):
        raise _field_error(path, "require_proxy", "true or false", require_proxy)
    return proxies, require_proxy


def _is_timezone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def load_profile_file(path: Path) -> PlatformProfile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return parse_profile(path, data)


def profile_dirs(system_dir: Path | None = None) -> list[Path]:
    """Profile directories, lowest precedence first: shipped, user, STATION_PROFILES, system."""
    dirs = [
        paths.builtin_profiles_dir(),
        paths.current().user_profiles,
        *paths.extra_profiles_dirs(),
    ]
    if system_dir is not None:
        dirs.append(system_dir)
    return dirs


def load_catalogue(
    dirs: Iterable[Path] | None = None, *, allowed: Iterable[str] | None = None
) -> PlatformCatalogue:
    """All platforms: built-in demo first, then every readable profile file.

    With `allowed` (the system policy's list), every other platform is left out.
    """
    found: dict[str, PlatformProfile] = {DEMO_ID: demo_profile()}
    problems: list[ProfileProblem] = []
    for directory in profile_dirs() if dirs is None else dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                profile = load_profile_file(path)
            except ConfigError as exc:
                problems = [p for p in problems if p.path.stem != path.stem]
                problems.append(ProfileProblem(path=path, message=exc.message))
                # A broken override must not silently fall back to the profile it overrides.
                if path.stem != DEMO_ID:
                    found.pop(path.stem, None)
                continue
            problems = [p for p in problems if p.path.stem != path.stem]
            found[profile.id] = profile
    if allowed is not None:
        keep = set(allowed)
        found = {k: v for k, v in found.items() if k in keep}
        problems = [p for p in problems if p.path.stem in keep]
    return PlatformCatalogue(platforms=found, problems=tuple(problems))
