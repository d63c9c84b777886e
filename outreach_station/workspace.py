"""A persona's profile while it is open: its lock, its unsealed workspace, recovery.

Only one station process may have a persona open: the lock is an exclusive
`flock` on a per-persona lock file, which the kernel releases by itself if
station is killed, so a crash never leaves a persona locked.

At rest a persona exists only as its sealed profile (see `vault`). While it
is open, the plaintext lives in a private 0700 directory on RAM-backed
storage (`$XDG_RUNTIME_DIR` or `/dev/shm`), and a small marker beside the
sealed file records that it is open, so that a crash can be told apart from
a clean close and mended by `recover`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from outreach_station import clock, fsutil, paths
from outreach_station.errors import IntegrityError, StationError
from outreach_station.i18n import _
from outreach_station.paths import StationPaths
from outreach_station.storage.locks import (
    PersonaLock,
    holder_pid,
    is_locked,
    persona_lock,
    platform_lock,
)

if TYPE_CHECKING:
    from outreach_station.storage import BlobStore, Store
    from outreach_station.vault import ProgressCallback, SealStats
    from outreach_station.vault.blobs import Baseline, Manifest, StoreKeys

# The locks are the store's; named here too for callers of the workspace.
__all__ = [
    "DataKeys",
    "DeferredSignals",
    "PersonaLock",
    "Recovery",
    "RekeyingKeys",
    "SealedState",
    "Workspace",
    "holder_pid",
    "is_locked",
    "needs_recovery",
    "open_workspace",
    "persona_lock",
    "platform_lock",
    "recover",
    "sealed_file",
    "wipe",
    "workspace_dir",
    "workspace_root",
]


class DataKeys(Protocol):
    """Where a persona's data key comes from: the laptop's vault, or the team's wrapped keys."""

    def ensure_data_key(self, persona_id: str) -> bytes: ...


@runtime_checkable
class RekeyingKeys(DataKeys, Protocol):
    """Keys that may seal the next generation with another key than the one that unseals it.

    A team persona re-keyed after a member's removal (`team.opening.TeamKeys`)
    is unsealed with its current key and sealed with the new one.
    """

    def sealing_key(self, persona_id: str) -> bytes: ...


def _sealing_key(keys: DataKeys, persona_id: str) -> bytes:
    """The key a persona's next generation is sealed with (a new one after a re-key)."""
    if isinstance(keys, RekeyingKeys):
        return keys.sealing_key(persona_id)
    return keys.ensure_data_key(persona_id)


def _mkdir_private(path: Path) -> None:
    # Also the runtime base, which another account could have made first in /dev/shm.
    fsutil.ensure_private_dir(path)


SEALED_NAME = "profile.sealed"
OPEN_MARKER = "open.json"


@dataclass(frozen=True)
class Workspace:
    """A persona's unsealed profile, private to this process while it is open.

    `directory` is what gets sealed. It holds the browser's user-data dir
    (`profile`) and a private `home` the browser gets as HOME and XDG dirs, so
    that nothing Chromium keeps outside its profile (crash reports, the NSS
    certificate store) lands in, or is read from, the person's own home.
    """

    persona_id: str
    directory: Path
    sealed_file: Path
    ram_backed: bool

    @property
    def profile(self) -> Path:
        return self.directory / "profile"

    @property
    def home(self) -> Path:
        return self.directory / "home"


def workspace_root(station: StationPaths) -> tuple[Path, bool]:
    """Where this station home's open profiles live, and whether that is RAM."""
    base, ram = paths.runtime_base()
    # One station home's workspaces never meet another's (tests, several homes).
    tag = hashlib.sha256(str(station.home).encode()).hexdigest()[:12]
    return base / tag, ram


def workspace_dir(station: StationPaths, persona_id: str) -> Path:
    return workspace_root(station)[0] / persona_id


def sealed_file(station: StationPaths, persona_id: str) -> Path:
    return station.persona_dir(persona_id) / SEALED_NAME


