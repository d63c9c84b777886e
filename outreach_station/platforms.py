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
from outreach_station.errors import ConfigError, NotFoundError
from outreach_station.i18n import N_, _
from outreach_station.ids import is_platform_id, validate_platform_id
from outreach_station.values import MAX_URL_LENGTH, printable, read_settings_file, text_problem

DeviceClass = Literal["desktop", "mobile"]

DEMO_ID = "demo"
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
MAX_NAME_LENGTH = 100
# A standby pool is a handful of personas; a huge number would make
# `station status` warn for ever or a script create personas without end.
MAX_MIN_STANDBY = 50
# Longer values are not repeated in a message: it stays one readable line.
_SHOWN_LENGTH = 80


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
    # Platforms that have a profile here but that IT's list leaves out.
    excluded: frozenset[str] = frozenset()
    # IT's list (platforms.allowed), None when the policy sets none.
    allowed: frozenset[str] | None = None

    def get(self, platform_id: str) -> PlatformProfile:
        validate_platform_id(platform_id)
        found = self.platforms.get(platform_id)
        if found is not None:
            return found
        for problem in self.problems:
            if problem.path.stem == platform_id:
                raise ConfigError(problem.message)
        known = ", ".join(sorted(self.platforms)) or _("none")
        if platform_id in self.excluded:
            raise NotFoundError(
                _(
                    "platform '{platform}' is not allowed by IT's policy on this computer "
                    "(allowed: {known}); ask IT if you need it"
                ).format(platform=platform_id, known=known)
            )
        if self.allowed is not None and platform_id in self.allowed:
            raise NotFoundError(
                _(
                    "platform '{platform}' is allowed by IT's policy but has no profile on this "
                    "computer; ask IT to install one (docs/it-deployment.md, Platform profiles)"
                ).format(platform=platform_id)
            )
        raise NotFoundError(
            _("unknown platform '{platform}' (known platforms: {known})").format(
                platform=platform_id, known=known
            )
        )

    def missing(self) -> tuple[str, ...]:
        """Platforms IT allows that have neither a profile nor a broken one here."""
        if self.allowed is None:
            return ()
        broken = {problem.path.stem for problem in self.problems}
        return tuple(sorted(self.allowed - set(self.platforms) - broken))


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


