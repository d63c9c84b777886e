"""A persona whole on any laptop: the session lease, upload after a seal, fetch before an unseal.

docs/team.md, "Sync and leases", is the protocol in prose. In short:

- `hold()` takes the persona's lease on the server (refused at once, naming
  who holds it), renews it from a background thread every ttl/3 and gives it
  back at the end. If the server cannot be reached for a renewal the session
  goes on and its state says the lease is unproven. The same thread listens
  for the server's word that the lease changed (`LEASE_CHANNEL`): a lease
  taken over (unlocked, expired and taken) or a request to close it (another
  laptop's `station rotate`) is heard within a second, not at the next renewal.
- `upload()` after a seal: a pending record is written on this laptop first,
  then only the blobs the server lacks are sent, then the generation is
  committed with the lease's token. If the server is lost midway nothing of
  the generation is visible there (a generation becomes current only in the
  committing transaction) and the record stays: `pending()` lists it and
  `flush_pending()` sends it once the server is back.
- `fetch()` before an unseal: when the server's current generation is not
  the laptop's, its manifest and every blob are authenticated with the
  persona's keys before anything is written locally (sealed, never
  plaintext); then the local registry records the generation, so rollback
  protection stays consistent.

A pending generation is committed only if the server's current generation
is still the one it was sealed from (its `base`) and the caller holds the
lease's current token (the session's, or a new lease's after the old one
expired): then nobody changed the persona in between. Otherwise it is never
sent over a newer one: it is copied aside on this laptop
(`<persona dir>/set-aside/<generation>-<hash>/`, still sealed), reported, and
the server's generation is the persona's from then on.

The laptop's side is one small file per persona, `<persona dir>/team-sync.json`:
which server generation the local copy is (`synced`: generation and the
manifest's SHA-256) and the pending upload, if any. It holds no secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from outreach_station import fsutil
from outreach_station.clock import iso, utcnow
from outreach_station.errors import (
    EnvironmentProblem,
    IntegrityError,
    StateError,
    StationError,
)
from outreach_station.i18n import _

if TYPE_CHECKING:
    from outreach_station.paths import StationPaths
    from outreach_station.storage.base import BlobStore, Store
    from outreach_station.storage.postgres import CloseRequest, Generation, Lease, PostgresStore
    from outreach_station.vault.blobs import Manifest, StoreKeys

ProgressCallback = Callable[[int, int], None]
LeaseState = Literal["held", "unproven", "lost", "released"]

STATE_FILE: Final = "team-sync.json"
SET_ASIDE_DIR: Final = "set-aside"
# How long the renewing thread listens at a time: its longest delay at a session's end.
LISTEN_SLICE_SECONDS: Final = 0.5
# A sealed blob is its plaintext plus a 24-byte header and a 16-byte tag.
_BLOB_OVERHEAD: Final = 40


# -- the session lease ------------------------------------------------------------


class LeaseSession:
    """A persona's lease for one session: its token, and whether it is still proven."""

    def __init__(
        self,
        store: PostgresStore,
        lease: Lease,
        ttl: timedelta,
        connect: Callable[[], PostgresStore] | None,
        on_lost: Callable[[str], None] | None = None,
        *,
        on_close: Callable[[CloseRequest], None] | None = None,
    ) -> None:
        self._store = store
        self._on_lost = on_lost
        self._on_close = on_close
        self._close_heard = False
        self._listening = False
        self._lease = lease
        self.ttl = ttl
        self._connect = connect
        self._renewer: PostgresStore | None = None
        self._state: LeaseState = "held"
        self._problem: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def persona_id(self) -> str:
        return self._lease.persona_id

    @property
    def token(self) -> int:
        """The fencing token every commit of this session carries."""
        return self._lease.token

    @property
    def lease(self) -> Lease:
        with self._lock:
            return self._lease

    @property
    def state(self) -> LeaseState:
        """held; unproven (the server could not be reached to renew); lost; released."""
        with self._lock:
            return self._state

    @property
    def problem(self) -> str | None:
        """Why the lease is unproven or lost, in one line; None while it is held."""
        with self._lock:
            return self._problem

    def _set(self, state: LeaseState, problem: str | None, lease: Lease | None = None) -> None:
        with self._lock:
            self._state, self._problem = state, problem
            if lease is not None:
                self._lease = lease

    def _renewing_store(self) -> PostgresStore:
        if self._connect is None:
            return self._store
        if self._renewer is None:
            self._renewer = self._connect()
            # Its own connection: what the server announces reaches this thread only.
            self._renewer.listen_leases()
            self._listening = True
        return self._renewer

    def _drop_renewer(self) -> None:
        self._listening = False
        if self._renewer is not None:
            with contextlib.suppress(Exception):
                self._renewer.close()
            self._renewer = None

    def _heard(self, timeout: float) -> bool:
        """Wait up to `timeout` s for word that this persona's lease changed (or the stop)."""
        renewer = self._renewer if self._listening else None
        if renewer is None:
            # Not listening (no connection of its own, or it was lost): renewals only.
            self._stop.wait(timeout)
            return False
        try:
            return self.persona_id in renewer.lease_news(timeout)
        except StationError:
            self._drop_renewer()
            return False

    def renew(self) -> LeaseState:
        """Renew once (the thread does this every ttl/3); the state afterwards."""
        if self.state in ("lost", "released"):
            return self.state
        try:
            lease = self._renewing_store().renew_lease(self.persona_id, self.token, ttl=self.ttl)
        except StateError as exc:
            self._set("lost", str(exc))
            if self._on_lost is not None:
                # Told at once: the person is still working in a persona someone else has.
                with contextlib.suppress(Exception):
                    self._on_lost(str(exc))
        except StationError as exc:
            # A new connection next time: this one may be dead for good.
            self._drop_renewer()
            self._set("unproven", f"lease unproven: {exc}")
        else:
            self._set("held", None, lease)
            if lease.close is not None and not self._close_heard:
                self._close_heard = True
                with contextlib.suppress(StationError):
                    # The laptop that asked waits for this word, not only for the release.
                    self._renewing_store().close_seen(self.persona_id, self.token)
                if self._on_close is not None:
                    with contextlib.suppress(Exception):
                        self._on_close(lease.close)
        return self.state

    def _run(self) -> None:
        import time

        interval = max(self.ttl.total_seconds() / 3, 0.05)
        # At once, listening: a close request made before the listening began is not missed.
        due = time.monotonic() if self._connect is not None else time.monotonic() + interval
        while not self._stop.is_set():
            heard = self._heard(max(0.0, min(LISTEN_SLICE_SECONDS, due - time.monotonic())))
            if self._stop.is_set():
                return
            if heard or time.monotonic() >= due:
                if self.renew() in ("lost", "released"):
                    return
                due = time.monotonic() + interval

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{self.persona_id}", daemon=True
        )
        self._thread.start()

    def _release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.state == "lost":
            self._drop_renewer()
            return
        for store in (self._store, None):
            try:
                if store is None:
                    if self._connect is None:
                        break
                    with self._connect() as fresh:
                        given = fresh.release_lease(self.persona_id, self.token)
                else:
                    given = store.release_lease(self.persona_id, self.token)
            except StationError as exc:
                # Not given back: it expires by the server's clock after its ttl.
                self._set("unproven", f"lease not released: {exc}")
                continue
            if given:
                self._set("released", None)
            else:
                self._set("lost", "the lease was taken over before this session ended")
            break
        self._drop_renewer()


