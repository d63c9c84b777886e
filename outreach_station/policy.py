"""System policy: what IT locks down, and what staff may only tighten.

Three layers make the effective policy, later ones on top:

1. built-in defaults, the secure baseline (`Policy()`);
2. the user config, `$STATION_HOME/config.toml`, personal preferences;
3. the system policy, `paths.system_policy_file()`, written by IT.

The system policy wins over the user config for every key it sets. On top of
that the user config may only ever *tighten*: a user value looser than what
defaults and system policy give together is ignored, reported through `warn`
and listed in `EffectivePolicy.ignored` so the caller can audit it
(`policy.loosening_ignored`). A few keys are organisational (where the audit
log goes, how long blocked personas are kept) and only the system policy may
set them. See docs/policy.md for every key.

Both files are validated at the boundary: a malformed file raises
`ConfigError` and never falls back to permissive defaults. The system policy
must also be trusted (`check_trusted`): root-owned and writable by nobody else.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final, cast

from outreach_station import paths
from outreach_station.errors import ConfigError, NotFoundError, SecurityError
from outreach_station.i18n import N_, _
from outreach_station.ids import is_platform_id
from outreach_station.values import read_settings_file

# Same shape as platform ids in platforms.py; kept here so that loading the
# policy does not depend on the platform catalogue being importable.
MAX_MINUTES: Final = 7 * 24 * 60  # a week: anything larger is a typo (seconds?)
MAX_RETENTION_DAYS: Final = 3650
MAX_UNDO_MINUTES: Final = 24 * 60  # a rotation undone a day later is a new decision
MAX_LEASE_MINUTES: Final = 24 * 60

_LABEL: Final = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_SHOWN_VALUE_LIMIT: Final = 60


# --- the policy as values ---------------------------------------------------


def host_matches(host: str, pattern: str) -> bool:
    """Whether `host` is covered by an allowlist pattern.

    `example.se` covers exactly that host; `*.example.se` covers every
    subdomain at any depth but not `example.se` itself, so an allowlist says
    explicitly whether the bare domain is wanted.
    """
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass(frozen=True)
class PlatformRules:
    """What the policy says about one platform."""

    require_proxy: bool = False
    allowlist: tuple[str, ...] | None = None  # None: any host

    def allows_host(self, host: str) -> bool:
        if self.allowlist is None:
            return True
        return any(host_matches(host, pattern) for pattern in self.allowlist)


@dataclass(frozen=True)
class PlatformsRules:
    allowed: tuple[str, ...] | None = None  # None: every platform that exists
    profiles_dir: Path | None = None


@dataclass(frozen=True)
class BrowserRules:
    executable: Path | None = None  # None: let the browser module find Chromium
    downloads: bool = False
    devtools: bool = False
    extensions: bool = False
    # Printing stays on: workers print forms and case notes, and it goes
    # through the organisation's own print setup. IT can still turn it off.
    printing: bool = True
    file_urls: bool = False


@dataclass(frozen=True)
class SessionRules:
    max_minutes: int = 480  # 0 = no limit
    idle_minutes: int = 30  # 0 = never close an idle browser


@dataclass(frozen=True)
class AuditRules:
    path: Path | None = None  # None: the audit module's default in the station home


@dataclass(frozen=True)
class RetentionRules:
    blocked_days: int = 90  # 0 = keep blocked personas until removed by hand


@dataclass(frozen=True)
class RotationRules:
    # How long `station rotate --undo` may bring the blocked persona back; 0 = never.
    undo_minutes: int = 15


@dataclass(frozen=True)
class VaultRules:
    allow_passphrase: bool = False


@dataclass(frozen=True)
class TeamRules:
    url: str | None = None  # None: no team set by IT (a home may still join, if allowed)
    lease_minutes: int = 10
    allow_join: bool = False  # may staff join a team server IT did not name?


@dataclass(frozen=True)
class Policy:
    """The rules in force. `Policy()` is the built-in secure baseline."""

    platforms: PlatformsRules = PlatformsRules()
    platform: Mapping[str, PlatformRules] = field(default_factory=lambda: MappingProxyType({}))
    browser: BrowserRules = BrowserRules()
    session: SessionRules = SessionRules()
    audit: AuditRules = AuditRules()
    retention: RetentionRules = RetentionRules()
    rotation: RotationRules = RotationRules()
    vault: VaultRules = VaultRules()
    team: TeamRules = TeamRules()

    def platform_allowed(self, platform_id: str) -> bool:
        allowed = self.platforms.allowed
        return allowed is None or platform_id in allowed

    def rules_for(self, platform_id: str) -> PlatformRules:
        return self.platform.get(platform_id, PlatformRules())


class SourceKind(StrEnum):
    DEFAULT = "default"
    USER = "user config"
    SYSTEM = "system policy"


@dataclass(frozen=True)
class Source:
    """Where a value came from; reads as `default` or `system policy /etc/...`."""

    kind: SourceKind
    path: Path | None = None

    def __str__(self) -> str:
        return str(self.kind) if self.path is None else f"{self.kind} {self.path}"


DEFAULT_SOURCE: Final = Source(SourceKind.DEFAULT)


class IgnoreReason(StrEnum):
    LOOSENS = "loosens"  # looser than defaults + system policy
    LOCKED = "locked"  # not ordered by strictness, and the system policy set it
    SYSTEM_ONLY = "system_only"  # organisational key a user config may not set


_REASON_TEXT: Final = {
    IgnoreReason.LOOSENS: N_("a user config may only tighten the policy"),
    IgnoreReason.LOCKED: N_("the system policy locks it"),
    IgnoreReason.SYSTEM_ONLY: N_("only the system policy may set it"),
}


@dataclass(frozen=True)
class IgnoredSetting:
    """A user config value that was not applied."""

    key: str
    wanted: object
    kept: object
    kept_source: Source
    user_source: Source
    line: int | None
    reason: IgnoreReason

    @property
    def message(self) -> str:
        where = f"{self.user_source}:{self.line}" if self.line else str(self.user_source)
        return _(
            "{where}: ignoring {key} = {wanted}: {reason}; keeping {kept} from {source}"
        ).format(
            where=where,
            key=self.key,
            wanted=render_value(self.wanted),
            reason=_(_REASON_TEXT[self.reason]),
            kept=render_value(self.kept),
            source=self.kept_source,
        )

    def audit_detail(self) -> dict[str, object]:
        """Detail for a `policy.loosening_ignored` audit record.

        Values are left out on purpose: allowlists name hosts, which the
        audit trail does not record.
        """
        return {
            "setting": self.key,
            "reason": self.reason.value,
            "kept_from": self.kept_source.kind.value,
        }


@dataclass(frozen=True)
class Setting:
    """One effective value and where it came from."""

    key: str
    value: object
    source: Source
    unset: str  # what a value of None means, for people

    def render(self) -> str:
        return f"({_(self.unset)})" if self.value is None else render_value(self.value)

    def json_value(self) -> object:
        return _json_value(self.value)


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy in force, with the source of every value."""

    policy: Policy
    settings: tuple[Setting, ...]
    ignored: tuple[IgnoredSetting, ...]
    system_path: Path
    user_path: Path
    system_loaded: bool  # False when no system policy file exists
    user_loaded: bool

    def setting(self, key: str) -> Setting:
        for setting in self.settings:
            if setting.key == key:
                return setting
        spec = _spec_for(key)
        if spec is None:
            raise KeyError(key)
        # A platform neither file mentions: its rules are the defaults.
        return Setting(key, spec.default, DEFAULT_SOURCE, spec.unset)

    def source_of(self, key: str) -> Source:
        return self.setting(key).source

    def as_json(self) -> dict[str, dict[str, object]]:
        return {s.key: {"value": s.json_value(), "source": str(s.source)} for s in self.settings}