def _marker(station: StationPaths, persona_id: str) -> Path:
    return station.persona_dir(persona_id) / OPEN_MARKER


@dataclass(frozen=True)
class SealedState:
    """Which generation of a persona's sealed profile is the current one: the one place that says.

    The registry records the generation of the newest sealed file, and the
    one being renamed into place while a seal finishes. Anything else is
    refused before a byte of it is opened, and never sealed over: an older
    genuine file put back, a file newer than the record, or the file gone.
    A crash between the rename and the record leaves either generation
    acceptable, never an older one. A persona never sealed has generation 0
    and no file; a version-1 file (no generation) is accepted while nothing
    is on record, and gets a generation at its next seal.
    """

    station: StationPaths
    persona_id: str
    # The command's store; one is opened for each question when none is given.
    store: Store | None = None

    @property
    def file(self) -> Path:
        return sealed_file(self.station, self.persona_id)

    @contextlib.contextmanager
    def _store(self) -> Iterator[Store]:
        if self.store is not None:
            yield self.store
            return
        from outreach_station.storage import open_store

        with open_store(self.station) as opened:
            yield opened

    def on_record(self) -> tuple[int, int | None]:
        with self._store() as reg:
            return reg.sealed_generation(self.persona_id)

    def _refusal(self, found: int | None, exists: bool) -> str | None:
        current, pending = self.on_record()
        expected = (
            _("generation {current} (or {pending})").format(current=current, pending=pending)
            if pending is not None
            else _("generation {current}").format(current=current)
        )
        if not exists:
            if current == 0:
                return None
            return _(
                "persona {persona}: its sealed profile {file} is missing, "
                "{expected} is on record; refusing to open it as a blank profile. Put the "
                "newest profile.sealed back, or retire the persona"
            ).format(persona=self.persona_id, file=self.file, expected=expected)
        if found == current or (found is None and current == 0):
            return None
        if found is not None and found == pending:
            return None
        what = (
            _("a file without a generation (format 1)")
            if found is None
            else _("generation {current}").format(current=found)
        )
        why = (
            _("the registry is older than the file (restored or replaced?)")
            if found is not None and found > max(current, pending or 0)
            else _("an older copy was put back or the file was replaced")
        )
        return _(
            "persona {persona}: its sealed profile {file} is {what}, {expected} "
            "is on record: {why}; refusing to open or overwrite it. Put the newest "
            "profile.sealed back, or retire the persona"
        ).format(persona=self.persona_id, file=self.file, what=what, expected=expected, why=why)

    def accept(self, found: int | None, *, exists: bool = True) -> None:
        """Raise IntegrityError unless `found` (None: format 1) is the generation on record."""
        refusal = self._refusal(found, exists)
        if refusal is not None:
            raise IntegrityError(refusal)
        _current, pending = self.on_record()
        if exists and found is not None and found == pending:
            # The last seal renamed its file into place but crashed before recording it.
            with self._store() as reg:
                reg.commit_sealed_generation(self.persona_id, found)

    def check_file(self) -> None:
        """Refuse a missing file the registry expects, or a manifest of another generation.

        A format-3 or format-4 manifest's generation is checked here from its header,
        before a byte of the profile is read (and again, authenticated, as it
        opens); a format-2 file is checked as it opens.
        """
        from outreach_station.vault.blobs import is_manifest, peek_generation

        if not self.file.exists():
            self.accept(None, exists=False)
        elif is_manifest(self.file):
            refusal = self._refusal(peek_generation(self.file, self.persona_id), True)
            if refusal is not None:
                raise IntegrityError(refusal)

    def problem(self) -> str | None:
        """What is wrong with the sealed file, from its unauthenticated header (status, doctor)."""
        from outreach_station.vault import peek_generation

        try:
            found = peek_generation(self.file, self.persona_id)
        except FileNotFoundError:
            return self._refusal(None, exists=False)
        except (OSError, StationError) as exc:
            return _("persona {persona}: its sealed profile {file} is unreadable: {exc}").format(
                persona=self.persona_id, file=self.file, exc=exc
            )
        return self._refusal(found, exists=True)

    def blobs(self) -> BlobStore:
        from outreach_station.storage import open_blob_store

        return open_blob_store(self.station, self.persona_id)

    def unseal(self, directory: Path, key: bytes, progress: ProgressCallback | None) -> Unsealed:
        """Write the current generation into `directory`, format 4, 3 or 2; refuse any other.

        The caller wipes `directory` if this raises.
        """
        from outreach_station.vault import unseal_file
        from outreach_station.vault.blobs import (
            StoreKeys,
            is_manifest,
            peek_generation,
            read_manifest,
            unseal_tree,
        )

        if not self.file.exists():
            return Unsealed(None, None)
        if not is_manifest(self.file):
            unseal_file(self.file, directory, key, self.persona_id, progress, check=self.accept)
            return Unsealed(None, None)
        keys = StoreKeys.derive(key, self.persona_id)
        store = self.blobs()
        claimed = peek_generation(self.file, self.persona_id)
        refusal = self._refusal(claimed, True)
        if refusal is not None or claimed is None:
            raise IntegrityError(refusal or f"persona {self.persona_id}: no generation")
        manifest = read_manifest(store, keys, claimed)  # authenticated from here on
        self.accept(manifest.generation)
        _stats, baseline = unseal_tree(store, keys, manifest, directory, progress)
        return Unsealed(manifest, baseline)

    def _committed_blobs(
        self, keys: StoreKeys, current: int, pending: int | None, known: Manifest | None
    ) -> set[str]:
        """The blobs of the manifest in place, if on record (or pending): durable, reusable.

        A manifest renamed into place by a seal killed before the registry
        recorded it is the pending one: its blobs are durable too, and a
        recovery must not rewrite what it lists.
        """
        from outreach_station.vault.blobs import newest_generation, read_manifest

        if known is not None:
            return set(known.blob_sizes)
        store = self.blobs()
        in_place = newest_generation(store)
        if in_place is None or in_place not in (current, pending):
            return set()  # nothing to build on: every blob is written afresh
        try:
            return set(read_manifest(store, keys, in_place).blob_sizes)
        except (IntegrityError, OSError):
            return set()

    def seal(
        self,
        directory: Path,
        key: bytes,
        progress: ProgressCallback | None,
        *,
        since: Unsealed | None = None,
    ) -> SealStats:
        """Seal `directory` as the next generation, recorded in the registry as it lands.

        `since` is what this process unsealed into `directory`: files still
        as they were written then keep their blobs without being read again.
        Afterwards, blobs the new generation does not use are removed.
        """
        from dataclasses import replace

        from outreach_station.vault.blobs import StoreKeys, collect, seal_tree

        keys = StoreKeys.derive(key, self.persona_id)
        store = self.blobs()
        with self._store() as reg:
            current, pending = reg.sealed_generation(self.persona_id)
            # Past a pending one too: a generation number is never reused for other contents.
            generation = max(current, pending or 0) + 1
            previous = since.manifest if since is not None else None
            if previous is not None and previous.generation != current:
                previous = None  # not what is on record: read everything again
            stats, manifest = seal_tree(
                directory,
                store,
                keys,
                generation=generation,
                previous=previous,
                baseline=since.baseline if previous is not None and since is not None else None,
                trusted=self._committed_blobs(keys, current, pending, previous),
                before_manifest=lambda: reg.begin_sealed_generation(self.persona_id, generation),
                progress=progress,
            )
            reg.commit_sealed_generation(self.persona_id, generation)
        removed = 0
        # Committed: what is left over is garbage, and failing to sweep it loses nothing.
        with contextlib.suppress(OSError):
            removed = collect(store, manifest)
        return replace(stats, blobs_removed=removed)