@contextlib.contextmanager
def hold(
    store: PostgresStore,
    persona_id: str,
    member: str,
    host: str,
    ttl: timedelta,
    *,
    connect: Callable[[], PostgresStore] | None = None,
    on_lost: Callable[[str], None] | None = None,
    on_close: Callable[[CloseRequest], None] | None = None,
) -> Iterator[LeaseSession]:
    """Hold the persona's lease for the `with` block, renewed every ttl/3, released at the end.

    Refused at once with `BusyError` naming who holds it, on which laptop and
    since when (local time). `connect` opens another connection to the same
    server: the renewals use their own (a connection is not shared between
    threads' transactions) and a new one after the server was lost. Without
    it the renewals use `store`, which the caller must then not hold in a
    transaction. `on_lost(problem)` is called once, from the renewing
    thread, when a renewal finds the lease taken over (it expired while this
    laptop was suspended or cut off, or was unlocked); `on_close(request)`
    once, from the same thread, when another laptop asks this session to
    close (`station rotate`; the request is acknowledged on the server
    first). With `connect`, the thread hears either within a second
    (`LEASE_CHANNEL`); without it, at the next renewal. Leaving the block never
    raises for the server's sake: a lease that cannot be given back expires by
    itself.
    """
    lease = store.acquire_lease(persona_id, member=member, host=host, ttl=ttl)
    session = LeaseSession(store, lease, ttl, connect, on_lost, on_close=on_close)
    session._start()
    try:
        yield session
    finally:
        session._release()


