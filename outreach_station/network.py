"""Each persona's network identity: its egress proxy and WebRTC containment.

A persona's proxy is set by a person (`station persona proxy <id> URL`) or
assigned from its platform profile's `proxies = [...]` pool the first time
it opens (and afresh at rotation: a new persona never inherits the blocked
one's address). The URL and user name are in the registry; a password only
ever in the OS keyring, read at launch and handed to the browser through the
automation pipe, so it reaches no command line, log or error message.

Chromium sends DNS through a SOCKS5 proxy itself (it never resolves a host
it reaches through `socks5://`), and through an HTTP proxy by sending it the
host name. Chromium bypasses the proxy for loopback addresses by default;
that is kept, so station's own inspector on 127.0.0.1 stays reachable (a
remote proxy could not reach this machine's loopback anyway). A platform
with a host allowlist puts station's gate (gate.py) in front: the browser
then goes only to the gate, loopback included, and the gate goes on through
this proxy, answering its login itself.

WebRTC is kept off every non-proxied UDP path by the switch
`--webrtc-ip-handling-policy=disable_non_proxied_udp` on every launch, with
or without a proxy: a STUN server then never learns the real public
address, and no host candidate (not even an mDNS name) is gathered.
Measured on Chromium 156 (tests/browser/test_webrtc.py): this switch works;
`--force-webrtc-ip-handling-policy` and a `webrtc.ip_handling_policy` value
written into the profile's Preferences file were both ignored.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from outreach_station import secret_store
from outreach_station.errors import (
    ConfigError,
    EnvironmentProblem,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.i18n import N_, _
from outreach_station.ids import validate_persona_id
from outreach_station.personas import Persona
from outreach_station.storage import ProxyRecord, Store
from outreach_station.values import MAX_URL_LENGTH, url_is_plain

ProxyScheme = Literal["http", "socks5"]
# Chromium's only IP handling policy that keeps WebRTC off the real network
# interfaces while leaving it usable through a proxy (TURN over TCP).
WEBRTC_POLICY: Final = "disable_non_proxied_udp"
# The switch Chromium 156 reads for it (a look-alike, --force-webrtc-ip-
# handling-policy, is silently ignored: the tests prove which one works).
WEBRTC_SWITCH: Final = f"--webrtc-ip-handling-policy={WEBRTC_POLICY}"


class HiddenStr(str):
    """A secret as the plain string a library needs, that never shows in a repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class ProxySetting:
    """Where a persona's traffic leaves: never holds the password."""

    scheme: ProxyScheme
    host: str
    port: int
    username: str = ""
    source: Literal["persona", "pool"] = "persona"

    @property
    def server(self) -> str:
        """The address the browser is given: no user name, no password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def describe(self) -> str:
        origin = (
            _("set on the persona") if self.source == "persona" else _("from the platform pool")
        )
        if self.username:
            return _("{server} as {user} ({origin})").format(
                server=self.server, user=self.username, origin=origin
            )
        return _("{server} ({origin})").format(server=self.server, origin=origin)


def parse_proxy_url(text: str, *, where: str = "proxy") -> ProxySetting:
    """`http://host:port`, `socks5://host:port` or `socks5h://...`, optionally `user@`.

    A password in the URL is refused: it would sit in shell history, argv
    and profile files. It is asked for with a hidden prompt instead.
    """
    if not url_is_plain(text.strip()):
        raise UsageError(
            _(
                "{where}: a proxy URL is one line of at most {limit} printable "
                "characters, like 'socks5://host:1080'"
            ).format(where=where, limit=MAX_URL_LENGTH)
        )
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise UsageError(
            _("{where}: not a proxy URL like 'socks5://host:1080'").format(where=where)
        ) from None
    scheme = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}.get(parts.scheme)
    if scheme is None:
        raise UsageError(
            _("{where}: the scheme must be http, socks5 or socks5h, got {scheme!r}").format(
                where=where, scheme=parts.scheme or "none"
            )
        )
    if parts.password is not None:
        # Said without echoing the URL: it holds the password.
        raise UsageError(
            _(
                "{where}: put no password in the URL; passwords go only to the OS keyring, "
                "through the hidden prompt: give 'http://user@host:port' and type the password "
                "when asked"
            ).format(where=where)
        )
    if not parts.hostname or port is None:
        raise UsageError(
            _("{where}: a proxy URL needs a host and a port, like 'socks5://host:1080'").format(
                where=where
            )
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(
            _("{where}: a proxy URL has only scheme, host and port").format(where=where)
        )
    return ProxySetting(
        scheme=scheme,  # type: ignore[arg-type]  # one of the two by the mapping above
        host=parts.hostname,
        port=port,
        username=parts.username or "",
    )


def validate_pool(path: Path, raw: object) -> tuple[str, ...]:
    """The `proxies` field of a platform profile: a list of proxy URLs without passwords."""
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(
            _(
                "{path}: field 'proxies': expected a list of URLs like ['socks5://host:1080'], "
                "got {kind}"
            ).format(path=path, kind=type(raw).__name__)
        )
    for item in raw:
        try:
            parse_proxy_url(item)
        except UsageError as exc:
            raise ConfigError(
                _("{path}: field 'proxies': {message}").format(path=path, message=exc.message)
            ) from None
    if len(set(raw)) != len(raw):
        raise ConfigError(
            _("{path}: field 'proxies': lists the same proxy twice").format(path=path)
        )
    return tuple(raw)


# ---------------------------------------------------------------- storage


def get_proxy(reg: Store, persona_id: str) -> ProxySetting | None:
    record = reg.proxy(persona_id)
    if record is None:
        return None
    setting = parse_proxy_url(record.url)
    return ProxySetting(
        scheme=setting.scheme,
        host=setting.host,
        port=setting.port,
        username=record.username,
        source=record.source,
    )


def _store(reg: Store, persona_id: str, setting: ProxySetting) -> None:
    reg.put_proxy(
        ProxyRecord(
            persona_id=persona_id,
            url=setting.server,
            username=setting.username,
            source=setting.source,
        )
    )


def password_entry(persona_id: str) -> str:
    """The keyring entry that holds a persona's proxy password."""
    return f"proxy:{validate_persona_id(persona_id)}"


