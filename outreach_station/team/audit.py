"""The team's one audit trail: every laptop's records on the server, in one chain.

In a team, `Station.audit` is a `TeamAuditLog`. Each record is written
first to this laptop's own log, exactly as outside a team (hash-chained,
anchored, shipped by IT's log collector), and then copied to the server's
`audit_records`, where it is chained again into the one trail of the whole
team: the copy keeps the record's time, host, event, persona, platform and
detail, names the member (the ``user`` field is the member id; the row's
``member`` and ``host`` columns must agree with it), and carries the trail's
own ``seq`` and ``prev``. Its text is a line of the local log's format
(`outreach_station.audit`), so the same few lines of Python or jq check both.

Why the local log stays: it is the queue. A record is never lost because
the server is away (a session goes on when the server is lost): what the
server has not got yet waits in the local log, and is sent, in order, with
the next record written on this laptop or the next `station audit`. A laptop
remembers how far it sent (`StationPaths.team_audit_sent`); each copy names
its local record (``origin``, its hash) and the server keeps one copy per
origin, so a record sent again after a lost reply is not stored twice. And
a laptop's own log is a second copy that whoever owns the database cannot
rewrite.

Records written before this home was in a team stay on the laptop: the
first record sent is the first written in team mode.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outreach_station.audit import (
    GENESIS,
    AuditEvent,
    AuditLog,
    ChainAnchor,
    VerifyResult,
    format_time,
    parse_line,
    record_hash,
)
from outreach_station.errors import StationError, UsageError
from outreach_station.events import EventName
from outreach_station.i18n import _, ngettext

# A kept audit connection idle longer than this is replaced, not trusted.
_LINK_IDLE_SECONDS = 60.0

if TYPE_CHECKING:
    from outreach_station.context import Station
    from outreach_station.storage.postgres import AuditRecord, PostgresStore
    from outreach_station.team.config import TeamFile


@dataclass(frozen=True)
class TeamAuditEvent(AuditEvent):
    """A record of the team's trail, with the member the server stored it under."""

    member: str = ""

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "member": self.member}

    def to_line(self) -> str:
        return AuditEvent(**{k: getattr(self, k) for k in _EVENT_FIELDS}).to_line()


_EVENT_FIELDS = tuple(f for f in AuditEvent.__dataclass_fields__)


@dataclass(frozen=True)
class _Sent:
    """How far this laptop's log was copied: its last record sent, and that copy on the trail."""

    local_seq: int
    local_hash: str
    trail_seq: int = 0
    trail_hash: str = GENESIS


_SIGNED_LABEL = b"outreach-station team audit record v1\x00"


def record_statement(team_id: str, record_hash: str) -> bytes:
    """What a member signs for a record of the team's trail: the team and the record's hash.

    The hash covers every field and the hash of the record before, so the
    signature holds the record's place in the chain as well as its content.
    """
    return _SIGNED_LABEL + team_id.encode("ascii") + b"\x00" + record_hash.encode("ascii")


def _copy(
    local: AuditEvent, member: str, sign: Callable[[bytes], bytes], team_id: str
) -> Callable[[AuditRecord | None], tuple[str, str, bytes]]:
    """The trail's record for `local`, chained onto the trail's last record, and signed."""

    def make(last: AuditRecord | None) -> tuple[str, str, bytes]:
        body: dict[str, Any] = {
            "seq": _position(last) + 1,
            "time": format_time(local.time),
            "user": member,
            "host": local.host,
            "event": local.event.value,
            "persona": local.persona,
            "platform": local.platform,
            "detail": dict(sorted(local.detail.items())),
            "prev": last.hash if last is not None else GENESIS,
        }
        body["hash"] = record_hash(body)
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return text, body["hash"], sign(record_statement(team_id, body["hash"]))

    return make


def _position(row: AuditRecord | None) -> int:
    """The chain position of a stored record (the row's own seq may have gaps)."""
    if row is None:
        return 0
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        seq = json.loads(row.record).get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return row.seq  # a damaged last record: chain on; `verify` names it