# -- the laptop's record ------------------------------------------------------------


@dataclass(frozen=True)
class PendingUpload:
    """A generation sealed on this laptop and not yet on the server."""

    persona_id: str
    generation: int
    base: int  # the server generation it was sealed from (0: none)
    sha256: str  # of its manifest
    token: int  # the lease token it was sealed under
    member: str
    host: str
    recorded: str
    blob_names: tuple[str, ...] = field(repr=False)
    problem: str = ""
    # The data key version it is sealed with, and for a re-key the mark it clears.
    key_version: int = 1
    rekey_since: str | None = None


@dataclass(frozen=True)
class UploadResult:
    """What an upload did: `uploaded`, or `pending` (the server was lost; kept here)."""

    persona_id: str
    generation: int
    status: Literal["uploaded", "pending"]
    blobs_sent: int
    bytes_sent: int
    problem: str = ""


@dataclass(frozen=True)
class FetchResult:
    """What a fetch did: `current` (nothing to do), `none` on the server, or `fetched`."""

    persona_id: str
    generation: int
    status: Literal["current", "none", "fetched"]
    blobs_received: int = 0
    bytes_received: int = 0
    set_aside: Path | None = None


@dataclass(frozen=True)
class LocalCopy:
    """One persona's sealed copy on this laptop: its directory, blob store and registry."""

    persona_id: str
    directory: Path
    blobs: BlobStore
    registry: Store

    @classmethod
    def of(cls, station: StationPaths, registry: Store, persona_id: str) -> LocalCopy:
        from outreach_station.storage import open_blob_store

        return cls(
            persona_id,
            station.persona_dir(persona_id),
            open_blob_store(station, persona_id),
            registry,
        )

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(
            _(
                "the team sync record {path} is unreadable ({kind}); move it away "
                "and open the persona again (the sealed profile is untouched)"
            ).format(path=path, kind=type(exc).__name__)
        ) from None
    if not isinstance(data, dict):
        raise StateError(
            _("the team sync record {path} is malformed; move it away and try again").format(
                path=path
            )
        )
    return data


def _write_state(path: Path, state: dict[str, Any]) -> None:
    fsutil.write_atomic(path, json.dumps(state, sort_keys=True).encode("utf-8"))


def _pending_of(persona_id: str, state: Mapping[str, Any]) -> PendingUpload | None:
    raw = state.get("pending")
    if not raw:
        return None
    return PendingUpload(
        persona_id=persona_id,
        generation=int(raw["generation"]),
        base=int(raw["base"]),
        sha256=str(raw["sha256"]),
        token=int(raw["token"]),
        member=str(raw["member"]),
        host=str(raw["host"]),
        recorded=str(raw["recorded"]),
        blob_names=tuple(raw["blob_names"]),
        problem=str(raw.get("problem", "")),
        key_version=int(raw.get("key_version", 1)),
        rekey_since=None if raw.get("rekey_since") is None else str(raw["rekey_since"]),
    )