def demo_profile() -> PlatformProfile:
    # The start URL is only known once the inspector is serving; "station:inspector"
    # stands for it and the launcher substitutes the real loopback address.
    return PlatformProfile(
        id=DEMO_ID,
        name=_("Demo: what a website sees of this persona"),
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


def _shown(got: object) -> str:
    """What a profile held, for a message: its type and value, or its length if long."""
    if isinstance(got, str | list | dict) and len(got) > _SHOWN_LENGTH:
        if isinstance(got, str):
            return _("{type} of {n} characters").format(type=type(got).__name__, n=len(got))
        return _("{type} of {n} items").format(type=type(got).__name__, n=len(got))
    return f"{type(got).__name__} {printable(repr(got))}"


def _field_error(path: Path, key: str, expected: str, got: object) -> ConfigError:
    return ConfigError(
        _("{path}: field '{key}': expected {expected}, got {got}").format(
            path=path, key=key, expected=_(expected), got=_shown(got)
        )
    )


def parse_profile(path: Path, data: Mapping[str, Any]) -> PlatformProfile:
    """Validate one profile's TOML table; raise ConfigError naming file and field."""
    unknown = sorted(set(data) - _ALLOWED_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_KEYS))
        raise ConfigError(
            _("{path}: unknown field '{field}' (allowed: {allowed})").format(
                path=path, field=unknown[0], allowed=allowed
            )
        )
    for required in ("name", "start_url"):
        if required not in data:
            raise ConfigError(
                _("{path}: missing required field '{field}'").format(path=path, field=required)
            )

    def text(key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise _field_error(path, key, N_("a non-empty string"), value)
        return value

    platform_id = text("id", path.stem)
    if not is_platform_id(platform_id):
        raise _field_error(path, "id", N_("lower-case letters, digits and '-'"), platform_id)
    if platform_id != path.stem:
        raise ConfigError(
            _("{path}: field 'id': '{platform}' must match the file name '{file}'").format(
                path=path, platform=platform_id, file=f"{path.stem}.toml"
            )
        )
    if platform_id == DEMO_ID:
        raise ConfigError(
            _("{path}: field 'id': '{platform}' is built in and cannot be redefined").format(
                path=path, platform=DEMO_ID
            )
        )
    name = text("name")
    if len(name) > MAX_NAME_LENGTH or text_problem(name):
        expected = _("at most {n} printable characters").format(n=MAX_NAME_LENGTH)
        raise _field_error(path, "name", expected, name)
    start_url = _start_url(path, text("start_url"))
    device = text("device", "desktop")
    if device not in ("desktop", "mobile"):
        raise _field_error(path, "device", N_("'desktop' or 'mobile'"), device)
    locale = text("locale", "sv-SE")
    if not LOCALE_RE.fullmatch(locale):
        raise _field_error(path, "locale", N_("a tag like 'sv-SE'"), locale)
    raw_langs = data.get("languages", [])
    if not isinstance(raw_langs, list) or not all(
        isinstance(x, str) and LOCALE_RE.fullmatch(x) for x in raw_langs
    ):
        raise _field_error(path, "languages", N_("a list of tags like ['sv-SE', 'sv']"), raw_langs)
    timezone = text("timezone", "Europe/Stockholm")
    if not _is_timezone(timezone):
        raise _field_error(path, "timezone", N_("an IANA zone like 'Europe/Stockholm'"), timezone)
    min_standby = _min_standby(path, data.get("min_standby", 0))
    proxies, require_proxy = _network_fields(path, data)
    return PlatformProfile(
        id=platform_id,
        name=name,
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


def _start_url(path: Path, start_url: str) -> str:
    if len(start_url) > MAX_URL_LENGTH or text_problem(start_url):
        raise _field_error(
            path,
            "start_url",
            _("an http(s) URL with a host of at most {n} characters").format(n=MAX_URL_LENGTH),
            start_url,
        )
    parts = urlsplit(start_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _field_error(path, "start_url", N_("an http(s) URL with a host"), start_url)
    return start_url


def _min_standby(path: Path, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MIN_STANDBY:
        raise _field_error(
            path,
            "min_standby",
            _("a whole number from 0 to {n}").format(n=MAX_MIN_STANDBY),
            value,
        )
    return value


def _network_fields(path: Path, data: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    from outreach_station.network import validate_pool

    proxies = validate_pool(path, data.get("proxies", []))
    require_proxy = data.get("require_proxy", False)
    if not isinstance(require_proxy, bool):
        raise _field_error(path, "require_proxy", N_("true or false"), require_proxy)
    return proxies, require_proxy


def _is_timezone(name: str) -> bool:
    import zoneinfo

    # IANA names are short; a long one would only reach the file system as an error.
    if len(name) > 64:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def load_profile_file(path: Path) -> PlatformProfile:
    raw = read_settings_file(path)
    if raw is None:
        raise ConfigError(_("{path}: cannot read: No such file or directory").format(path=path))
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(_("{path}: not UTF-8 text").format(path=path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            _("{path}: malformed TOML: {error}").format(path=path, error=exc)
        ) from None
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
    if allowed is None:
        return PlatformCatalogue(platforms=found, problems=tuple(problems))
    keep = frozenset(allowed)
    excluded = frozenset(found) - keep
    return PlatformCatalogue(
        platforms={k: v for k, v in found.items() if k in keep},
        problems=tuple(p for p in problems if p.path.stem in keep),
        excluded=excluded,
        allowed=keep,
    )
