"""A team persona's session: its lease, its data key from the team, fetch before and upload after.

`station open` in a team (`session.py`) enters `team_session` once it has
chosen the persona and before the workspace unseals:

1. the persona's lease is taken on the server with a new fencing token
   (refused at once, naming who holds it, on which laptop and since when)
   and renewed while the session runs (`sync.hold`);
2. the persona's data key is unwrapped from the key the server holds
   wrapped for this laptop's member (HPKE, `team.keys`), never taken from
   the laptop's vault, so any approved member's laptop opens what another
   sealed; a persona with no key yet gets one, wrapped for every approved
   member, and approved members without a wrap of the current key get one;
   the key is the version that sealed the server's current generation. A
   persona due for re-keying (a member was removed) also gets a fresh key,
   the next version, wrapped for the verified roster only: this session's
   generation (and a crashed one's, recovered now) is sealed with it, and its
   commit clears the due mark (`TeamKeys.start_rekey`);
3. a generation this laptop sealed and could not send before is sent with
   the new lease's token; then the server's current generation is fetched
   when the laptop's cached copy is not it (authenticated before anything
   is kept; sealed, never plaintext);
4. when the block ends (the workspace has sealed) the new generation is
   uploaded with the lease's token; with the server gone it stays pending on
   this laptop (`station team status`) and is sent at the persona's next open.

While it runs, the session closes itself, as at a local `station rotate`
(the process's own SIGTERM: the browser is closed through the protocol, the
profile resealed and uploaded), when another laptop's `station rotate` asks
it to (`team.remote`), and when its lease was lost (unlocked, or it expired
and another laptop took it): the person is told why, and a lost lease's
work stays on this laptop, kept aside, as the server refuses its token.

Which generation the laptop's cache holds is recorded in the laptop's own
registry (SQLite under the station home), never on the server: every laptop
has its own cache, and the server's current generation is `generations`.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from outreach_station import fsutil
from outreach_station.errors import IntegrityError, SecurityError, StateError, StationError
from outreach_station.i18n import _
from outreach_station.values import printable

if TYPE_CHECKING:
    from outreach_station.context import Notify, Station
    from outreach_station.storage import Store
    from outreach_station.storage.postgres import CloseRequest, PostgresStore, WrappedKeyRecord
    from outreach_station.team.keys import MemberKey
    from outreach_station.team.members import Member
    from outreach_station.team.sync import LeaseSession, LocalCopy, ProgressCallback
    from outreach_station.vault.blobs import StoreKeys
    from outreach_station.workspace import DataKeys


class TeamKeys:
    """Persona data keys as this laptop's member gets them from the team (a `DataKeys`).

    Each key is unwrapped once per command and kept in memory for it only.
    `ensure_data_key` gives the key of the version that sealed the server's
    current generation (what is unsealed); `sealing_key` the one the next
    generation is sealed with, a new version once `start_rekey` made one.
    """

    def __init__(
        self,
        store: PostgresStore,
        team_id: str,
        key: MemberKey,
        members: Callable[[], list[Member]],
    ) -> None:
        # `members` is the verified roster (`membership.roster`): keys are wrapped only
        # for members whose approval is signed back to the team's founder.
        self._store = store
        self._team_id = team_id
        self._key = key
        self._members = members
        self._keys: dict[str, tuple[bytes, int]] = {}
        self._rekeyed: dict[str, Rekeyed] = {}

    def __repr__(self) -> str:
        # Never a key: reprs end up in tracebacks.
        return f"TeamKeys(team={self._team_id!r}, member={self._key.member_id!r})"

    @property
    def member_id(self) -> str:
        return self._key.member_id

    @property
    def team_id(self) -> str:
        return self._team_id

    def _approved_roster(self) -> list[Member]:
        members = self._members()
        me = next((m for m in members if m.member_id == self.member_id), None)
        if me is None or not me.approved:
            raise SecurityError(
                _(
                    "this laptop's member {member_id} is {status} in the team, so it cannot "
                    "open a team's persona; an approved member must approve it (station "
                    "team approve, after comparing the safety code)"
                ).format(
                    member_id=self.member_id,
                    status=me.status if me is not None else _("not registered"),
                )
            )
        return members

    def approved_roster(self) -> list[Member]:
        """The verified roster; refused unless this laptop's member is approved in it."""
        return self._approved_roster()

    def check_approved(self) -> None:
        """Refuse unless this laptop's member is approved on the verified roster."""
        self._approved_roster()

    def ensure_data_key(self, persona_id: str) -> bytes:
        """The key that opens the persona's current generation; made and wrapped if it has none.

        The version is the one the server's current generation records (a
        re-key leaves older generations on older versions). The caller holds
        the persona's lease, so no other laptop makes a key at once.
        """
        return self.current(persona_id)[0]

    def current(self, persona_id: str) -> tuple[bytes, int]:
        """The data key that opens the persona's current generation, and its version."""
        if persona_id in self._keys:
            return self._keys[persona_id]
        from outreach_station.team.keys import new_data_key

        members = self._approved_roster()
        wraps = self._store.wrapped_keys(persona_id)
        generation = self._store.current_generation(persona_id)
        if not wraps:
            if generation is not None:
                # A new key would make the sealed generations unreadable to everyone.
                raise IntegrityError(
                    _(
                        "persona {persona_id} has sealed generations on the team server "
                        "but no wrapped key for any member; its keys were deleted outside "
                        "station: report it to IT (nothing was changed)"
                    ).format(persona_id=persona_id)
                )
            data_key, version = new_data_key(), 1
            if self._store_first_key(members, persona_id, data_key):
                wraps = self._store.wrapped_keys(persona_id)
            else:
                # Another laptop made the persona's first key at the same moment: theirs counts.
                wraps = self._store.wrapped_keys(persona_id)
                version = max(w.key_version for w in wraps)
                data_key = self._unwrap(persona_id, version, wraps)
        else:
            version = (
                generation.key_version
                if generation is not None
                else max(w.key_version for w in wraps)
            )
            data_key = self._unwrap(persona_id, version, wraps)
        self._wrap_missing(members, persona_id, data_key, version, wraps)
        self._keys[persona_id] = (data_key, version)
        return data_key, version

    def _store_first_key(self, members: list[Member], persona_id: str, data_key: bytes) -> bool:
        from outreach_station.storage.postgres import WrappedKeyRecord
        from outreach_station.team.keys import wrap_for_members
        from outreach_station.team.members import approved_members

        made = wrap_for_members(
            approved_members(members),
            data_key,
            team_id=self._team_id,
            persona_id=persona_id,
            key_version=1,
        )
        return self._store.put_first_wrapped_keys(
            persona_id,
            [WrappedKeyRecord(w.persona_id, w.member_id, w.key_version, w.sealed) for w in made],
        )

    def key_of_version(self, persona_id: str, version: int) -> bytes:
        """The persona's data key of `version`, unwrapped for this member (kit secrets)."""
        cached = self._keys.get(persona_id)
        if cached is not None and cached[1] == version:
            return cached[0]
        rekeyed = self._rekeyed.get(persona_id)
        if rekeyed is not None and rekeyed.key_version == version:
            return rekeyed.data_key
        return self._unwrap(
            persona_id, version, self._store.wrapped_keys(persona_id, member_id=self.member_id)
        )

    def newest(self, persona_id: str) -> tuple[bytes, int]:
        """The persona's newest data key this member holds and its version; made if none.

        What a kit secret is sealed with: a version a re-key made after a
        removal, even before a generation sealed with it was committed.
        """
        key, version = self.current(persona_id)
        mine = self._store.wrapped_keys(persona_id, member_id=self.member_id)
        top = max((w.key_version for w in mine), default=version)
        if top > version:
            return self.key_of_version(persona_id, top), top
        return key, version

    def _unwrap(self, persona_id: str, version: int, wraps: list[WrappedKeyRecord]) -> bytes:
        from outreach_station.team.keys import WrappedKey, unwrap_data_key

        mine = next(
            (w for w in wraps if w.member_id == self.member_id and w.key_version == version),
            None,
        )
        if mine is None:
            raise SecurityError(
                _(
                    "persona {persona_id}'s key (version {version}) is not wrapped for "
                    "this laptop's member {member_id}; a member who can open it must "
                    "open it once after your approval, or you were removed from the team"
                ).format(persona_id=persona_id, version=version, member_id=self.member_id)
            )
        return unwrap_data_key(
            WrappedKey(mine.persona_id, mine.member_id, mine.key_version, mine.sealed),
            self._key,
            persona_id=persona_id,
            key_version=version,
        )

    def _wrap_missing(
        self,
        members: list[Member],
        persona_id: str,
        data_key: bytes,
        version: int,
        wraps: list[WrappedKeyRecord],
    ) -> None:
        from outreach_station.storage.postgres import WrappedKeyRecord
        from outreach_station.team.keys import wrap_for_members
        from outreach_station.team.members import approved_members

        have = {w.member_id for w in wraps if w.key_version == version}
        missing = [m for m in approved_members(members) if m.member_id not in have]
        if missing:
            # Members approved since the last wrap can open it from now on.
            made = wrap_for_members(
                missing, data_key, team_id=self._team_id, persona_id=persona_id, key_version=version
            )
            self._store.put_wrapped_keys(
                [WrappedKeyRecord(w.persona_id, w.member_id, w.key_version, w.sealed) for w in made]
            )

    def start_rekey(self, persona_id: str) -> Rekeyed | None:
        """A new data key for the next seal if the persona is due (a member was removed).

        Under the lease, before the session: the new version is one past every
        version the server has wrapped (one made by a session that never
        committed is never reused), wrapped for the verified roster as it is
        now and stored; the generation sealed with it clears the mark when it
        is committed (`commit_generation`). None if the persona is not due.
        """
        if persona_id in self._rekeyed:
            return self._rekeyed[persona_id]
        since = self._store.rekey_mark(persona_id)
        if since is None:
            return None
        from outreach_station.storage.postgres import WrappedKeyRecord
        from outreach_station.team.keys import new_data_key, rekey

        old_key, old_version = self.current(persona_id)
        top = max([old_version] + [w.key_version for w in self._store.wrapped_keys(persona_id)])
        new_key = new_data_key()
        made = rekey(
            self._approved_roster(),
            team_id=self._team_id,
            persona_id=persona_id,
            old_key=old_key,
            old_version=top,
            new_key=new_key,
        )
        self._store.put_wrapped_keys(
            [
                WrappedKeyRecord(w.persona_id, w.member_id, w.key_version, w.sealed)
                for w in made.wraps
            ]
        )
        done = Rekeyed(persona_id, made.key_version, since, new_key)
        self._rekeyed[persona_id] = done
        from outreach_station.team.kit_secrets import reseal

        # The kit's secrets move to the new key too: the removed member never gets it.
        reseal(
            self._store,
            self,
            self._team_id,
            persona_id,
            new_key=new_key,
            new_version=made.key_version,
        )
        return done

    def sealing(self, persona_id: str) -> tuple[bytes, int, datetime | None]:
        """The key the next generation is sealed with, its version, the re-key mark it clears."""
        rekeyed = self._rekeyed.get(persona_id)
        if rekeyed is not None:
            return rekeyed.data_key, rekeyed.key_version, rekeyed.since
        key, version = self.current(persona_id)
        return key, version, None

    def forget_current(self, persona_id: str) -> None:
        """Ask the server again which key opens the current generation (after an upload)."""
        self._keys.pop(persona_id, None)

    def sealing_key(self, persona_id: str) -> bytes:
        """What `open_workspace` seals with (`workspace.RekeyingKeys`)."""
        return self.sealing(persona_id)[0]