def pending(station: StationPaths) -> list[PendingUpload]:
    """Every generation of this station home waiting for the server (`station team status`)."""
    found: list[PendingUpload] = []
    with contextlib.suppress(FileNotFoundError):
        for directory in sorted(station.personas.iterdir()):
            upload = _pending_of(directory.name, _read_state(directory / STATE_FILE))
            if upload is not None:
                found.append(upload)
    return found


def set_aside(station: StationPaths, persona_id: str) -> list[Path]:
    """Generations of this persona kept aside on this laptop (never sent over a newer one)."""
    root = station.persona_dir(persona_id) / SET_ASIDE_DIR
    with contextlib.suppress(FileNotFoundError):
        return sorted(p for p in root.iterdir() if p.is_dir())
    return []


@dataclass(frozen=True)
class SetAside:
    """A generation of this laptop kept aside because the server had a newer one."""

    persona_id: str
    generation: int
    path: Path


def all_set_aside(station: StationPaths) -> list[SetAside]:
    """Every generation of this station home kept aside (`station team status`)."""
    found: list[SetAside] = []
    with contextlib.suppress(FileNotFoundError):
        for directory in sorted(station.personas.iterdir()):
            for path in set_aside(station, directory.name):
                number = path.name.partition("-")[0]
                if number.isdigit():
                    found.append(SetAside(directory.name, int(number), path))
    return found


def _digest(manifest: bytes) -> str:
    return hashlib.sha256(manifest).hexdigest()


def _keep_aside(copy: LocalCopy, generation: int, manifest: bytes, names: Collection[str]) -> Path:
    """Copy a generation (still sealed) out of the persona's store, where no seal collects it."""
    from outreach_station.storage.blobs import LocalBlobStore

    target = copy.directory / SET_ASIDE_DIR / f"{generation}-{_digest(manifest)[:12]}"
    aside = LocalBlobStore(target)
    if manifest in (aside.get_manifest(g) for g in aside.manifests()):
        return target
    for name in names:
        aside.put(name, copy.blobs.get(name))
    aside.put_manifest(generation, manifest)
    return target


# -- upload after a seal ------------------------------------------------------------


def upload(
    store: PostgresStore,
    copy: LocalCopy,
    generation: int,
    manifest: bytes,
    blob_names: Mapping[str, int] | Collection[str],
    *,
    token: int,
    member: str,
    host: str,
    progress: ProgressCallback | None = None,
    key_version: int = 1,
    rekey_since: datetime | None = None,
) -> UploadResult:
    """Send a generation just sealed on this laptop; commit it with the lease's `token`.

    `blob_names` are the blobs its manifest references (`Manifest.blob_sizes`
    gives their plaintext sizes too, for progress). The pending record is
    written first, so a laptop that dies or loses the server at any point
    still knows to send it. Server lost: `status="pending"`, nothing of it
    visible on the server. Token no longer the lease's, or a newer
    generation on the server: StateError naming both generations; the
    generation stays on this laptop.
    """
    state = _read_state(copy.state_file)
    synced = state.get("synced") or {}
    record = PendingUpload(
        persona_id=copy.persona_id,
        generation=generation,
        base=int(synced.get("generation", 0)),
        sha256=_digest(manifest),
        token=token,
        member=member,
        host=host,
        recorded=iso(utcnow()),
        blob_names=tuple(sorted(blob_names)),
        key_version=key_version,
        rekey_since=None if rekey_since is None else rekey_since.isoformat(),
    )
    state["pending"] = {**asdict(record), "blob_names": list(record.blob_names)}
    del state["pending"]["persona_id"]
    _write_state(copy.state_file, state)
    sizes = blob_names if isinstance(blob_names, Mapping) else None
    return _send(store, copy, record, manifest, token=token, sizes=sizes, progress=progress)