# In a team the proxy password is sealed on the server with the persona's key
# (`team.kit_secrets`), as kit secrets are: a keyring does not travel.
TEAM_FIELD = "proxy-password"


def read_password(persona_id: str) -> HiddenStr | None:
    from outreach_station.team.kit_secrets import home_team_secrets

    with home_team_secrets() as team:
        if team is not None:
            found = team.read(persona_id, TEAM_FIELD)
            return None if found is None else HiddenStr(found)
    value = secret_store.read(password_entry(persona_id), what=N_("proxy password"))
    return None if value is None else HiddenStr(value)


def _set_password(persona_id: str, password: str | None) -> None:
    from outreach_station.team.kit_secrets import home_team_secrets

    with home_team_secrets() as team:
        if team is not None:
            if password:
                team.write(persona_id, TEAM_FIELD, password)
            else:
                # Best effort, as below; a shredding deletes it on the server anyway.
                with contextlib.suppress(StationError):
                    team.delete(persona_id, TEAM_FIELD)
            return
    backend = secret_store.check_backend()
    entry = password_entry(persona_id)
    if password:
        secret_store.write(entry, password, what=N_("proxy password"), backend=backend)
    else:
        # Forgetting is best effort, as it always was: a persona being shredded
        # must not be kept alive by a keyring hiccup over its proxy password.
        with contextlib.suppress(EnvironmentProblem):
            secret_store.delete(entry, what=N_("proxy password"), backend=backend)


def check_persona_proxy(persona: Persona, url: str) -> ProxySetting:
    """The proxy `url` would set for `persona`, or why not: ask this before any password."""
    if persona.status in ("blocked", "retired"):
        raise StateError(
            _("persona {persona} is {status}; its proxy cannot change").format(
                persona=persona.id, status=persona.status
            )
        )
    return parse_proxy_url(url)


def set_persona_proxy(
    reg: Store, persona: Persona, url: str, *, password: str | None = None
) -> ProxySetting:
    """Give `persona` its own proxy; a password goes to the keyring only."""
    setting = check_persona_proxy(persona, url)
    if password and not setting.username:
        raise UsageError(_("a proxy password needs a user name: put it in the URL, 'user@host'"))
    if password and setting.scheme == "socks5":
        # Chromium cannot authenticate to a SOCKS5 proxy; it would silently fail to connect.
        raise UsageError(
            _(
                "Chromium cannot log in to a SOCKS5 proxy; use an http:// proxy for one that "
                "needs a password, or a SOCKS5 proxy that accepts this machine without one"
            )
        )
    _set_password(persona.id, password)
    _store(reg, persona.id, setting)
    return setting


def forget_password(persona_id: str) -> None:
    """Remove a persona's proxy password from the keyring (when it is shredded)."""
    _set_password(persona_id, None)


def clear_persona_proxy(reg: Store, persona_id: str) -> bool:
    gone = reg.delete_proxy(persona_id)
    _set_password(persona_id, None)
    return gone


def assign_from_pool(
    reg: Store, persona: Persona, pool: tuple[str, ...], *, force_new: bool = False
) -> ProxySetting | None:
    """The persona's proxy, drawn from `pool` when it has none (or `force_new`).

    A pool proxy already used by a blocked persona of the platform is the
    last choice: the platform has seen that address get blocked. Among the
    rest, the least used is taken, ties broken at random.
    """
    current = get_proxy(reg, persona.id)
    if current is not None and (current.source == "persona" or not force_new):
        return current
    if not pool:
        return current
    rows = reg.platform_proxies(persona.platform, excluding=persona.id)
    servers = {item: parse_proxy_url(item).server for item in pool}
    burnt = {url for url, status in rows if status == "blocked"}
    if current is not None:
        burnt.add(current.server)
    uses = {item: sum(url == servers[item] for url, _status in rows) for item in pool}
    ranked = sorted(
        pool,
        key=lambda item: (servers[item] in burnt, uses[item], secrets.randbelow(1 << 16)),
    )
    chosen = parse_proxy_url(ranked[0])
    setting = ProxySetting(
        scheme=chosen.scheme,
        host=chosen.host,
        port=chosen.port,
        username=chosen.username,
        source="pool",
    )
    _store(reg, persona.id, setting)
    return setting


# ---------------------------------------------------------------- launch


def browser_args(setting: ProxySetting | None) -> list[str]:
    """Switches for the persona's proxy: the server only, never a credential."""
    if setting is None:
        return []
    # Loopback is bypassed by Chromium's default rule, so station's own
    # inspector stays reachable; everything else goes through the proxy.
    return [f"--proxy-server={setting.server}"]


def playwright_proxy(setting: ProxySetting | None, persona_id: str) -> dict[str, str] | None:
    """Playwright's `proxy` option: it answers the proxy's login over the pipe."""
    if setting is None or not setting.username:
        return None
    password = read_password(persona_id)
    if password is None:
        raise StateError(
            _(
                "persona {persona_id}'s proxy needs a password and the keyring has none; "
                "run 'station persona proxy {persona_id} URL' again"
            ).format(persona_id=persona_id)
        )
    return {"server": setting.server, "username": setting.username, "password": password}


def webrtc_args() -> list[str]:
    """Switches that keep WebRTC from revealing any address, given on every launch."""
    return [WEBRTC_SWITCH]