class TeamAuditLog(AuditLog):
    """This laptop's audit log, copied to the team's trail; read and verified on the server."""

    def __init__(self, path: Path, *, anchor: ChainAnchor | None, station: Station) -> None:
        super().__init__(path, anchor=anchor)
        self._station = station
        # Set when a send failed: the rest of this command's records wait
        # without trying again, so a server that is away costs one timeout.
        self._away = False
        self._link: PostgresStore | None = None
        self._link_used = 0.0
        self._link_lock = threading.RLock()

    @property
    def where(self) -> str:
        """The team server, for messages."""
        from outreach_station.team.config import team_connection

        connection = team_connection(self._station)
        return connection.where if connection is not None else "?"

    @contextlib.contextmanager
    def _server(self) -> Iterator[PostgresStore]:
        # Its own connection: a record may be written while the command's store
        # has a transaction open (a kit change), and a rollback of that must
        # not take the audit record with it. Kept for the records that follow
        # soon after (a command writes several); one idle longer than
        # _LINK_IDLE_SECONDS (a whole browser session) is not trusted: a new one.
        import time

        from outreach_station.storage.postgres import PostgresStore
        from outreach_station.team.config import team_connection

        with self._link_lock:
            link = self._link
            if link is not None and time.monotonic() - self._link_used > _LINK_IDLE_SECONDS:
                self._drop_link()
                link = None
            if link is None:
                connection = team_connection(self._station)
                if connection is None:
                    raise UsageError(
                        _("this station home is not in a team; run station team join URL")
                    )
                link = PostgresStore(connection, password=self._station.team_password(connection))
                self._station.keep_open(link)
                self._link = link
            try:
                yield link
            except BaseException:
                self._drop_link()  # a broken connection is never reused
                raise
            self._link_used = time.monotonic()

    def _signer(self, joined: TeamFile) -> Callable[[bytes], bytes]:
        """This member's signing, its key read from the keyring once per command."""
        return self._station.member_key(joined.team_id).sign

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                link.close()

    def append(
        self,
        event: EventName | str,
        *,
        persona: str | None = None,
        platform: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Write the record to this laptop's log, then send the server what it lacks."""
        record = super().append(event, persona=persona, platform=platform, detail=detail)
        self.send(written=record)
        return record

    # ------------------------------------------------------------ sending

    @contextlib.contextmanager
    def _sending(self) -> Iterator[None]:
        """One sender per home at a time, so two commands never send a record twice."""
        from outreach_station.storage.locks import held_lock

        with held_lock(self._station.paths.locks / "team-audit.lock"):
            yield

    def _sent(self) -> _Sent | None:
        path = self._station.paths.team_audit_sent
        try:
            data = json.loads(path.read_bytes())
            return _Sent(
                local_seq=int(data["local_seq"]),
                local_hash=str(data["local_hash"]),
                trail_seq=int(data["trail_seq"]),
                trail_hash=str(data["trail_hash"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # Damaged: start again from this log's first record; the server
            # keeps one copy of each, so nothing is stored twice.
            return _Sent(local_seq=0, local_hash="", trail_seq=0, trail_hash=GENESIS)

    def _keep(self, sent: _Sent) -> None:
        from outreach_station.fsutil import write_atomic

        data = {
            "local_seq": sent.local_seq,
            "local_hash": sent.local_hash,
            "trail_seq": sent.trail_seq,
            "trail_hash": sent.trail_hash,
        }
        write_atomic(self._station.paths.team_audit_sent, json.dumps(data).encode("utf-8"))

    def _waiting(self, sent: _Sent) -> list[AuditEvent]:
        """This log's records after the last one sent, oldest first."""
        after: list[AuditEvent] = []
        # From the end: only the records not sent yet are parsed, however long the log.
        for raw in reversed(self._read_all().split(b"\n")):
            try:
                record = parse_line(raw)
            except ValueError:
                continue  # a fragment or a damaged line: `station audit verify` here names it
            if record.seq <= sent.local_seq:
                if (record.seq, record.hash) == (sent.local_seq, sent.local_hash):
                    return after[::-1]
                break
            after.append(record)
        # The last record sent is gone (the log was restarted or replaced, or
        # the mark damaged): offer all of it; the server skips what it holds.
        return AuditLog.records(self)

    def waiting(self) -> int:
        """How many of this laptop's records the team's trail does not hold yet."""
        sent = self._sent()
        return 0 if sent is None else len(self._waiting(sent))

    def send(self, *, written: AuditEvent | None = None) -> int:
        """Copy to the server, in order, what it lacks; how many records still wait.

        `written` is the record just appended; the first one in team mode
        starts the copying. A server that cannot be reached (or refuses) is
        said in one line through the station's notify and the records stay
        waiting in the local log: nothing is lost, and they go with the next
        record or `station audit`.
        """
        from outreach_station.team.config import read_team_file

        with self._sending():
            sent = self._sent()
            if sent is None:
                if written is None:
                    return 0
                sent = _Sent(local_seq=written.seq - 1, local_hash=written.prev)
                self._keep(sent)
            waiting = self._waiting(sent)
            if not waiting:
                return 0
            joined = read_team_file(self._station.paths)
            if joined is None or (self._away and written is not None):
                # Not joined yet (in a team by the policy): no member to name;
                # or the server was away at this command's earlier try.
                return len(waiting)
            done = 0
            # A kept connection may have died since its last record (the server
            # restarted): that earns one more try on a new connection.
            tries = 2 if self._link is not None else 1
            while True:
                tries -= 1
                try:
                    with self._server() as server:
                        for local in waiting[done:]:
                            row = server.append_audit_record(
                                member=joined.member_id,
                                host=local.host,
                                make=_copy(
                                    local, joined.member_id, self._signer(joined), joined.team_id
                                ),
                                origin=local.hash,
                            )
                            if row is not None:
                                sent = _Sent(local.seq, local.hash, _position(row), row.hash)
                            else:
                                sent = _Sent(local.seq, local.hash, sent.trail_seq, sent.trail_hash)
                            self._keep(sent)
                            done += 1
                    return 0
                except StationError as exc:
                    if tries:
                        continue
                    self._away = True
                    left = len(waiting) - done
                    self._station.notify(
                        _(
                            "warning: the team's audit trail on {where} did not take "
                            "{records}: {problem}; they are kept on this laptop and sent with "
                            "the next record"
                        ).format(where=self.where, records=_records(left), problem=exc.message)
                    )
                    return left

    # ------------------------------------------------------------ reading

    def _rows(self) -> list[AuditRecord]:
        self.send()
        with self._server() as server:
            return server.audit_records()

    def records(
        self, *, persona: str | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        """Every well-formed record of the team's trail, oldest first, optionally filtered."""
        if since is not None and since.tzinfo is None:
            raise UsageError(_("since must be timezone-aware"))
        found: list[AuditEvent] = []
        for row in self._rows():
            try:
                record = parse_line(row.record.encode("utf-8"))
            except ValueError:
                continue  # reading does not judge: `verify` names it
            if persona is not None and record.persona != persona:
                continue
            if since is not None and record.time < since:
                continue
            fields = {k: getattr(record, k) for k in _EVENT_FIELDS}
            found.append(TeamAuditEvent(**fields, member=row.member))
        return found

    def _signatures(self) -> _Signatures | None:
        """Who may sign the trail's records, by the signed approvals; None if not joined."""
        from outreach_station.team.approvals import trusted_signing_keys
        from outreach_station.team.config import read_team_file
        from outreach_station.team.membership import pinned_founder

        joined = read_team_file(self._station.paths)
        if joined is None:
            return None
        with self._server() as server:
            rows = server.members()
            founder_id, founder_key = pinned_founder(self._station, server)
        trusted = trusted_signing_keys(
            rows, team_id=joined.team_id, founder_id=founder_id, founder_signing_key=founder_key
        )
        own = {r.member_id: r.signing_key for r in rows if r.signing_key is not None}
        return _Signatures(joined.team_id, trusted, own, required=joined.audit_signed)

    def verify(self, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Check the team's whole trail; `first_bad_line` is the first bad record's position.

        Detected: a record edited in any byte (its hash), its row's member,
        host or hash column changed, a record removed, inserted or reordered
        (``prev`` and ``seq``), a record not signed by the member it names
        (so a chain rewritten from some record to its end, every hash
        recomputed, fails at its first rewritten record on every laptop), and
        a record this laptop sent last missing or changed (the trail cut at
        its end).
        """
        rows = self._rows()
        signed = self._signatures()
        prev_hash = GENESIS
        seen: dict[int, str] = {}
        for position, row in enumerate(rows, start=1):
            count = position - 1
            last = seen.get(count)
            try:
                record = parse_line(row.record.encode("utf-8"))
            except ValueError as bad:
                return VerifyResult(False, count, position, str(bad), last)
            problems = []
            if record.prev != prev_hash:
                problems.append(_("prev does not match the hash of the record before"))
            if record.seq != position:
                problems.append(
                    _("seq is {seq}, expected {expected}").format(seq=record.seq, expected=position)
                )
            if problems:
                reason = _("{problems} (a record was removed, inserted or reordered)").format(
                    problems="; ".join(problems)
                )
                return VerifyResult(False, count, position, reason, last)
            wrong: str | None = None
            if (row.hash, row.member, row.host) != (record.hash, record.user, record.host):
                wrong = _("the row's hash, member or host does not match its record (edited?)")
            elif signed is not None:
                wrong = signed.problem(row, record)
            if wrong is not None:
                return VerifyResult(False, count, position, wrong, last)
            prev_hash = record.hash
            seen[position] = record.hash
        count = len(rows)
        sent = self._sent()
        if sent is not None and sent.trail_seq and seen.get(sent.trail_seq) != sent.trail_hash:
            where = sent.trail_seq if sent.trail_seq <= count else count + 1
            reason = _(
                "record {seq}, which this laptop sent, is missing or changed "
                "(the trail was cut or rewritten)"
            ).format(seq=sent.trail_seq)
            return VerifyResult(False, min(count, where - 1), where, reason, seen.get(where - 1))
        if anchor is not None and seen.get(anchor[0]) != anchor[1]:
            reason = _("record {seq} does not match the anchor given").format(seq=anchor[0])
            return VerifyResult(False, count, anchor[0], reason, seen.get(count))
        return VerifyResult(True, count, None, None, seen.get(count))


@dataclass(frozen=True)
class _Signatures:
    """The signing keys `verify` trusts for the trail's records."""

    team_id: str
    # Members whose approval leads back to the pinned founder.
    trusted: Mapping[str, bytes]
    # Every registered member's own key: trusted only for its own join record,
    # written while it was pending (no approval yet to check).
    own: Mapping[str, bytes]
    # The home joined a trail signed from its first record: unsigned is refused.
    required: bool

    def problem(self, row: AuditRecord, record: AuditEvent) -> str | None:
        from outreach_station.team.approvals import signature_valid

        if row.signature is None:
            if not self.required:
                return None  # sent before records were signed (docs/team.md)
            return _("the record is not signed by a member (written around station?)")
        key = self.trusted.get(record.user)
        if key is None and record.event is EventName.TEAM_JOINED:
            key = self.own.get(record.user)
        if key is None:
            return _(
                "the record is signed as {member}, who is not a member whose approval "
                "leads back to the team's founder"
            ).format(member=record.user)
        if not signature_valid(key, row.signature, record_statement(self.team_id, record.hash)):
            return _(
                "the record's signature by {member} does not verify (the record or the "
                "chain was rewritten)"
            ).format(member=record.user)
        return None


def _records(count: int) -> str:
    return ngettext("{n} record", "{n} records", count).format(n=count)