def upload_sealed(
    store: PostgresStore,
    copy: LocalCopy,
    keys: StoreKeys,
    *,
    token: int,
    member: str,
    host: str,
    progress: ProgressCallback | None = None,
    key_version: int = 1,
    rekey_since: datetime | None = None,
) -> UploadResult | None:
    """Upload the generation a session just sealed here; None if it is the one already synced.

    The generation is the one the laptop's registry records; its manifest is
    read (authenticated with `keys`, of data key version `key_version`) for
    the blobs it names, then `upload` sends it with the lease's `token`.
    """
    from outreach_station.vault.blobs import read_manifest

    generation, _pending_gen = copy.registry.sealed_generation(copy.persona_id)
    manifest = _local_manifest(copy, generation)
    if generation == 0 or manifest is None:
        return None
    synced = _read_state(copy.state_file).get("synced") or {}
    if synced.get("sha256") == _digest(manifest):
        return None
    sealed = read_manifest(copy.blobs, keys, generation)
    return upload(
        store,
        copy,
        generation,
        manifest,
        sealed.blob_sizes,
        token=token,
        member=member,
        host=host,
        progress=progress,
        key_version=key_version,
        rekey_since=rekey_since,
    )


def flush_pending(
    store: PostgresStore,
    copy: LocalCopy,
    *,
    token: int,
    progress: ProgressCallback | None = None,
) -> UploadResult | None:
    """Send this persona's pending generation with `token`, the lease this laptop holds now.

    None if nothing is pending. Sent only if the server's current generation
    is still the one it was sealed from; otherwise it is kept aside on this
    laptop and a StateError says so, naming both generations.
    """
    record = _pending_of(copy.persona_id, _read_state(copy.state_file))
    if record is None:
        return None
    try:
        manifest = copy.blobs.get_manifest(record.generation)
    except FileNotFoundError:
        manifest = b""
    if _digest(manifest) != record.sha256:
        raise IntegrityError(
            _(
                "persona {persona_id}: generation {generation} waiting for the team "
                "server is no longer in {location}; it cannot be sent (report it to "
                "IT)"
            ).format(
                persona_id=copy.persona_id,
                generation=record.generation,
                location=copy.blobs.location,
            )
        )
    return _send(store, copy, record, manifest, token=token, sizes=None, progress=progress)


def _server_has(current: Generation | None) -> str:
    if current is None:
        return _("no generation")
    return _("generation {generation} (from {member})").format(
        generation=current.generation, member=current.member
    )


def _send(
    store: PostgresStore,
    copy: LocalCopy,
    record: PendingUpload,
    manifest: bytes,
    *,
    token: int,
    sizes: Mapping[str, int] | None,
    progress: ProgressCallback | None,
) -> UploadResult:
    persona = copy.persona_id
    sent = sent_bytes = 0
    try:
        current = store.current_generation(persona)
        found = 0 if current is None else current.generation
        if found != record.base:
            if current is not None and current.manifest == manifest:
                _mark_synced(copy, record.generation, manifest)  # it did land before
                return UploadResult(persona, record.generation, "uploaded", 0, 0)
            where = _keep_aside(copy, record.generation, manifest, record.blob_names)
            _clear_pending(copy)
            raise StateError(
                _(
                    "persona {persona}: generation {generation} sealed on this laptop "
                    "was not sent: the team server has {server}, and it was sealed from "
                    "generation {base}; kept aside, sealed, in {where}; the server's is "
                    "the persona's now (ask IT if work was lost)"
                ).format(
                    persona=persona,
                    generation=record.generation,
                    server=_server_has(current),
                    base=record.base,
                    where=where,
                )
            )
        missing = sorted(store.missing_blobs(persona, record.blob_names))
        if sizes is not None:
            total = sum(sizes.get(n, 0) + _BLOB_OVERHEAD for n in missing)
        else:
            total = sum(len(copy.blobs.get(n)) for n in missing)
        total = max(total, 1)
        for name in missing:
            data = copy.blobs.get(name)
            store.put_blob(persona, name, data)
            sent += 1
            sent_bytes += len(data)
            if progress is not None:
                progress(min(sent_bytes, total), total)
        try:
            store.commit_generation(
                persona,
                record.generation,
                manifest,
                token=token,
                blob_names=record.blob_names,
                key_version=record.key_version,
                rekey_since=(
                    None
                    if record.rekey_since is None
                    else datetime.fromisoformat(record.rekey_since)
                ),
            )
        except EnvironmentProblem:
            raise
        except StateError as exc:
            now = store.current_generation(persona)
            raise StateError(
                _(
                    "persona {persona}: generation {generation} sealed on this laptop "
                    "was refused by the team server, which has {server}: {exc}; it "
                    "stays on this laptop, pending"
                ).format(
                    persona=persona, generation=record.generation, server=_server_has(now), exc=exc
                )
            ) from None
    except EnvironmentProblem as exc:
        _note_problem(copy, str(exc))
        return UploadResult(persona, record.generation, "pending", sent, sent_bytes, str(exc))
    if progress is not None:
        progress(total, total)
    _mark_synced(copy, record.generation, manifest)
    return UploadResult(persona, record.generation, "uploaded", sent, sent_bytes)


