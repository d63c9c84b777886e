"""Which team a station home is in: the system policy's `team.url`, or the team file.

The system policy's `[team] url` puts every home of the machine in that
team. Where the policy allows it (`team.allow_join`), `station team join` /
`init` may name another server; that choice is kept in the home's team file
(`paths.team_file`, 0600: the team's id, the URL, this home's member id;
never a password, which lives in the OS keyring). A team file the policy
no longer allows is refused, never silently ignored: falling back to the
laptop's own store would show staff a different persona pool.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from outreach_station.errors import IntegrityError, SecurityError
from outreach_station.i18n import _
from outreach_station.team.identity import validate_member_id, validate_team_id

if TYPE_CHECKING:
    from outreach_station.context import Station
    from outreach_station.paths import StationPaths
    from outreach_station.storage.postgres import TeamConnection


@dataclass(frozen=True)
class TeamFile:
    """What `team join/init` wrote for this home."""

    team_id: str
    url: str
    member_id: str
    # The founder's member id and Ed25519 key (base64), pinned at init/join:
    # every approval this laptop trusts leads back to it (team.approvals).
    founder_id: str | None = None
    founder_signing_key: str | None = None
    # Set for homes that joined a team whose every audit record is signed by
    # its member (team.audit): `audit verify` then refuses an unsigned one.
    audit_signed: bool = False


def read_team_file(paths: StationPaths) -> TeamFile | None:
    """The home's team file, or None if it joined no team; damaged is refused."""
    try:
        raw = paths.team_file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        # No home yet (or none possible): not in a team; the store says what is wrong.
        return None
    try:
        data = json.loads(raw)
        found = TeamFile(
            team_id=validate_team_id(data["team_id"]),
            url=str(data["url"]),
            member_id=validate_member_id(data["member_id"]),
            founder_id=(validate_member_id(data["founder_id"]) if data.get("founder_id") else None),
            founder_signing_key=(
                _checked_key(data["founder_signing_key"])
                if data.get("founder_signing_key")
                else None
            ),
            audit_signed=data.get("audit_signed", False) is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(
            _(
                "the team file {team_file} is damaged ({kind}); join the team again "
                "(station team join URL)"
            ).format(team_file=paths.team_file, kind=type(exc).__name__)
        ) from None
    return found


def _checked_key(text: object) -> str:
    from outreach_station.team.approvals import decode_key

    decode_key(str(text))  # ValueError: damaged
    return str(text)


def write_team_file(paths: StationPaths, team: TeamFile) -> None:
    from outreach_station.fsutil import write_atomic

    write_atomic(paths.team_file, json.dumps(asdict(team), indent=2).encode("utf-8") + b"\n")


def check_join_allowed(station: Station, url: str) -> None:
    """Refuse joining `url` unless it is the policy's team or the policy lets staff choose."""
    rules = station.policy.team
    if rules.url is not None and url != rules.url:
        raise SecurityError(
            _(
                "the system policy puts this laptop in another team server "
                "(team.url); join that one: station team join with the URL from "
                "'station policy show'"
            )
        )
    if rules.url is None and not rules.allow_join:
        raise SecurityError(
            _(
                "the system policy does not let staff join a team server "
                "(team.allow_join is false); ask IT to set team.url or "
                "team.allow_join"
            )
        )


def team_url(station: Station) -> str | None:
    """The URL of the team this home is in, or None for the embedded default."""
    rules = station.policy.team
    if rules.url is not None:
        return rules.url
    joined = read_team_file(station.paths)
    if joined is None:
        return None
    if not rules.allow_join:
        raise SecurityError(
            _(
                "this station home joined a team server the system policy does not "
                "allow (team.allow_join is false; {team_file}); ask IT"
            ).format(team_file=station.paths.team_file)
        )
    return joined.url


def team_connection(station: Station) -> TeamConnection | None:
    """The team server this home's store is on, or None for the local store."""
    url = team_url(station)
    if url is None:
        return None
    from outreach_station.storage.postgres import TeamConnection

    return TeamConnection(url)