@dataclass(frozen=True)
class Rekeyed:
    """A persona's new data key version made for the next seal after a removal."""

    persona_id: str
    key_version: int
    since: datetime  # the re-key mark it answers (server clock)
    data_key: bytes = field(repr=False)


@dataclass(frozen=True)
class TeamOpen:
    """What a team session gives the workspace: the keys, the laptop's registry, the lease."""

    keys: TeamKeys
    registry: Store
    lease: LeaseSession


def host_name() -> str:
    """This laptop's name, as leases and audit records give it."""
    import socket

    return socket.gethostname() or "unknown-host"


def team_store(st: Station) -> PostgresStore | None:
    """The team's server when this home is in a team (connected now: unreachable refuses)."""
    from outreach_station.storage.postgres import PostgresStore
    from outreach_station.team.config import team_connection

    if team_connection(st) is None:
        return None
    store = st.store
    if not isinstance(store, PostgresStore):  # pragma: no cover - open_store's contract
        raise StateError(_("this station home is not in a team; run station team join URL"))
    return store


def _team_keys(st: Station, store: PostgresStore) -> TeamKeys:

    team_id = store.team_id()
    if team_id is None:
        raise StateError(
            _("the team server {where} has no team yet; run station team init URL").format(
                where=store.connection.where
            )
        )
    from outreach_station.team.membership import roster

    return TeamKeys(
        store,
        team_id,
        st.member_key(team_id),
        lambda: roster(st, store, team_id),
    )