@dataclass(frozen=True)
class Unsealed:
    """What an unseal wrote: the manifest (None: format 2 or nothing) and each file's stat."""

    manifest: Manifest | None
    baseline: Baseline | None


def wipe(directory: Path) -> None:
    """Remove a plaintext workspace; the browser must have exited."""
    shutil.rmtree(directory, ignore_errors=True)


def _stop_orphaned_browser(directory: Path, notify: Callable[[str], None]) -> None:
    """A killed station can leave its Chromium running on the workspace: stop it first."""
    try:
        target = os.readlink(directory / "profile" / "SingletonLock")
    except OSError:
        return
    _host, _sep, pid_text = target.rpartition("-")
    if not pid_text.isdigit():
        return
    pid = int(pid_text)
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            notify(
                _("stopping a browser left running on {name} (process {pid})").format(
                    name=directory.name, pid=pid
                )
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _remove_outside_scratch(directory: Path) -> None:
    """A killed browser whose TMPDIR was the system's leaves its scratch folder there."""
    import tempfile

    try:
        target = Path(os.readlink(directory / "profile" / "SingletonSocket"))
    except OSError:
        return
    scratch = target.parent
    if (
        scratch.parent == Path(tempfile.gettempdir())
        and scratch.name.startswith("org.chromium.Chromium.")
        and scratch.is_dir()
        and not scratch.is_symlink()
        and scratch.stat().st_uid == os.getuid()
    ):
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Recovery:
    persona_id: str
    resealed: bool
    lost_since: str | None


def recover(
    station: StationPaths,
    persona_id: str,
    vault: DataKeys,
    *,
    notify: Callable[[str], None],
    progress: ProgressCallback | None = None,
    store: Store | None = None,
) -> Recovery | None:
    """Mend what a crash left behind for a persona; the caller holds its lock.

    A leftover plaintext workspace is sealed as the newest generation (nothing
    lost). If the workspace is gone but the persona was marked open (RAM
    cleared by a reboot), the last sealed generation stands and the person is
    told what was lost.
    """
    directory = workspace_dir(station, persona_id)
    marker = _marker(station, persona_id)
    opened_at: str | None = None
    if marker.exists():
        with contextlib.suppress(OSError, ValueError):
            opened_at = str(json.loads(marker.read_text()).get("opened"))
    if directory.is_dir() and not marker.exists():
        # Killed while unsealing (the marker is written once unsealing is done):
        # a partial copy of the sealed profile, which stands as it is.
        wipe(directory)
    if directory.is_dir() and any(directory.iterdir()):
        _stop_orphaned_browser(directory, notify)
        _remove_outside_scratch(directory)
        notify(
            _(
                "persona {persona_id} was not closed cleanly; sealing the profile it left open"
            ).format(persona_id=persona_id)
        )
        # The leftover plaintext is newer than any sealed file, whatever its generation.
        SealedState(station, persona_id, store).seal(
            directory, _sealing_key(vault, persona_id), progress
        )
        # Marker first: a half-wiped workspace with its marker would be sealed over this.
        marker.unlink(missing_ok=True)
        wipe(directory)
        # What the browser had not yet written when it was killed is not in the
        # workspace, and nothing here can know how much that was.
        notify(
            _(
                "persona {persona_id} recovered: the profile it left open is sealed; its browser "
                "was stopped without closing, so changes from its last moments may be missing"
            ).format(persona_id=persona_id)
        )
        return Recovery(persona_id=persona_id, resealed=True, lost_since=None)
    if directory.exists():
        wipe(directory)
    if marker.exists():
        marker.unlink()
        when = opened_at or "its last open"
        notify(
            _(
                "persona {persona_id} was not closed cleanly and its open profile is gone "
                "(the machine restarted?): what happened since {when} is lost; "
                "the last sealed profile is used"
            ).format(persona_id=persona_id, when=opened_at or _("its last open"))
        )
        return Recovery(persona_id=persona_id, resealed=False, lost_since=when)
    return None


def needs_recovery(station: StationPaths, persona_id: str) -> bool:
    return _marker(station, persona_id).exists() or workspace_dir(station, persona_id).exists()


@contextlib.contextmanager
def open_workspace(
    station: StationPaths,
    persona_id: str,
    vault: DataKeys,
    *,
    notify: Callable[[str], None],
    progress: Callable[[str], ProgressCallback | None] | None = None,
    on_recovered: Callable[[Recovery], None] | None = None,
    store: Store | None = None,
) -> Iterator[Workspace]:
    """Unseal a persona's profile into a private RAM-backed directory; reseal it after.

    Holds the persona's lock throughout. The plaintext exists only while the
    block runs: it is sealed as a new generation and wiped afterwards. If
    sealing fails the plaintext is kept where it is, so that the next command
    can recover it, and the error says so.
    """

    def bar(action: str) -> ProgressCallback | None:
        return progress(action) if progress is not None else None

    with persona_lock(station, persona_id):
        recovered = recover(
            station, persona_id, vault, notify=notify, progress=bar("sealing"), store=store
        )
        if recovered is not None and on_recovered is not None:
            on_recovered(recovered)
        root, ram = workspace_root(station)
        if not ram:
            notify(
                _(
                    "warning: no RAM-backed directory here; "
                    "the open profile lives on disk in {root}"
                ).format(root=root)
            )
        state = SealedState(station, persona_id, store)
        sealed = state.file
        # Everything that can refuse runs before the workspace exists: a refused
        # open leaves nothing behind that would look like a crash.
        state.check_file()
        key = vault.ensure_data_key(persona_id)
        seal_key = _sealing_key(vault, persona_id)
        _mkdir_private(root.parent)
        _mkdir_private(root)
        directory = workspace_dir(station, persona_id)
        _mkdir_private(directory)
        try:
            unsealed = state.unseal(directory, key, bar("unsealing"))
        except BaseException:
            wipe(directory)
            raise
        workspace = Workspace(
            persona_id=persona_id, directory=directory, sealed_file=sealed, ram_backed=ram
        )
        _mkdir_private(workspace.profile)
        _mkdir_private(workspace.home)
        _move_cookies_off_the_keyring(workspace, notify)
        marker = _marker(station, persona_id)
        marker.unlink(missing_ok=True)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(
                json.dumps({"opened": clock.iso(clock.utcnow()), "workspace": str(directory)})
            )
        try:
            yield workspace
        finally:
            try:
                # A new key shares no blob with the old one: everything is sealed afresh.
                state.seal(
                    directory,
                    seal_key,
                    bar("sealing"),
                    since=unsealed if hmac.compare_digest(seal_key, key) else None,
                )
            except BaseException as exc:
                raise StationError(
                    _(
                        "persona {persona_id} could not be sealed ({exc}); its open profile is "
                        "kept in {directory} and the next station command will retry"
                    ).format(persona_id=persona_id, exc=exc, directory=directory)
                ) from exc
            # Sealed: the marker goes first, so that a kill while wiping leaves a
            # workspace `recover` wipes, not one it seals over the new generation.
            marker.unlink(missing_ok=True)
            wipe(directory)


def _move_cookies_off_the_keyring(workspace: Workspace, notify: Callable[[str], None]) -> None:
    """Cookies sealed when the browser kept its key in the keyring (see cookie_key)."""
    from outreach_station.cookie_key import migrate_profile

    try:
        done = migrate_profile(workspace.profile)
    except (OSError, StationError) as exc:
        notify(
            _("warning: the cookies of persona {persona_id} were not checked: {exc}").format(
                persona_id=workspace.persona_id, exc=exc
            )
        )
        return
    if done.left:
        notify(
            _(
                "warning: {left} cookies of persona {persona_id} are encrypted with "
                "a 'Chromium Safe Storage' key that the keyring no longer gives: the browser will "
                "drop them, so sign in to that platform again"
            ).format(left=done.left, persona_id=workspace.persona_id)
        )


class DeferredSignals:
    """Hold SIGINT/SIGTERM/SIGHUP while a profile is unsealed or sealed.

    A shift ending in the middle of sealing must not leave half a
    generation: the signal is remembered and acted on once sealing is done.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(
                sig, lambda number, _frame: self.received.append(signal.Signals(number).name)
            )

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
