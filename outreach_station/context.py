"""One command's context: what every use case needs, built once and passed down.

`Station` holds the station home's paths and, each made at first use and
kept for the rest of the command, the effective policy (loaded and
trust-checked once), the platform catalogue, the audit log, the store and
the browser. Nothing is read at construction, so a command that needs only
the store pays only for the store (`station --help` and `persona list` stay
quick). Use it as a context manager, or call `close()`: the store's handle
is closed there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from outreach_station import paths

if TYPE_CHECKING:
    from outreach_station.audit import AuditLog
    from outreach_station.browser import BrowserExecutable
    from outreach_station.events import EventName
    from outreach_station.personas import Persona
    from outreach_station.platforms import PlatformCatalogue, PlatformProfile
    from outreach_station.policy import EffectivePolicy, Policy
    from outreach_station.storage import Store
    from outreach_station.storage.postgres import TeamConnection
    from outreach_station.team.keys import MemberKey
    from outreach_station.vault import PassphraseCallback, Vault

Notify = Callable[[str], None]


def quiet(_message: str) -> None:
    return None


@dataclass(frozen=True, eq=False)
class Station:
    """The context of one command (see the module's docstring)."""

    paths: paths.StationPaths
    notify: Notify = quiet
    _opened: list[Store] = field(default_factory=list, repr=False)
    _passwords: dict[str, str] = field(default_factory=dict, repr=False)
    _member_keys: dict[str, MemberKey] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, notify: Notify | None = None) -> Station:
        """The context for the station home in force (`STATION_HOME` or the user's)."""
        return cls(paths=paths.current(), notify=notify or quiet)

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()
        self._passwords.clear()
        self._member_keys.clear()

    def keep_open(self, store: Store) -> None:
        """Close `store` with this context (a connection a part of the command keeps)."""
        self._opened.append(store)

    def team_password(self, connection: TeamConnection) -> str:
        """The team database password from the OS keyring, read once per command.

        A team command connects several times (its store, the audit trail's
        own connection, the lease's renewals); each keyring read is a D-Bus
        round trip to the Secret Service.
        """
        from outreach_station.storage.postgres import keyring_password, password_entry

        entry = password_entry(connection)
        if entry not in self._passwords:
            self._passwords[entry] = keyring_password(connection)
        return self._passwords[entry]

    def member_key(self, team_id: str) -> MemberKey:
        """This home's member key in `team_id`, from the OS keyring, read once per command."""
        from outreach_station.team.keys import load_member_key

        if team_id not in self._member_keys:
            self._member_keys[team_id] = load_member_key(self.paths, team_id)
        return self._member_keys[team_id]

    @cached_property
    def effective(self) -> EffectivePolicy:
        """The policy in force: built-in defaults < user config < system policy."""
        from outreach_station.policy import load_policy

        return load_policy(warn=self.notify)

    @property
    def policy(self) -> Policy:
        return self.effective.policy

    @cached_property
    def catalogue(self) -> PlatformCatalogue:
        from outreach_station.platforms import load_catalogue, profile_dirs

        platforms = self.policy.platforms
        return load_catalogue(profile_dirs(platforms.profiles_dir), allowed=platforms.allowed)

    def platform(self, platform_id: str) -> PlatformProfile:
        return self.catalogue.get(platform_id)

    @cached_property
    def audit(self) -> AuditLog:
        """The audit log, where the system policy puts it (else under the station home).

        In a team, the same log, each record also copied to the team's trail
        on the server, which `records` and `verify` then read.
        """
        from outreach_station.audit import AuditLog, ChainAnchor, default_path
        from outreach_station.team.config import team_connection

        path = self.policy.audit.path or default_path(self.paths)
        anchor = ChainAnchor(self.paths.audit_anchor, path)
        if team_connection(self) is None:
            return AuditLog(path, anchor=anchor)
        from outreach_station.team.audit import TeamAuditLog

        # In a team: written here as always, copied to the team's one trail (team/audit.py).
        return TeamAuditLog(path, anchor=anchor, station=self)

    def record(
        self, event: EventName, persona: Persona | None = None, **detail: str | int | bool
    ) -> None:
        """Append one audit record about `persona` (or about the station)."""
        self.audit.append(
            event,
            persona=persona.id if persona else None,
            platform=persona.platform if persona else None,
            detail=detail or None,
        )

    @cached_property
    def store(self) -> Store:
        """The store, opened at first use and closed with the context.

        The team's server when this home is in a team (`team.config`), else
        the embedded one under the home.
        """
        from outreach_station.storage import open_store
        from outreach_station.team.config import team_connection

        team = team_connection(self)
        password = self.team_password(team) if team is not None else None
        opened = open_store(self.paths, team=team, password=password)
        self._opened.append(opened)
        return opened

    @cached_property
    def local_store(self) -> Store:
        """This laptop's own registry: the store itself, or in a team the SQLite beside it.

        In a team it records what only this laptop has: which sealed generation
        of each persona its cache holds. The server's record is shared by every
        laptop, so it cannot say that.
        """
        from outreach_station.storage import open_store
        from outreach_station.team.config import team_connection

        if team_connection(self) is None:
            return self.store
        opened = open_store(self.paths)
        self._opened.append(opened)
        return opened

    @cached_property
    def browser(self) -> BrowserExecutable:
        """The browser to run: the system policy's choice, else the user's, else found."""
        from pathlib import Path

        from outreach_station.browser import find_browser
        from outreach_station.policy import SourceKind

        setting = self.effective.setting("browser.executable")
        chosen = setting.value if isinstance(setting.value, Path) else None
        by_system = setting.source.kind is SourceKind.SYSTEM
        return find_browser(
            policy_executable=chosen if by_system else None,
            user_executable=None if by_system else chosen,
        )

    def vault(self, passphrase_prompt: PassphraseCallback | None = None) -> Vault:
        """The vault of this station home, created (master key in the keyring) on first use."""
        from outreach_station.vault import Vault, VaultMode, read_settings

        settings = read_settings(self.paths)
        # A home set up with `station init --passphrase` is opened in that mode;
        # asking for keyring mode there would refuse it at every open.
        return Vault.init(
            self.paths,
            mode=settings.mode if settings is not None else VaultMode.KEYRING,
            allow_passphrase=self.policy.vault.allow_passphrase,
            passphrase_prompt=passphrase_prompt,
        )


@contextmanager
def using(station: Station | None, notify: Notify | None = None) -> Iterator[Station]:
    """`station` as given, or a fresh one for this call (closed after it)."""
    if station is not None:
        yield station
        return
    with Station.load(notify) as fresh:
        yield fresh