def data_keys(st: Station) -> DataKeys:
    """Where this home's persona keys come from: the team's wrapped keys, else the vault."""
    store = team_store(st)
    return st.vault() if store is None else _team_keys(st, store)


@contextlib.contextmanager
def team_session(
    st: Station,
    store: PostgresStore,
    persona_id: str,
    *,
    notify: Notify,
    progress: Callable[[str], ProgressCallback | None] | None = None,
) -> Iterator[TeamOpen]:
    """Hold the persona's lease, bring its current generation here; upload what was sealed.

    See the module's docstring. Leaving the block uploads the generation the
    workspace sealed (if it sealed one) and gives the lease back; an upload
    the server refuses or cannot take is told through `notify` and stays
    on this laptop, never lost.
    """
    from outreach_station.team.sync import LocalCopy, fetch, flush_pending, hold, upload_sealed
    from outreach_station.vault.blobs import StoreKeys
    from outreach_station.workspace import persona_lock, recover

    def bar(action: str) -> ProgressCallback | None:
        return progress(action) if progress is not None else None

    keys = _team_keys(st, store)
    host = host_name()
    ttl = timedelta(minutes=st.policy.team.lease_minutes)
    connection = store.connection

    def connect() -> PostgresStore:
        from outreach_station.storage.postgres import PostgresStore

        return PostgresStore(connection, password=st.team_password(connection))

    registry = st.local_store

    closing = _Closer(st, persona_id, notify)

    def lost(problem: str) -> None:
        notify(_("warning: {exc}").format(exc=problem))
        closing.close(
            "lease-lost",
            _("persona {persona} is closing: {problem}").format(
                persona=persona_id, problem=problem
            ),
        )

    def asked(request: CloseRequest) -> None:
        closing.close(
            "team-rotate",
            _(
                "persona {persona} is closing: {member} on {host} rotated its platform "
                "({reason}); your work is sealed and sent to the team server"
            ).format(
                persona=persona_id,
                member=request.who(),
                host=printable(request.host),
                reason=request.reason or _("no reason given"),
            ),
        )

    with hold(
        store,
        persona_id,
        keys.member_id,
        host,
        ttl,
        connect=connect,
        on_lost=lost,
        on_close=asked,
    ) as lease:
        # Here the vault makes no key file, which is what made the directory in local mode.
        fsutil.ensure_private_dir(st.paths.persona_dir(persona_id))
        # After a member's removal this session seals with a new key they never get;
        # so does the recovery of a crashed session's profile just below.
        keys.start_rekey(persona_id)
        # A crashed session's profile is sealed before the fetch, so that it is sent
        # (or kept aside) as what it is: work newer than what this laptop last synced.
        with persona_lock(st.paths, persona_id):
            recover(
                st.paths, persona_id, keys, notify=notify, progress=bar("sealing"), store=registry
            )
        copy = LocalCopy.of(st.paths, registry, persona_id)
        try:
            flush_pending(store, copy, token=lease.token, progress=bar("uploading"))
            # A generation sealed here outside a session (a recovery) goes up now, as
            # sealed with whichever key opens it: the new one when it was re-keyed.
            local = _sealed_with(copy, keys, persona_id)
            upload_sealed(
                store,
                copy,
                StoreKeys.derive(local.data_key, persona_id),
                token=lease.token,
                member=keys.member_id,
                host=host,
                progress=bar("uploading"),
                key_version=local.sealing.key_version,
                rekey_since=local.sealing.rekey_since,
            )
        except StateError as exc:
            # Kept aside on this laptop, sealed: the server's generation is the persona's.
            notify(_("warning: {exc}").format(exc=exc))
        # What opens the server's current generation now (a recovery may have re-keyed it).
        keys.forget_current(persona_id)
        copy = LocalCopy.of(st.paths, registry, persona_id)
        fetch(
            store,
            copy,
            StoreKeys.derive(keys.ensure_data_key(persona_id), persona_id),
            progress=bar("downloading"),
        )
        try:
            yield TeamOpen(keys=keys, registry=registry, lease=lease)
        finally:
            # A fresh view of the blob store: the seal wrote a pack this one has not seen.
            sealed = LocalCopy.of(st.paths, registry, persona_id)
            # Asked again: what the session sealed with, after the uploads above.
            seal_key, seal_version, rekey_since = keys.sealing(persona_id)
            _upload_after(
                store,
                sealed,
                StoreKeys.derive(seal_key, persona_id),
                lease,
                host,
                notify,
                bar("uploading"),
                Sealing(seal_version, rekey_since),
            )


