"""Locks of the local store: which process holds a platform or a persona right now.

Lock files under the station's runtime directory, held with flock: a crashed
process's lock is released by the kernel. Holding a persona's lock is what
"open" means to every other station process on this machine; the team
backend adds a lease on the server on top of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from outreach_station import fsutil
from outreach_station.errors import BusyError, EnvironmentProblem
from outreach_station.i18n import N_, _
from outreach_station.paths import StationPaths


@dataclass(frozen=True)
class PersonaLock:
    persona_id: str
    path: Path
    fd: int


@contextlib.contextmanager
def _exclusive(path: Path, busy: Callable[[str], BusyError]) -> Iterator[int]:
    # Also the runtime base, which another account could have made first in /dev/shm.
    fsutil.ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot create the lock file {path}: {strerror}").format(
                path=path, strerror=exc.strerror
            )
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise busy(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield fd
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)


# What callers lock a platform for (lifecycle, rotation, session), marked here
# so the refusal shows it translated; an action not listed shows as given.
PLATFORM_ACTIONS: Final = (N_("opened or rotated"),)


@contextlib.contextmanager
def platform_lock(station: StationPaths, platform_id: str, *, action: str) -> Iterator[None]:
    """Serialise changes to one platform's personas (a rotation) across processes."""
    path = station.locks / f"platform-{platform_id}.lock"
    with _exclusive(
        path,
        lambda holder: BusyError(
            _(
                "platform {platform_id} is being {action} by another station "
                "(process {holder}); nothing was changed"
            ).format(platform_id=platform_id, action=_(action), holder=holder)
        ),
    ):
        yield


@contextlib.contextmanager
def persona_lock(station: StationPaths, persona_id: str) -> Iterator[PersonaLock]:
    """Hold a persona exclusively, or raise BusyError if another station has it."""
    path = station.persona_lock(persona_id)
    with _exclusive(
        path,
        lambda holder: BusyError(
            _(
                "persona {persona_id} is already open in another station session "
                "(process {holder}); close that browser first"
            ).format(persona_id=persona_id, holder=holder)
        ),
    ) as fd:
        yield PersonaLock(persona_id=persona_id, path=path, fd=fd)


def is_locked(station: StationPaths, persona_id: str) -> bool:
    """Whether some process holds the persona open right now."""
    path = station.persona_lock(persona_id)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def holder_pid(station: StationPaths, persona_id: str) -> int | None:
    """The process that holds the persona open, as its lock file says (None: unknown)."""
    try:
        text = station.persona_lock(persona_id).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def first_use_lock(station: StationPaths) -> Iterator[None]:
    """Wait for, then hold, the lock under which a station home's vault is first set up.

    Ten first opens at once must make one master key and one settings file,
    not ten keys of which nine are orphaned.
    """
    with held_lock(station.locks / "vault-init.lock"):
        yield


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on the file `path` (made private if new)."""
    fsutil.ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot create the lock file {path}: {strerror}").format(
                path=path, strerror=exc.strerror
            )
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _closing_note(station: StationPaths, persona_id: str) -> Path:
    return station.locks / f"{persona_id}.closing"


def note_closing(station: StationPaths, persona_id: str, why: str) -> None:
    """Leave word for the process holding `persona_id` of why it is asked to close.

    Written before that process is signalled, so that it can tell the person
    at its window who ended the session (a signal carries no reason).
    """
    fsutil.ensure_private_dir(station.locks)
    path = _closing_note(station, persona_id)
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, why.encode()[:64])
        finally:
            os.close(fd)


def take_closing_note(station: StationPaths, persona_id: str) -> str | None:
    """The reason another station gave for closing the persona, once (None: none given)."""
    path = _closing_note(station, persona_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
    return text or None
