"""The audit trail: a hash-chained, append-only JSON Lines log of lifecycle events.

The log shows that an account was the organisation's and was used at work; IT
ships it to a log collector. It records *that* something happened to a persona,
never what a person saw or typed: no page content, no URLs, no secrets. The
`detail` validation below is there to make that hard to get wrong.

File format (one record per line, UTF-8, each line ending in ``\\n``)::

    {"seq":1,"time":"2026-11-03T09:15:02.123456Z","user":"anna","host":"ws-12",
     "event":"persona.opened","persona":"p-7","platform":"instagram",
     "detail":{},"prev":"000...000","hash":"9f2c..."}

Fields appear in exactly that order, with no whitespace and non-ASCII text
unescaped. ``hash`` is the SHA-256 hex digest of the UTF-8 bytes of
``json.dumps(record_without_hash, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``; ``prev`` is the previous record's ``hash``, or
`GENESIS` (64 zeros) for the first record. Anyone can re-check a log with a
few lines of Python or jq from this description.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from outreach_station.clock import iso_micro, parse_iso_micro, utcnow
from outreach_station.errors import (
    EnvironmentProblem,
    IntegrityError,
    SecurityError,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.events import EventName
from outreach_station.fsutil import ensure_private_dir, fsync_dir
from outreach_station.i18n import N_, _, ngettext
from outreach_station.paths import StationPaths
from outreach_station.paths import current as current_paths
from outreach_station.storage import (
    AnchorRow,
    AnchorStore,
    existing_anchor_store,
    open_anchor_store,
)

if TYPE_CHECKING:
    from outreach_station.secret_store import KeyringBackend

GENESIS: Final = "0" * 64
AUDIT_FILE_NAME: Final = "audit.jsonl"

MAX_DETAIL_KEYS: Final = 12
MAX_DETAIL_KEY_LENGTH: Final = 32
MAX_DETAIL_STR_LENGTH: Final = 200
# Keeps ints exactly representable for log collectors that parse JSON numbers as doubles.
MAX_DETAIL_INT: Final = 2**53 - 1
MAX_ID_LENGTH: Final = 64

_FIELDS: Final = (
    "seq",
    "time",
    "user",
    "host",
    "event",
    "persona",
    "platform",
    "detail",
    "prev",
    "hash",
)
_TAIL_CHUNK: Final = 64 * 1024

DetailValue = str | int | bool


@dataclass(frozen=True)
class AuditEvent:
    """One record of the audit trail, as written or as read back."""

    seq: int
    time: datetime
    user: str
    host: str
    event: EventName
    persona: str | None
    platform: str | None
    # Read-only view; left out of __hash__ because a mapping is not hashable.
    detail: Mapping[str, DetailValue] = field(hash=False)
    prev: str
    hash: str

    def to_record(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in file order."""
        return {
            "seq": self.seq,
            "time": format_time(self.time),
            "user": self.user,
            "host": self.host,
            "event": self.event.value,
            "persona": self.persona,
            "platform": self.platform,
            "detail": dict(sorted(self.detail.items())),
            "prev": self.prev,
            "hash": self.hash,
        }

    def to_line(self) -> str:
        """The record's one canonical line in the file, without the newline."""
        return json.dumps(self.to_record(), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class VerifyResult:
    """The verdict of `AuditLog.verify`.

    `count` is the number of records found intact before the first bad line
    (all of them when `ok`); `last_hash` is the hash of the last intact record,
    which a caller can keep elsewhere as an anchor for a later `verify`.
    """

    ok: bool
    count: int
    first_bad_line: int | None
    reason: str | None
    last_hash: str | None = None


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a ``Z``, the only time form in the log."""
    return iso_micro(moment)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex over the canonical JSON of every field except ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def default_path(paths: StationPaths | None = None) -> Path:
    """Where the audit log lives unless a policy puts it elsewhere."""
    return (paths or current_paths()).logs / AUDIT_FILE_NAME


# Key words that name page content, places visited or secrets. Keys are
# snake_case, so matching whole words avoids refusing e.g. "security" for "uri".
_FORBIDDEN_KEY_WORDS: Final = frozenset(
    {
        "url", "uri", "href", "link", "domain", "query", "search",
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "cookie",
        "credential", "otp", "totp", "pin", "key", "seed",
        "card", "pan", "cvv", "cvc", "iban", "account_number", "ssn",
        "content", "html", "page", "body", "text", "message", "title", "screenshot",
    }
)  # fmt: skip
# Allowed although they contain a forbidden word: identifiers of keys are not keys.
_ALLOWED_KEY_EXCEPTIONS: Final = frozenset({"key_id", "key_version"})
# Substrings refused anywhere in a key, because no harmless key contains them.
_FORBIDDEN_KEY_SUBSTRINGS: Final = (
    "password",
    "passphrase",
    "secret",
    "token",
    "cookie",
    "credential",
)
_KEY_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*")
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A run of 13 or more digits, optionally grouped by single spaces or dashes:
# every payment card number looks like this. Deliberately not Luhn-gated, so a
# caller cannot pass one value today and have a similar one refused tomorrow.
_CARD_LIKE: Final = re.compile(r"\d(?:[ -]?\d){12,}")
_URL_LIKE: Final = re.compile(
    r"[a-z][a-z0-9+.-]*://"  # any scheme://
    r"|\b(?:mailto|javascript|data|file|about|chrome|blob):"
    r"|\bwww\."
    r"|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}(?::\d+)?/",  # host.tld/path
    re.IGNORECASE,
)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise UsageError(_("audit detail keys must be strings"))
    if len(key) > MAX_DETAIL_KEY_LENGTH or not _KEY_PATTERN.fullmatch(key):
        raise UsageError(
            _(
                "audit detail key {key!r} is not snake_case "
                "(a-z, 0-9, _; at most {limit} characters)"
            ).format(key=key[:MAX_DETAIL_KEY_LENGTH], limit=MAX_DETAIL_KEY_LENGTH)
        )
    if key in _ALLOWED_KEY_EXCEPTIONS:
        return key
    words = key.split("_")
    # Singular and plural both name the same thing ("cookies", "urls").
    stems = {word.removesuffix("s") for word in words} | set(words)
    if (
        stems & _FORBIDDEN_KEY_WORDS
        or key in _FORBIDDEN_KEY_WORDS
        or any(sub in key for sub in _FORBIDDEN_KEY_SUBSTRINGS)
    ):
        raise UsageError(
            _(
                "audit detail key {key!r} is refused: the audit trail never records "
                "page content, addresses visited or secrets"
            ).format(key=key)
        )
    return key


def _check_value(key: str, value: object) -> DetailValue:
    # The value itself never goes into a message: it may be the secret.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_DETAIL_INT:
            raise UsageError(_("audit detail {key!r} is an integer out of range").format(key=key))
        if _CARD_LIKE.fullmatch(str(abs(value))):
            raise UsageError(
                _("audit detail {key!r} is refused: it looks like a card number").format(key=key)
            )
        return value
    if isinstance(value, str):
        if len(value) > MAX_DETAIL_STR_LENGTH:
            raise UsageError(
                _("audit detail {key!r} is longer than {limit} characters").format(
                    key=key, limit=MAX_DETAIL_STR_LENGTH
                )
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                _("audit detail {key!r} is not valid Unicode text").format(key=key)
            ) from None
        if _CONTROL.search(value):
            raise UsageError(_("audit detail {key!r} contains control characters").format(key=key))
        if _CARD_LIKE.search(value):
            raise UsageError(
                _("audit detail {key!r} is refused: it looks like a card number").format(key=key)
            )
        if _URL_LIKE.search(value):
            raise UsageError(
                _("audit detail {key!r} is refused: it looks like a URL").format(key=key)
            )
        return value
    raise UsageError(
        _("audit detail {key!r} must be a string, integer or boolean, not {kind}").format(
            key=key, kind=type(value).__name__
        )
    )


def validate_detail(detail: Mapping[str, object] | None) -> dict[str, DetailValue]:
    """Check a detail mapping for `AuditLog.append`; raise `UsageError` if it is refused.

    Flat, at most `MAX_DETAIL_KEYS` snake_case keys, values str/int/bool of
    bounded size; keys that name secrets, addresses or page content and values
    that look like a URL or a card number are refused.
    """
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise UsageError(_("audit detail must be a mapping"))
    if len(detail) > MAX_DETAIL_KEYS:
        raise UsageError(_("audit detail has more than {limit} keys").format(limit=MAX_DETAIL_KEYS))
    checked: dict[str, DetailValue] = {}
    for raw_key, value in detail.items():
        key = _check_key(raw_key)
        checked[key] = _check_value(key, value)
    return dict(sorted(checked.items()))


def _check_id(kind: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _ID_PATTERN.fullmatch(value):
        raise UsageError(
            _(
                "audit {kind} must be an identifier (letters, digits, . _ -; "
                "at most {limit} characters)"
            ).format(kind=kind, limit=MAX_ID_LENGTH)
        )
    return value


def _event_name(event: EventName | str) -> EventName:
    try:
        return EventName(event)
    except ValueError:
        known = ", ".join(e.value for e in EventName)
        raise UsageError(
            _("unknown audit event {event!r}; known events: {known}").format(
                event=event, known=known
            )
        ) from None


def _os_user() -> str:
    # The account the process runs as, not $USER/$LOGNAME, which anyone can set.
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


class _BadRecord(Exception):
    """A line that is not a well-formed record; only used inside this module."""


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRecord(_("not valid UTF-8")) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise _BadRecord(_("not valid JSON")) from None
    if not isinstance(data, dict):
        raise _BadRecord(_("not a JSON object"))
    if tuple(data) != _FIELDS:
        raise _BadRecord(_("fields missing, extra or out of order"))
    return data


def _parse_record(raw: bytes) -> AuditEvent:
    """Parse one line (without its newline) into an event; it must be canonical."""
    data = _decode(raw)
    text = raw.decode("utf-8")
    seq, when, user, host = data["seq"], data["time"], data["user"], data["host"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _BadRecord(_("seq is not a positive integer"))
    try:
        moment = parse_iso_micro(when)
    except (TypeError, ValueError):
        raise _BadRecord(_("time is not UTC ISO-8601 ending in Z")) from None
    if not isinstance(user, str) or not isinstance(host, str):
        raise _BadRecord(_("user or host is not a string"))
    try:
        event = EventName(data["event"])
    except ValueError:
        raise _BadRecord(_("unknown event name")) from None
    persona, platform = data["persona"], data["platform"]
    if not (persona is None or isinstance(persona, str)) or not (
        platform is None or isinstance(platform, str)
    ):
        raise _BadRecord(_("persona or platform is neither a string nor null"))
    detail = data["detail"]
    if not isinstance(detail, dict) or not all(
        isinstance(v, str | int | bool) for v in detail.values()
    ):
        raise _BadRecord(_("detail is not a flat object of strings, integers and booleans"))
    prev, digest = data["prev"], data["hash"]
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise _BadRecord(_("prev is not a SHA-256 hex digest"))
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise _BadRecord(_("hash is not a SHA-256 hex digest"))
    record = AuditEvent(
        seq=seq,
        time=moment,
        user=user,
        host=host,
        event=event,
        persona=persona,
        platform=platform,
        detail=MappingProxyType(dict(detail)),
        prev=prev,
        hash=digest,
    )
    # Byte-for-byte canonical form: no edit, however harmless it looks, goes unseen.
    if record.to_line() != text:
        raise _BadRecord(_("line is not in canonical form (edited?)"))
    if record_hash(data) != digest:
        raise _BadRecord(_("hash does not match the record's content (edited?)"))
    return record


def parse_line(raw: bytes) -> AuditEvent:
    """One record line (without its newline), which must be canonical; `ValueError` says why not."""
    try:
        return _parse_record(raw)
    except _BadRecord as bad:
        raise ValueError(str(bad)) from None


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without newlines) and the incomplete rest after the last newline."""
    *lines, rest = data.split(b"\n")
    return lines, rest


def _records_text(count: int) -> str:
    return ngettext("{n} record", "{n} records", count).format(n=count)


@dataclass(frozen=True)
class ChainHead:
    """The chain's head as the anchor last saw it: `count` records, the last with `last_hash`.

    `pending` is the hash of a record being appended at that moment: a crash
    between writing it and moving the head leaves exactly that record after
    the head, which is then not a forgery.
    """

    count: int
    last_hash: str
    pending: str | None = None


# Anchor keys read from the keyring by this process, by keyring entry.
_ANCHOR_KEYS: dict[str, bytes] = {}


class ChainAnchor:
    """The head of one audit log, kept beside the registry under a MAC keyed in the OS keyring.

    The log alone cannot show a tail cut cleanly between records, an emptied
    or deleted file, or a chain rewritten from some record to the end: what
    is left is a valid chain. The anchor remembers how long the chain was and
    how it ended, in a place a person editing their files does not rewrite
    along with the log, and with a MAC they cannot recompute without reading
    the key out of their keyring. Every anchored record's hash is kept too,
    so that `verify` names the first rewritten record.

    Without a usable OS keyring (a machine in passphrase mode, say) the head
    is stored without a MAC: it still catches a cut, emptied, deleted or
    rewritten log, but not someone who edits the anchor's file along with it.

    The anchor has its own SQLite file (`StationPaths.audit_anchor`) rather
    than a table in the registry: records are appended while a registry
    write transaction is open (a kit change), which a second writer on the
    same database would wait for.
    Once a key exists for the log, a head without a valid MAC is refused.
    """

    ENTRY_PREFIX: Final = "audit-anchor/"

    def __init__(self, store: Path, log: Path) -> None:
        self.store = store
        # Not resolve(): a log replaced by a symlink must not become another log.
        self.log_id = os.path.abspath(log)
        digest = hashlib.sha256(self.log_id.encode("utf-8")).hexdigest()[:16]
        self.entry = self.ENTRY_PREFIX + digest

    def _keyring(self) -> KeyringBackend | None:
        from outreach_station import secret_store

        try:
            return secret_store.check_backend()
        except StationError:
            return None  # no OS-protected keyring here: the head is kept without a MAC

    def _mac(self, key: bytes, count: int, last_hash: str, pending: str | None) -> str:
        message = f"outreach-station audit anchor\n{self.log_id}\n{count}\n{last_hash}\n"
        message += pending or ""
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def _checked(
        self, row: AnchorRow | None, keyring: KeyringBackend | None, key: bytes | None
    ) -> ChainHead | None:
        where = _("the audit anchor of {log} in {store}").format(log=self.log_id, store=self.store)
        if row is None:
            if key is not None:
                raise IntegrityError(
                    _(
                        "{where} is missing although the OS keyring holds its key (the anchor's "
                        "file was edited or replaced); keep both as evidence and report it to IT"
                    ).format(where=where)
                )
            return None
        if row.mac is None:
            if key is not None:
                raise IntegrityError(
                    _(
                        "{where} has lost its MAC (edited outside station); keep its file and "
                        "the log as evidence and report it to IT"
                    ).format(where=where)
                )
        elif key is None:
            if keyring is None:
                raise EnvironmentProblem(
                    _(
                        "{where} can only be checked with its key in the OS keyring, and no "
                        "usable keyring is available; log in to the desktop session and retry"
                    ).format(where=where)
                )
            raise IntegrityError(
                _(
                    "the key of {where} is missing from the OS keyring (deleted outside "
                    "station); report it to IT"
                ).format(where=where)
            )
        elif not hmac.compare_digest(
            row.mac, self._mac(key, row.count, row.last_hash, row.pending)
        ):
            raise IntegrityError(
                _(
                    "{where} fails its MAC check: it was edited outside station; keep its file "
                    "and the log as evidence and report it to IT"
                ).format(where=where)
            )
        return ChainHead(count=row.count, last_hash=row.last_hash, pending=row.pending)

    def _key(self, keyring: KeyringBackend | None) -> bytes | None:
        from outreach_station import secret_store

        if keyring is None:
            return None
        return secret_store.read_key(self.entry, what=N_("master key"), backend=keyring)

    def head(self) -> tuple[ChainHead | None, dict[int, str]]:
        """The checked head (None before the first anchored record) and the anchored hashes."""
        keyring = self._keyring()
        key = self._key(keyring)
        found = existing_anchor_store(self.store)
        if found is None:
            return self._checked(None, keyring, key), {}
        with found as db:
            return self._checked(db.row(self.log_id), keyring, key), db.hashes(self.log_id)

    def restart(self) -> None:
        """Anchor an empty chain, once a damaged log has been set aside (`AuditLog.restart`)."""
        keyring = self._keyring()
        key = self._key(keyring)
        if key is None and keyring is not None:
            from outreach_station import secret_store

            key = secrets.token_bytes(secret_store.KEY_BYTES)
            secret_store.store_key(self.entry, key, what=N_("master key"), backend=keyring)
        mac = self._mac(key, 0, GENESIS, None) if key is not None else None
        with open_anchor_store(self.store) as db, db.transaction():
            db.reset(self.log_id, AnchorRow(count=0, last_hash=GENESIS, pending=None, mac=mac))

    @contextlib.contextmanager
    def advancing(self) -> Iterator[_Advance]:
        """Hold the anchor while one record is appended (the caller holds the log's lock)."""
        key = _ANCHOR_KEYS.get(self.entry)
        keyring = None
        if key is None:
            # The keyring costs tens of milliseconds a call: once per process and log.
            keyring = self._keyring()
            key = self._key(keyring)
        with open_anchor_store(self.store) as db:
            head = self._checked(db.row(self.log_id), keyring, key)
            if key is None and keyring is not None:
                # First anchored record of this log (or the first with a keyring here).
                from outreach_station import secret_store

                key = secrets.token_bytes(secret_store.KEY_BYTES)
                secret_store.store_key(self.entry, key, what=N_("master key"), backend=keyring)
            if key is not None:
                _ANCHOR_KEYS[self.entry] = key
            yield _Advance(self, db, head, key)


class _Advance:
    """One append's two steps on the anchor: announce the record, then move the head to it."""

    def __init__(
        self,
        anchor: ChainAnchor,
        db: AnchorStore | None,
        head: ChainHead | None,
        key: bytes | None,
    ) -> None:
        self._anchor = anchor
        self._db = db
        self._key = key
        self.head = head
        self._carried: dict[int, str] = {}

    def check(self, path: Path, last: AuditEvent | None) -> None:
        """Refuse to chain onto a log that does not end where the anchor says it does."""
        head = self.head
        if head is None:
            return  # a log from before anchoring, or a new one: adopted as it is
        problem: str | None = None
        if last is None:
            if head.count:
                problem = _(
                    "{missing} missing from the end (the log was emptied or deleted)"
                ).format(missing=_records_text(head.count))
        elif last.seq == head.count and last.hash == head.last_hash:
            return
        elif (last.seq, last.prev, last.hash) == (head.count + 1, head.last_hash, head.pending):
            self._carried[last.seq] = last.hash  # written just before a crash: anchor it now
            return
        elif last.seq < head.count:
            problem = _("{missing} missing from the end").format(
                missing=_records_text(head.count - last.seq)
            )
        else:
            problem = _("its last record (seq {seq}) does not match the anchor").format(
                seq=last.seq
            )
        if problem is not None:
            raise IntegrityError(
                _(
                    "audit log {path} does not match its anchor: {problem}; refusing to append "
                    "to it, run `station audit verify` and report it to IT"
                ).format(path=path, problem=problem)
            )

    def _store(self, count: int, last_hash: str, pending: str | None) -> None:
        mac = (
            self._anchor._mac(self._key, count, last_hash, pending)
            if self._key is not None
            else None
        )
        row = AnchorRow(count=count, last_hash=last_hash, pending=pending, mac=mac)
        if self._db is None:
            raise RuntimeError("a checking-only anchor step cannot store")
        with self._db.transaction():
            self._db.store(self._anchor.log_id, row, self._carried)

    def announce(self, last: AuditEvent | None, record: AuditEvent) -> None:
        """Before the write: the head stays, and names the record about to follow it."""
        count, last_hash = (last.seq, last.hash) if last is not None else (0, GENESIS)
        self._store(count, last_hash, record.hash)

    def advance(self, record: AuditEvent) -> None:
        """After the write is durable: the head is the new record."""
        self._carried[record.seq] = record.hash
        self._store(record.seq, record.hash, None)


class _Unanchored:
    """Stands in for `_Advance` when a log has no anchor (tests, a log copied for study)."""

    head: ChainHead | None = None

    def check(self, path: Path, last: AuditEvent | None) -> None:
        return None

    def announce(self, last: AuditEvent | None, record: AuditEvent) -> None:
        return None

    def advance(self, record: AuditEvent) -> None:
        return None


class AuditLog:
    """The audit log at `path`: append under an exclusive lock, read, verify.

    Several processes may append at once: each append takes an exclusive
    `fcntl.flock` on the file, reads the last record's hash and seq under that
    lock, writes one line and fsyncs before unlocking, so lines never
    interleave and the chain never forks. Readers take a shared lock and so
    never see half a line from a live writer.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        anchor: ChainAnchor | None = None,
    ) -> None:
        self.path = path
        self._clock = clock or utcnow
        self.anchor = anchor

    def _anchored(self) -> contextlib.AbstractContextManager[_Advance | _Unanchored]:
        if self.anchor is None:
            return contextlib.nullcontext(_Unanchored())
        return self.anchor.advancing()

    def check_appendable(self) -> None:
        """Raise what `append` would raise about the file, before a caller changes anything.

        An action and its record must not come apart: a command checks this
        first, so that a log that is a symbolic link (`SecurityError`),
        unreadable (`EnvironmentProblem`), damaged at its end or cut short
        against its anchor (`IntegrityError`) stops it before it changes state.
        """
        if not os.path.lexists(self.path):
            # Not created here: a check changes nothing. Where it would go must be writable.
            where = next(p for p in (self.path.parent, *self.path.parents) if p.exists())
            if not os.access(where, os.W_OK):
                raise EnvironmentProblem(
                    _("cannot create audit log {path}: {where} is read-only").format(
                        path=self.path, where=where
                    )
                )
            self._check_head(None)
            return
        fd = self._open_for_append()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last, _fragment = self._tail(fd)
            self._check_head(last)
        finally:
            os.close(fd)

    def _check_head(self, last: AuditEvent | None) -> None:
        if self.anchor is not None:
            head, _hashes = self.anchor.head()
            if head is not None:
                _Advance(self.anchor, None, head, None).check(self.path, last)

    def append(
        self,
        event: EventName | str,
        *,
        persona: str | None = None,
        platform: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Append one record and return it.

        Refused with `UsageError` before anything is written if the event is
        unknown, an id is malformed or `detail` breaks the rules of
        `validate_detail`. If the log ends in half a line (a crash during a
        write) that fragment is kept as evidence, closed with a newline, and
        the chain continues from the last whole record; `verify` will keep
        naming the fragment. If the last whole line is not a valid record the
        log has been altered and the append is refused with `IntegrityError`
        rather than chaining onto it.
        """
        name = _event_name(event)
        persona_id = _check_id("persona", persona)
        platform_id = _check_id("platform", platform)
        checked = validate_detail(detail)

        fd = self._open_for_append()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._anchored() as step:
                last, fragment = self._tail(fd)
                step.check(self.path, last)
                record = self._next(
                    last, name, persona=persona_id, platform=platform_id, detail=checked
                )
                data = record.to_line().encode("utf-8") + b"\n"
                if fragment:
                    data = b"\n" + data
                step.announce(last, record)
                _write_all(fd, data)
                os.fsync(fd)
                step.advance(record)
        finally:
            os.close(fd)  # also releases the lock
        return record

    def restart(self) -> tuple[Path | None, AuditEvent]:
        """Set a damaged log aside as evidence and start a new chain whose first record says so.

        Refused (`StateError`) while the log is intact. The damaged file is
        renamed, never changed, and the new chain's first record names it and
        how far it was intact, so the restart itself is on the record that
        the log collector receives.
        """
        if self.anchor is None:
            raise UsageError(
                _("audit log {path} has no anchor; nothing to restart").format(path=self.path)
            )
        try:
            # This file's verdict, also in a team (where `verify` judges the server's trail).
            verdict = AuditLog.verify(self)
        except IntegrityError as exc:  # the anchor itself was tampered with
            verdict = VerifyResult(False, 0, None, exc.message)
        if verdict.ok:
            raise StateError(
                _("audit log {path} is intact; there is nothing to restart").format(path=self.path)
            )
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        evidence = self.path.with_name(f"{self.path.name}.broken-{stamp}")
        if os.path.lexists(evidence):
            raise StateError(
                _("{evidence} exists already; try again in a second").format(evidence=evidence)
            )
        kept: Path | None = None
        if os.path.lexists(self.path):
            os.rename(self.path, evidence)
            kept = evidence
        self.anchor.restart()
        record = self.append(
            EventName.AUDIT_RESTARTED,
            detail={
                "set_aside": kept.name if kept is not None else "none",
                "intact_records": verdict.count,
                "first_bad_line": verdict.first_bad_line or 0,
            },
        )
        return kept, record

    def _next(
        self,
        last: AuditEvent | None,
        name: EventName,
        *,
        persona: str | None,
        platform: str | None,
        detail: dict[str, DetailValue],
    ) -> AuditEvent:
        """The record that follows `last`; called under the log's lock."""
        # Time is read under the lock so file order and time order agree
        # (unless the system clock itself steps back).
        body: dict[str, Any] = {
            "seq": last.seq + 1 if last else 1,
            "time": format_time(self._clock()),
            "user": _os_user(),
            "host": socket.gethostname(),
            "event": name.value,
            "persona": persona,
            "platform": platform,
            "detail": detail,
            "prev": last.hash if last else GENESIS,
        }
        body["hash"] = record_hash(body)
        return _parse_record(
            json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        )

    def records(
        self, *, persona: str | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        """Every well-formed record, oldest first, optionally filtered.

        `persona` keeps records of that persona id; `since` (timezone-aware)
        keeps records at or after that moment. This reads, it does not judge:
        malformed lines are skipped, and `verify` is what says whether the
        log is intact.
        """
        if since is not None and since.tzinfo is None:
            raise UsageError(_("since must be timezone-aware"))
        data = self._read_all()
        lines, _rest = _split_lines(data)
        found: list[AuditEvent] = []
        for raw in lines:
            try:
                record = _parse_record(raw)
            except _BadRecord:
                continue
            if persona is not None and record.persona != persona:
                continue
            if since is not None and record.time < since:
                continue
            found.append(record)
        return found

    def verify(self, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Check the whole chain and name the first bad line and why.

        Detected: any edited byte of a record (its hash or canonical form no
        longer matches), a removed, inserted or reordered record (``prev`` no
        longer matches the hash of the line before, and ``seq`` is not one
        more than the line before), a forged record even with a correctly
        recomputed hash (the record after it no longer chains), and a tail cut
        inside a line (the last line has no newline, as after a crash during a
        write).

        Not detectable from the file alone: a tail cut cleanly at a record
        boundary (what remains is a valid shorter chain), an emptied or
        deleted file, or a rewrite that recomputes every hash from the edit
        to the end. The log's `ChainAnchor` (when it has one) catches those:
        the chain must reach the anchored head, and every anchored record
        must still have its hash. A recorded ``(seq, hash)`` pair passed as
        `anchor` (say from a log collector's copy) must be present as well.
        """
        # Read first: a keyring or anchor problem is reported before the file is judged.
        head, anchored = self.anchor.head() if self.anchor is not None else (None, {})
        data = self._read_all()
        if not data:
            return (
                _anchor_result(anchor, 0, None, {})
                or _head_result(head, anchored, {})
                or VerifyResult(True, 0, None, None)
            )
        lines, rest = _split_lines(data)
        prev_hash = GENESIS
        prev_seq = 0
        seen: dict[int, str] = {}
        for number, raw in enumerate(lines, start=1):
            try:
                record = _parse_record(raw)
            except _BadRecord as bad:
                return VerifyResult(False, len(seen), number, str(bad), _last(seen))
            problems = []
            if record.prev != prev_hash:
                what = (
                    _("the genesis value")
                    if number == 1
                    else _("the hash of line {line}").format(line=number - 1)
                )
                problems.append(_("prev does not match {what}").format(what=what))
            if record.seq != prev_seq + 1:
                problems.append(
                    _("seq is {seq}, expected {expected}").format(
                        seq=record.seq, expected=prev_seq + 1
                    )
                )
            if problems:
                reason = _("{problems} (a record was removed, inserted or reordered)").format(
                    problems="; ".join(problems)
                )
                return VerifyResult(False, len(seen), number, reason, _last(seen))
            prev_hash, prev_seq = record.hash, record.seq
            seen[record.seq] = record.hash
        if rest:
            reason = _("last line is incomplete (cut during a write, or truncated)")
            return VerifyResult(False, len(seen), len(lines) + 1, reason, _last(seen))
        return (
            _anchor_result(anchor, len(seen), len(lines) + 1, seen)
            or _head_result(head, anchored, seen)
            or VerifyResult(True, len(seen), None, None, _last(seen))
        )

    def _open_for_append(self) -> int:
        # Not checked as ours: IT may own the audit log's directory.
        ensure_private_dir(self.path.parent, ours=False)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        existed = self.path.exists()
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        if not existed:
            # Make the new directory entry durable along with the first record.
            fsync_dir(self.path.parent)
        return fd

    def _tail(self, fd: int) -> tuple[AuditEvent | None, bool]:
        """The last whole record (None if there is none) and whether a fragment follows it."""
        size = os.fstat(fd).st_size
        if size == 0:
            return None, False
        chunk = _TAIL_CHUNK
        while True:
            start = max(0, size - chunk)
            data = os.pread(fd, size - start, start)
            lines, rest = _split_lines(data)
            # The first line of a chunk that does not start at 0 may be cut.
            whole = lines if start == 0 else lines[1:]
            if whole:
                try:
                    return _parse_record(whole[-1]), bool(rest)
                except _BadRecord as bad:
                    line_no = data.count(b"\n") if start == 0 else None
                    where = (
                        _("line {line}").format(line=line_no)
                        if line_no
                        else _("its last whole line")
                    )
                    raise IntegrityError(
                        _(
                            "audit log {path} is damaged at {where} ({bad}); "
                            "refusing to chain onto it, run `station audit verify`"
                        ).format(path=self.path, where=where, bad=bad)
                    ) from None
            if start == 0:
                return None, bool(rest)
            chunk *= 2

    def _read_all(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            chunks = []
            while block := os.read(fd, 1 << 20):
                chunks.append(block)
            return b"".join(chunks)
        finally:
            os.close(fd)


def default_log() -> AuditLog:
    """The audit log at its default location in the current station home."""
    return AuditLog(default_path())


def _last(seen: dict[int, str]) -> str | None:
    return next(reversed(seen.values()), None)


def _anchor_result(
    anchor: tuple[int, str] | None, count: int, next_line: int | None, seen: dict[int, str]
) -> VerifyResult | None:
    if anchor is None:
        return None
    seq, digest = anchor
    if seen.get(seq) == digest:
        return None
    if seq in seen:
        reason = _("record {seq} does not match the anchor (the log was rewritten)").format(seq=seq)
        return VerifyResult(False, count, seq, reason, _last(seen))
    reason = _("record {seq} named by the anchor is missing (the log was truncated)").format(
        seq=seq
    )
    return VerifyResult(False, count, next_line or 1, reason, _last(seen))


def _head_result(
    head: ChainHead | None, anchored: Mapping[int, str], seen: dict[int, str]
) -> VerifyResult | None:
    """The verdict of an intact-looking chain against the anchor's head (None: it agrees)."""
    if head is None:
        return None
    count = len(seen)
    # The first anchored record the log no longer has as it was.
    rewritten = next(
        (seq for seq, digest in sorted(anchored.items()) if seq <= count and seen[seq] != digest),
        None,
    )
    if (
        rewritten is None
        and head.count
        and count >= head.count
        and seen[head.count] != head.last_hash
    ):
        rewritten = head.count
    if rewritten is not None:
        return VerifyResult(
            False,
            rewritten - 1,
            rewritten,
            _("record {seq} does not match the anchor (the log was rewritten from there)").format(
                seq=rewritten
            ),
            seen.get(rewritten - 1),
        )
    if count < head.count:
        missing = _records_text(head.count - count)
        return VerifyResult(
            False,
            count,
            count + 1,
            _("{missing} missing from the end (the log was cut, emptied or deleted)").format(
                missing=missing
            ),
            _last(seen),
        )
    extra = count - head.count
    if extra == 1 and seen[count] == head.pending:
        return None  # written just before a crash, announced to the anchor beforehand
    if extra:
        return VerifyResult(
            False,
            head.count,
            head.count + 1,
            _(
                "{extra} after record {seq} were not written by station (added behind the anchor)"
            ).format(extra=_records_text(extra), seq=head.count),
            seen.get(head.count),
        )
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_error(path: Path, exc: OSError) -> Exception:
    if exc.errno == errno.ELOOP:
        return SecurityError(
            _("audit log {path} is a symbolic link; refusing to follow it").format(path=path)
        )
    return EnvironmentProblem(
        _("cannot open audit log {path}: {strerror}").format(path=path, strerror=exc.strerror)
    )


def parse_since(text: str) -> datetime:
    """Parse a `--since` value: a date or an ISO-8601 date-time.

    A date means the start of that day, and a date-time without an offset is
    taken in the machine's local time zone, because that is what a person
    typing it means; ``Z`` or an offset are honoured as given.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            _(
                "cannot read {text!r} as a date; use YYYY-MM-DD or an ISO-8601 date-time "
                "such as 2026-11-03T09:00 or 2026-11-03T09:00Z"
            ).format(text=text)
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local time
    return moment.astimezone(UTC)