class _Closer:
    """Ends this process's session once, as a local `station rotate` would (see the module)."""

    def __init__(self, st: Station, persona_id: str, notify: Notify) -> None:
        self._paths = st.paths
        self._persona_id = persona_id
        self._notify = notify
        self._done = False

    def close(self, why: str, words: str) -> None:
        import os
        import signal

        from outreach_station.storage.locks import note_closing

        if self._done:
            return
        self._done = True
        self._notify(words)
        note_closing(self._paths, self._persona_id, why)
        # The session's own handlers (the browser's loop, or DeferredSignals while
        # sealing) turn it into a clean close: pages closed, profile resealed, uploaded.
        os.kill(os.getpid(), signal.SIGTERM)
        # Started from a desktop launcher nobody sees the terminal: the desktop says it
        # too, from a thread of its own (the lease's thread must not wait for it).
        import threading

        from outreach_station.desktop import notify as desktop_notify

        threading.Thread(
            target=_quietly, args=(desktop_notify, _("Outreach station"), words), daemon=True
        ).start()


def _quietly(call: Callable[[str, str], object], summary: str, body: str) -> None:
    with contextlib.suppress(Exception):
        call(summary, body)


@dataclass(frozen=True)
class Sealing:
    """Which data key version a session's generation is sealed with; the re-key mark it clears."""

    key_version: int
    rekey_since: datetime | None