def _mark_synced(copy: LocalCopy, generation: int, manifest: bytes) -> None:
    state = _read_state(copy.state_file)
    state["synced"] = {"generation": generation, "sha256": _digest(manifest)}
    state.pop("pending", None)
    _write_state(copy.state_file, state)


def _clear_pending(copy: LocalCopy) -> None:
    state = _read_state(copy.state_file)
    state.pop("pending", None)
    _write_state(copy.state_file, state)


def _note_problem(copy: LocalCopy, problem: str) -> None:
    state = _read_state(copy.state_file)
    if state.get("pending"):
        state["pending"]["problem"] = problem
        _write_state(copy.state_file, state)


# -- download before an unseal ------------------------------------------------------


def _local_manifest(copy: LocalCopy, generation: int) -> bytes | None:
    if generation not in copy.blobs.manifests():
        return None
    try:
        return copy.blobs.get_manifest(generation)
    except FileNotFoundError:
        return None


def fetch(
    store: PostgresStore,
    copy: LocalCopy,
    keys: StoreKeys,
    *,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    """Bring the server's current generation into the local store, if the laptop's is not it.

    The manifest and every blob are authenticated with `keys` before they
    are written locally; a tampered one is refused (IntegrityError) and not
    kept. A generation of this laptop the server never got is first kept
    aside (see the module's docstring). A server generation older than one
    this laptop already had from it is refused: the server was rolled back.
    Refused while this laptop has a pending upload: `flush_pending` first.
    """
    from outreach_station.storage.team_blobs import TeamBlobStore
    from outreach_station.vault.blobs import open_blob, read_manifest

    persona = copy.persona_id
    state = _read_state(copy.state_file)
    waiting = _pending_of(persona, state)
    if waiting is not None:
        raise StateError(
            _(
                "persona {persona}: generation {generation} sealed on this laptop "
                "is waiting for the team server; send it first (open the persona "
                "again when the server is reachable)"
            ).format(persona=persona, generation=waiting.generation)
        )
    server = store.current_generation(persona)
    if server is None:
        return FetchResult(persona, 0, "none")
    local_gen, _pending_gen = copy.registry.sealed_generation(persona)
    local = _local_manifest(copy, local_gen)
    if local == server.manifest:
        if (state.get("synced") or {}).get("sha256") != _digest(local):
            _mark_synced(copy, server.generation, server.manifest)
        return FetchResult(persona, server.generation, "current")
    synced = state.get("synced") or {}
    clean = local is not None and synced.get("sha256") == _digest(local)
    if int(synced.get("generation", 0)) > server.generation:
        raise IntegrityError(
            _(
                "persona {persona}: the team server {where} offers generation "
                "{generation}, older than generation {had} this laptop "
                "already had from it (was the server restored from a backup?); "
                "nothing was changed: report it to IT"
            ).format(
                persona=persona,
                where=store.connection.where,
                generation=server.generation,
                had=synced["generation"],
            )
        )
    if server.generation < local_gen and (local is None or clean):
        raise IntegrityError(
            (
                _(
                    "persona {persona}: this laptop's record says generation {local_gen}, "
                    "but the team server {where} offers the older generation {generation}; "
                    "nothing was changed: report it to IT"
                )
                if local is not None
                else _(
                    "persona {persona}: this laptop's record says generation {local_gen}, "
                    "but the team server {where} offers the older generation {generation} "
                    "and the laptop's copy is missing; nothing was changed: report it to IT"
                )
            ).format(
                persona=persona,
                local_gen=local_gen,
                where=store.connection.where,
                generation=server.generation,
            )
        )
    remote = TeamBlobStore(store, persona)
    manifest = read_manifest(remote, keys, server.generation)  # authenticated from here on
    if set(manifest.blob_sizes) != set(server.blob_names):
        raise IntegrityError(
            _(
                "persona {persona}: generation {generation} on the team server "
                "lists other blobs than its manifest; it was changed outside "
                "station: report it to IT"
            ).format(persona=persona, generation=server.generation)
        )
    kept: Path | None = None
    if local is not None and not clean:
        mine = read_manifest(copy.blobs, keys, local_gen)
        kept = _keep_aside(copy, local_gen, local, mine.blob_sizes)
    trusted = _trusted(copy, keys, local_gen, local)
    need = [n for n in manifest.blob_sizes if n not in trusted or not copy.blobs.has(n)]
    total = max(1, sum(manifest.blob_sizes[n] + _BLOB_OVERHEAD for n in need))
    aead = keys.aead()
    got = got_bytes = 0
    for name in need:
        data = remote.get(name)
        plain = open_blob(aead, keys, name, data, remote.location)
        if len(plain) != manifest.blob_sizes[name]:
            raise IntegrityError(
                _(
                    "persona {persona}: blob {name} on the team server is not the size "
                    "its manifest says; nothing was opened: report it to IT"
                ).format(persona=persona, name=name)
            )
        del plain
        copy.blobs.put(name, data)
        got += 1
        got_bytes += len(data)
        if progress is not None:
            progress(min(got_bytes, total), total)
    _advance(copy, local_gen, server.generation, server.manifest)
    _mark_synced(copy, server.generation, server.manifest)
    if progress is not None:
        progress(total, total)
    return FetchResult(persona, server.generation, "fetched", got, got_bytes, kept)


def _trusted(copy: LocalCopy, keys: StoreKeys, generation: int, local: bytes | None) -> set[str]:
    """Local blobs a committed local manifest lists: durable, so not fetched again."""
    from outreach_station.vault.blobs import read_manifest

    if local is None:
        return set()
    try:
        mine: Manifest = read_manifest(copy.blobs, keys, generation)
    except (IntegrityError, OSError):
        return set()
    return set(mine.blob_sizes)


def _advance(copy: LocalCopy, local_gen: int, generation: int, manifest: bytes) -> None:
    """Put the manifest in place and move the registry's record, crash-safe as a seal is."""
    registry = copy.registry
    if generation > local_gen:
        # As a seal: pending first, so a crash after the manifest lands is accepted later.
        registry.begin_sealed_generation(copy.persona_id, generation)
        copy.blobs.put_manifest(generation, manifest)
        registry.commit_sealed_generation(copy.persona_id, generation)
    else:
        # This laptop's own generation was kept aside: the server's replaces it.
        registry.commit_sealed_generation(copy.persona_id, generation)
        copy.blobs.put_manifest(generation, manifest)


__all__ = [
    "FetchResult",
    "LeaseSession",
    "LeaseState",
    "LocalCopy",
    "PendingUpload",
    "SetAside",
    "UploadResult",
    "all_set_aside",
    "fetch",
    "flush_pending",
    "hold",
    "pending",
    "set_aside",
    "upload",
    "upload_sealed",
]