# --- rendering --------------------------------------------------------------


def _json_value(value: object) -> object:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def render_value(value: object) -> str:
    """A value as it would be written in TOML, for messages and tables."""
    if value is None:
        return "(unset)"
    return json.dumps(_json_value(value), ensure_ascii=False)


def _shown(value: object) -> str:
    # Policy files hold no secrets, but a value can be any length.
    try:
        text = render_value(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _SHOWN_VALUE_LIMIT:
        text = text[: _SHOWN_VALUE_LIMIT - 3] + "..."
    return text


# --- the schema -------------------------------------------------------------


class _Invalid(Exception):
    """A value has the wrong type or range; carries what was expected."""

    def __init__(
        self,
        expected: str,
        *,
        item: object = None,
        in_list: bool = False,
        shown: str | None = None,
    ) -> None:
        super().__init__(expected)
        self.expected = expected
        self.item = item  # the offending list entry, when in_list
        self.in_list = in_list
        self.shown = shown  # what to show instead of the value (it may hold a secret)


class _Rule(StrEnum):
    TIGHTEN = "tighten"  # user config may set it if at least as strict
    LOCKABLE = "lockable"  # user config may set it unless the system policy did
    SYSTEM_ONLY = "system_only"


Parser = Callable[[object], object]
Stricter = Callable[[object, object], bool]


@dataclass(frozen=True)
class _Spec:
    parse: Parser
    default: object
    rule: _Rule
    unset: str = N_("unset")
    # at_least_as_strict(candidate, base); only for _Rule.TIGHTEN
    at_least_as_strict: Stricter | None = None


def _parse_bool(value: object) -> object:
    if not isinstance(value, bool):
        raise _Invalid(_("true or false"))
    return value


def _int_range(low: int, high: int, note: str) -> Parser:
    def parse(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(
                _("an integer from {low} to {high} ({note})").format(
                    low=low, high=high, note=_(note)
                )
            )
        return value

    return parse


def _parse_abs_path(value: object) -> object:
    # Relative paths would depend on the directory station is started from.
    if not isinstance(value, str) or not value or not Path(value).is_absolute():
        raise _Invalid(_("an absolute path as a string"))
    if "\x00" in value:
        raise _Invalid(_("a path without NUL characters"))
    return Path(value)


def _string_list(value: object, item: Callable[[str], str | None], what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(_("a list of {what}").format(what=_(what)))
    out: list[str] = []
    for entry in value:
        checked = item(entry) if isinstance(entry, str) else None
        if checked is None:
            raise _Invalid(_("a list of {what}").format(what=_(what)), item=entry, in_list=True)
        if checked not in out:
            out.append(checked)
    return tuple(out)


def _platform_id(text: str) -> str | None:
    return text if is_platform_id(text) else None


def _host_pattern(text: str) -> str | None:
    text = text.lower()
    wildcard = text.startswith("*.")
    host = text[2:] if wildcard else text
    if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
        if wildcard:
            return None
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None
        return text
    # `*.se` would open a whole top-level domain: almost surely a mistake.
    if wildcard and "." not in host:
        return None
    return text


def _parse_platform_list(value: object) -> object:
    return _string_list(value, _platform_id, N_("platform ids (lower case, digits, '-')"))


def _parse_allowlist(value: object) -> object:
    return _string_list(
        value, _host_pattern, N_("host patterns such as example.se or *.example.se")
    )


def _permission_stricter(candidate: object, base: object) -> bool:
    # A permission (downloads, devtools, ...) is stricter when off.
    return not candidate or bool(base)


def _requirement_stricter(candidate: object, base: object) -> bool:
    return bool(candidate) or not base


def _limit_stricter(candidate: object, base: object) -> bool:
    def effective(minutes: object) -> float:
        number = cast(int, minutes)
        return math.inf if number == 0 else float(number)

    return effective(candidate) <= effective(base)


def _shorter_stricter(candidate: object, base: object) -> bool:
    # A window for going back on a decision is stricter when shorter (0: none at all).
    return cast(int, candidate) <= cast(int, base)


def _subset_stricter(candidate: object, base: object) -> bool:
    if base is None:
        return True
    if candidate is None:
        return False
    return set(cast(tuple[str, ...], candidate)) <= set(cast(tuple[str, ...], base))


def _allowlist_stricter(candidate: object, base: object) -> bool:
    if base is None:
        return True
    if candidate is None:
        return False
    patterns = cast(tuple[str, ...], base)
    # Works for wildcards too: `*.a.example.se` ends with `.example.se`.
    return all(any(host_matches(p, b) for b in patterns) for p in cast(tuple[str, ...], candidate))


def _url_shown(value: object) -> str:
    """A refused team URL as it may be shown: its password masked, or not at all.

    A password pasted into the URL would otherwise reach the terminal, a
    ticket or a log with the error. What cannot be parsed as a URL is not
    shown: its password could be anywhere in it.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    hidden = _("a value not shown here (it may hold a password)")
    if not isinstance(value, str) or any(not ch.isprintable() for ch in value):
        return hidden
    try:
        parts = urlsplit(value)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return hidden
    if parts.scheme not in ("postgresql", "postgres") or not value.startswith(f"{parts.scheme}://"):
        return hidden
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    masked = [(k, "***" if k.strip().lower() == "password" else v) for k, v in query]
    text = urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked, safe="*")))
    return _shown(text)


def _parse_team_url(value: object) -> object:
    # Checked as far as can be without psycopg: the full check is at connect time.
    # Never quoted back whole: a URL may carry a password someone pasted into it.
    shown = _url_shown(value)
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        raise _Invalid(
            _("a PostgreSQL URL as a string (postgresql://ROLE@HOST:PORT/DATABASE)"),
            shown=shown,
        )
    head = value.split("?", 1)[0].split("//", 1)[1].split("@", 1)
    if len(head) != 2 or ":" in head[0] or "password=" in value:
        raise _Invalid(
            _("a PostgreSQL URL with a role and no password (the password is in the keyring)"),
            shown=shown,
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _Invalid(_("a PostgreSQL URL without spaces or control characters"), shown=shown)
    return value


def _permission(default: bool) -> _Spec:
    return _Spec(_parse_bool, default, _Rule.TIGHTEN, at_least_as_strict=_permission_stricter)


def _minutes(default: int) -> _Spec:
    return _Spec(
        _int_range(0, MAX_MINUTES, N_("minutes, 0 = off")),
        default,
        _Rule.TIGHTEN,
        unset=N_("off"),
        at_least_as_strict=_limit_stricter,
    )


_BASE: Final = Policy()

_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "platforms.allowed": _Spec(
            _parse_platform_list,
            _BASE.platforms.allowed,
            _Rule.TIGHTEN,
            unset=N_("all platforms"),
            at_least_as_strict=_subset_stricter,
        ),
        "platforms.profiles_dir": _Spec(
            _parse_abs_path, _BASE.platforms.profiles_dir, _Rule.SYSTEM_ONLY, unset=N_("none")
        ),
        "browser.executable": _Spec(
            _parse_abs_path, _BASE.browser.executable, _Rule.LOCKABLE, unset=N_("auto-detect")
        ),
        "browser.downloads": _permission(_BASE.browser.downloads),
        "browser.devtools": _permission(_BASE.browser.devtools),
        "browser.extensions": _permission(_BASE.browser.extensions),
        "browser.printing": _permission(_BASE.browser.printing),
        "browser.file_urls": _permission(_BASE.browser.file_urls),
        "session.max_minutes": _minutes(_BASE.session.max_minutes),
        "session.idle_minutes": _minutes(_BASE.session.idle_minutes),
        "audit.path": _Spec(
            _parse_abs_path, _BASE.audit.path, _Rule.SYSTEM_ONLY, unset=N_("station home default")
        ),
        "retention.blocked_days": _Spec(
            _int_range(0, MAX_RETENTION_DAYS, N_("days, 0 = keep until removed by hand")),
            _BASE.retention.blocked_days,
            _Rule.SYSTEM_ONLY,
        ),
        "rotation.undo_minutes": _Spec(
            _int_range(0, MAX_UNDO_MINUTES, N_("minutes, 0 = no undo")),
            _BASE.rotation.undo_minutes,
            _Rule.TIGHTEN,
            at_least_as_strict=_shorter_stricter,
        ),
        "vault.allow_passphrase": _permission(_BASE.vault.allow_passphrase),
        "team.url": _Spec(_parse_team_url, _BASE.team.url, _Rule.SYSTEM_ONLY, unset=N_("none")),
        "team.lease_minutes": _Spec(
            _int_range(1, MAX_LEASE_MINUTES, N_("minutes a crashed laptop's lease lasts")),
            _BASE.team.lease_minutes,
            _Rule.SYSTEM_ONLY,
        ),
        "team.allow_join": _Spec(_parse_bool, _BASE.team.allow_join, _Rule.SYSTEM_ONLY),
    }
)

_PLATFORM_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "require_proxy": _Spec(
            _parse_bool,
            PlatformRules().require_proxy,
            _Rule.TIGHTEN,
            at_least_as_strict=_requirement_stricter,
        ),
        "allowlist": _Spec(
            _parse_allowlist,
            PlatformRules().allowlist,
            _Rule.TIGHTEN,
            unset=N_("unrestricted"),
            at_least_as_strict=_allowlist_stricter,
        ),
    }
)

_SECTIONS: Final = tuple(dict.fromkeys(key.split(".")[0] for key in _SPECS))


def known_keys() -> tuple[str, ...]:
    """Every key a policy may set; per-platform keys as `platform.<id>.<field>`."""
    return (*_SPECS, *(f"platform.<id>.{name}" for name in _PLATFORM_SPECS))


def _spec_for(key: str) -> _Spec | None:
    if key in _SPECS:
        return _SPECS[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "platform" and is_platform_id(parts[1]):
        return _PLATFORM_SPECS.get(parts[2])
    return None


# --- reading and validating a file ------------------------------------------

_BARE_OR_QUOTED: Final = r"(?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')"
_HEADER_RE: Final = re.compile(
    rf"^\s*\[\[?\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]"
)
_ASSIGN_RE: Final = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_PART_RE: Final = re.compile(_BARE_OR_QUOTED)
_TOML_LINE_RE: Final = re.compile(r"\(at line (\d+)")


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART_RE.findall(dotted))


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """First line where each key path (and each prefix of it) appears.

    A best effort over the text tomllib already accepted, to point error
    messages at a line: tomllib gives line numbers only for syntax errors.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            table = _key_parts(header.group(1))
            found = table
        else:
            assign = _ASSIGN_RE.match(line)
            if not assign:
                continue
            found = table + _key_parts(assign.group(1))
        for end in range(1, len(found) + 1):
            lines.setdefault(found[:end], number)
    return lines


@dataclass(frozen=True)
class _Layer:
    source: Source
    values: Mapping[str, object]
    lines: Mapping[str, int | None]


class _Checker:
    """Collects every invalid field of one file, each with its line."""

    def __init__(self, path: Path, text: str, known_platforms: Collection[str] | None) -> None:
        self.path = path
        self.key_lines = _key_lines(text)
        self.known_platforms = known_platforms
        self.errors: list[tuple[int, str]] = []
        self.values: dict[str, object] = {}
        self.lines: dict[str, int | None] = {}

    def line_of(self, parts: tuple[str, ...]) -> int | None:
        for end in range(len(parts), 0, -1):
            if parts[:end] in self.key_lines:
                return self.key_lines[parts[:end]]
        return None

    def fail(self, parts: tuple[str, ...], message: str) -> None:
        line = self.line_of(parts)
        where = f"{self.path}:{line}" if line else str(self.path)
        self.errors.append((line or 0, f"{where}: {message}"))

    def unknown(self, parts: tuple[str, ...], choices: Collection[str]) -> None:
        close = difflib.get_close_matches(parts[-1], choices, n=1)
        if close:
            hint = _("did you mean {key}?").format(key=repr(".".join((*parts[:-1], close[0]))))
        else:
            hint = _("expected one of: {choices}").format(choices=", ".join(choices))
        self.fail(
            parts, _("unknown key {key}; {hint}").format(key=repr(".".join(parts)), hint=hint)
        )

    def table(self, parts: tuple[str, ...], value: object) -> Mapping[str, object] | None:
        if isinstance(value, dict):
            return cast(Mapping[str, object], value)
        self.fail(
            parts,
            _("{key}: expected a table, got {got}").format(key=".".join(parts), got=_shown(value)),
        )
        return None

    def field(self, parts: tuple[str, ...], spec: _Spec, value: object) -> None:
        key = ".".join(parts)
        try:
            parsed = spec.parse(value)
        except _Invalid as invalid:
            if invalid.shown is not None:
                got = invalid.shown
            elif invalid.in_list:
                got = _("{value} in the list").format(value=_shown(invalid.item))
            else:
                got = _shown(value)
            self.fail(
                parts,
                _("{key}: expected {expected}, got {got}").format(
                    key=key, expected=invalid.expected, got=got
                ),
            )
            return
        if key == "platforms.allowed" and self.known_platforms is not None:
            for platform_id in cast(tuple[str, ...], parsed):
                self.platform_exists(parts, platform_id)
        self.values[key] = parsed
        self.lines[key] = self.line_of(parts)

    def platform_exists(self, parts: tuple[str, ...], platform_id: str) -> bool:
        known = self.known_platforms
        if known is None or platform_id in known:
            return True
        self.fail(
            parts,
            _("unknown platform {platform}; known: {known}").format(
                platform=repr(platform_id), known=", ".join(sorted(known))
            ),
        )
        return False

    def document(self, doc: Mapping[str, object]) -> None:
        for name, value in doc.items():
            if name == "platform":
                self.platform_tables(value)
            elif name in _SECTIONS:
                section = self.table((name,), value)
                for key, item in (section or {}).items():
                    spec = _SPECS.get(f"{name}.{key}")
                    if spec is None:
                        choices = [k.split(".", 1)[1] for k in _SPECS if k.startswith(name + ".")]
                        self.unknown((name, key), choices)
                    else:
                        self.field((name, key), spec, item)
            else:
                self.unknown((name,), [*_SECTIONS, "platform"])

    def platform_tables(self, value: object) -> None:
        platforms = self.table(("platform",), value)
        for platform_id, rules in (platforms or {}).items():
            parts = ("platform", platform_id)
            if not is_platform_id(platform_id):
                self.fail(
                    parts,
                    _(
                        "platform.{platform}: expected a platform id "
                        "(lower case letters, digits, '-')"
                    ).format(platform=platform_id),
                )
                continue
            if not self.platform_exists(parts, platform_id):
                continue
            for key, item in (self.table(parts, rules) or {}).items():
                spec = _PLATFORM_SPECS.get(key)
                if spec is None:
                    self.unknown((*parts, key), list(_PLATFORM_SPECS))
                else:
                    self.field((*parts, key), spec, item)


def _read_text(path: Path) -> str | None:
    """The file's text, or None if there is no file (a home that cannot exist holds none).

    Bounded: a device, pipe or huge file is refused, never read for ever.
    """
    data = read_settings_file(path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            _("{path}: not UTF-8 text (byte {byte})").format(path=path, byte=exc.start)
        ) from None


def _parse_layer(
    path: Path, text: str, source: Source, known_platforms: Collection[str] | None
) -> _Layer:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE_RE.search(str(exc))
        line = match.group(1) if match else str(max(1, len(text.splitlines())))
        raise ConfigError(
            _("{path}:{line}: TOML syntax error: {error}").format(path=path, line=line, error=exc)
        ) from None
    checker = _Checker(path, text, known_platforms)
    checker.document(doc)
    if checker.errors:
        # One line per invalid field, in file order, the first leading.
        ordered = sorted(checker.errors, key=lambda error: error[0])
        raise ConfigError("\n".join(message for _line, message in ordered))
    return _Layer(source, MappingProxyType(checker.values), MappingProxyType(checker.lines))


# --- trust ------------------------------------------------------------------


def _describe_owner(owner: int, uid: int) -> str:
    return _("you") if owner == uid else _("uid {uid}").format(uid=owner)


# (of the file, of a directory above it): the wording differs, the meaning not.
_NOT_ROOTS: Final = (
    N_(
        "it ({path}) is owned by {owner}, not root, "
        "so it could be changed without administrator rights"
    ),
    N_(
        "its directory ({path}) is owned by {owner}, not root, "
        "so it could be changed without administrator rights"
    ),
)
_WORLD_WRITABLE: Final = (
    N_("it ({path}) is world-writable"),
    N_("its directory ({path}) is world-writable"),
)
_GROUP_WRITABLE: Final = (
    N_("it ({path}) is group-writable"),
    N_("its directory ({path}) is group-writable"),
)


def _trust_problem(path: Path, st: os.stat_result, uid: int, *, is_dir: bool) -> str | None:
    which = int(is_dir)
    if st.st_uid != 0:
        owner = _describe_owner(st.st_uid, uid)
        return _(_NOT_ROOTS[which]).format(path=path, owner=owner)
    # The sticky bit stops others renaming or replacing entries they do not
    # own, which is why /tmp-like directories are acceptable.
    if is_dir and st.st_mode & stat.S_ISVTX:
        return None
    if st.st_mode & stat.S_IWOTH:
        return _(_WORLD_WRITABLE[which]).format(path=path)
    if st.st_mode & stat.S_IWGRP:
        return _(_GROUP_WRITABLE[which]).format(path=path)
    return None


def check_trusted(path: Path, *, uid: int | None = None) -> None:
    """Refuse a system policy that someone other than root could change.

    The file and every directory above it must be owned by root and not
    writable by group or others (a directory with the sticky bit, like /tmp,
    may be world-writable). A symlink is checked along both its own path and
    its target's. `uid` is the user station runs as (default: the effective
    uid); it only words the message, because no one but root may own a
    trusted policy. On systems without POSIX ownership the check is skipped.

    Raises `NotFoundError` if the file does not exist and `SecurityError` if it
    is not trusted.
    """
    if os.name != "posix":
        return
    uid = os.geteuid() if uid is None else uid
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise NotFoundError(_("{path}: no such policy file").format(path=path)) from None
    except OSError as exc:
        raise ConfigError(
            _("{path}: cannot read: {reason}").format(path=path, reason=exc.strerror or exc)
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(_("{path}: not a regular file").format(path=path))
    problem = _trust_problem(real, st, uid, is_dir=False)
    # Whoever can replace any directory on the way can replace the file.
    directories = dict.fromkeys((*given.parents, *real.parents))
    for directory in directories:
        if problem:
            break
        try:
            problem = _trust_problem(directory, os.stat(directory), uid, is_dir=True)
        except OSError as exc:
            raise ConfigError(
                _("{path}: cannot inspect {directory}: {reason}").format(
                    path=path, directory=directory, reason=exc.strerror
                )
            ) from None
    if problem:
        raise SecurityError(
            _(
                "{path}: refusing untrusted system policy: {problem}; it must be owned by root "
                "and writable by root only (chown root: and chmod go-w)"
            ).format(path=path, problem=problem)
        )


# --- merging ----------------------------------------------------------------


def _judge(spec: _Spec, wanted: object, base: object, base_source: Source) -> IgnoreReason | None:
    if wanted == base:
        return None
    if spec.rule is _Rule.SYSTEM_ONLY:
        return IgnoreReason.SYSTEM_ONLY
    if spec.rule is _Rule.LOCKABLE:
        return IgnoreReason.LOCKED if base_source.kind is SourceKind.SYSTEM else None
    assert spec.at_least_as_strict is not None  # noqa: S101 - every TIGHTEN spec has one
    return None if spec.at_least_as_strict(wanted, base) else IgnoreReason.LOOSENS


def _all_keys(layers: tuple[_Layer | None, ...]) -> list[str]:
    platform_keys = sorted(
        {key for layer in layers if layer for key in layer.values if key.startswith("platform.")}
    )
    return [*_SPECS, *platform_keys]


def _merge(
    system: _Layer | None,
    user: _Layer | None,
    warn: Callable[[str], None] | None,
) -> tuple[tuple[Setting, ...], tuple[IgnoredSetting, ...]]:
    settings: list[Setting] = []
    ignored: list[IgnoredSetting] = []
    for key in _all_keys((system, user)):
        spec = _spec_for(key)
        assert spec is not None  # noqa: S101 - keys come from validated layers
        value, source = spec.default, DEFAULT_SOURCE
        if system and key in system.values:
            value, source = system.values[key], system.source
        if user and key in user.values:
            wanted = user.values[key]
            reason = _judge(spec, wanted, value, source)
            if reason is not None:
                item = IgnoredSetting(
                    key, wanted, value, source, user.source, user.lines.get(key), reason
                )
                ignored.append(item)
                if warn is not None:
                    warn(item.message)
            elif not (wanted == value and source.kind is SourceKind.SYSTEM):
                value, source = wanted, user.source
        settings.append(Setting(key, value, source, spec.unset))
    return tuple(settings), tuple(ignored)


def _build(settings: tuple[Setting, ...]) -> Policy:
    value = {setting.key: setting.value for setting in settings}

    def flag(key: str) -> bool:
        return cast(bool, value[key])

    def number(key: str) -> int:
        return cast(int, value[key])

    def where(key: str) -> Path | None:
        return cast(Path | None, value[key])

    platform_ids = dict.fromkeys(key.split(".")[1] for key in value if key.startswith("platform."))
    default_rules = PlatformRules()
    platform = {
        pid: PlatformRules(
            require_proxy=cast(
                bool, value.get(f"platform.{pid}.require_proxy", default_rules.require_proxy)
            ),
            allowlist=cast(
                tuple[str, ...] | None,
                value.get(f"platform.{pid}.allowlist", default_rules.allowlist),
            ),
        )
        for pid in platform_ids
    }
    return Policy(
        platforms=PlatformsRules(
            allowed=cast(tuple[str, ...] | None, value["platforms.allowed"]),
            profiles_dir=where("platforms.profiles_dir"),
        ),
        platform=MappingProxyType(platform),
        browser=BrowserRules(
            executable=where("browser.executable"),
            downloads=flag("browser.downloads"),
            devtools=flag("browser.devtools"),
            extensions=flag("browser.extensions"),
            printing=flag("browser.printing"),
            file_urls=flag("browser.file_urls"),
        ),
        session=SessionRules(
            max_minutes=number("session.max_minutes"),
            idle_minutes=number("session.idle_minutes"),
        ),
        audit=AuditRules(path=where("audit.path")),
        retention=RetentionRules(blocked_days=number("retention.blocked_days")),
        rotation=RotationRules(undo_minutes=number("rotation.undo_minutes")),
        vault=VaultRules(allow_passphrase=flag("vault.allow_passphrase")),
        team=TeamRules(
            url=cast(str | None, value["team.url"]),
            lease_minutes=number("team.lease_minutes"),
            allow_join=flag("team.allow_join"),
        ),
    )


# --- entry points -----------------------------------------------------------


def validate_policy_file(path: Path, *, known_platforms: Collection[str] | None = None) -> Policy:
    """Parse and validate one policy file on its own (defaults + that file).

    For checking a file before rollout: ownership is not checked here, see
    `check_trusted`. Raises `NotFoundError` if there is no file and
    `ConfigError` naming file, line and field if it is malformed.
    """
    text = _read_text(path)
    if text is None:
        raise NotFoundError(_("{path}: no such policy file").format(path=path))
    layer = _parse_layer(path, text, Source(SourceKind.SYSTEM, path), known_platforms)
    settings, _ignored = _merge(layer, None, None)
    return _build(settings)


def load_policy(
    *,
    system_path: Path | None = None,
    user_path: Path | None = None,
    warn: Callable[[str], None] | None = None,
    known_platforms: Collection[str] | None = None,
    uid: int | None = None,
) -> EffectivePolicy:
    """The effective policy: defaults < user config < system policy.

    A missing file is not an error: that layer is simply absent. A system
    policy that is malformed or untrusted raises (`ConfigError`,
    `SecurityError`); a malformed user config raises `ConfigError` too, since
    guessing what it meant could loosen nothing but would hide a mistake.
    User values that would loosen the policy are ignored, passed to `warn` one
    line each, and returned in `EffectivePolicy.ignored` for the audit trail.
    With `known_platforms`, platform ids naming no known platform are errors.
    """
    system_path = paths.system_policy_file() if system_path is None else system_path
    user_path = paths.current().user_config if user_path is None else user_path

    system: _Layer | None = None
    try:
        check_trusted(system_path, uid=uid)
    except NotFoundError:
        pass
    else:
        text = _read_text(system_path)
        if text is not None:
            source = Source(SourceKind.SYSTEM, system_path)
            system = _parse_layer(system_path, text, source, known_platforms)

    user: _Layer | None = None
    user_text = _read_text(user_path)
    if user_text is not None:
        source = Source(SourceKind.USER, user_path)
        user = _parse_layer(user_path, user_text, source, known_platforms)

    settings, ignored = _merge(system, user, warn)
    return EffectivePolicy(
        policy=_build(settings),
        settings=settings,
        ignored=ignored,
        system_path=system_path,
        user_path=user_path,
        system_loaded=system is not None,
        user_loaded=user is not None,
    )