@dataclass(frozen=True)
class _LocalKey:
    data_key: bytes = field(repr=False)
    sealing: Sealing


def _sealed_with(copy: LocalCopy, keys: TeamKeys, persona_id: str) -> _LocalKey:
    """The key that authenticates the laptop's newest local generation: current or re-keyed.

    The laptop records no key version for its own cache; the key that opens
    the manifest is the one that sealed it (a wrong key fails authentication).
    """
    from outreach_station.vault.blobs import StoreKeys, read_manifest

    current, version = keys.current(persona_id)
    candidate, new_version, since = keys.sealing(persona_id)
    generation, _pending = copy.registry.sealed_generation(persona_id)
    if generation and not hmac.compare_digest(candidate, current):
        try:
            read_manifest(copy.blobs, StoreKeys.derive(candidate, persona_id), generation)
        except (IntegrityError, OSError):
            pass
        else:
            return _LocalKey(candidate, Sealing(new_version, since))
    return _LocalKey(current, Sealing(version, None))


def _upload_after(  # noqa: PLR0917 - one call site, in order
    store: PostgresStore,
    copy: LocalCopy,
    keys: StoreKeys,
    lease: LeaseSession,
    host: str,
    notify: Notify,
    progress: ProgressCallback | None,
    sealing: Sealing,
) -> None:
    """Send what the session sealed; a refusal or a lost server is told, never raised."""
    from outreach_station.team.sync import upload_sealed

    try:
        result = upload_sealed(
            store,
            copy,
            keys,
            token=lease.token,
            member=lease.lease.member,
            host=host,
            progress=progress,
            key_version=sealing.key_version,
            rekey_since=sealing.rekey_since,
        )
    except StationError as exc:
        notify(_("warning: {exc}").format(exc=exc))
        return
    if result is not None and result.status == "pending":
        notify(
            _(
                "warning: persona {persona}'s profile is sealed on this laptop but not on the "
                "team server {where} ({problem}); it is sent at the persona's next open here "
                "(station team status lists it)"
            ).format(persona=copy.persona_id, where=store.connection.where, problem=result.problem)
        )
