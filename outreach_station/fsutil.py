"""Writing files and directories so that a crash or another account cannot hurt them.

One notion of "durably written" for everything station writes whole: the
data goes to a temporary sibling, is fsynced, renamed (or hard-linked) into
place, and the directory is fsynced. And one notion of a private directory:
created 0700 whatever the umask, and refused when another account could
have made it or can write into it. `paths` computes locations; this module
writes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from outreach_station.errors import EnvironmentProblem, SecurityError, os_error_problem
from outreach_station.i18n import _

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


# ---------------------------------------------------------------- directories


def check_private_dir(path: Path) -> None:
    """Refuse a directory another account could have made, or can write into.

    A directory in a shared place (`/dev/shm`) can be made by anyone before
    station runs (squatting): if it is not ours, or others may write into it,
    whatever station puts there could be read or swapped. One that is ours
    and only readable by others was made by an older station under a loose
    umask; nobody else could have written into it, so it is tightened.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot inspect {path}: {strerror}").format(path=path, strerror=exc.strerror)
        ) from None
    if stat.S_ISLNK(info.st_mode):
        raise SecurityError(
            _("{path} is a symbolic link; refusing to keep station files there: remove it").format(
                path=path
            )
        )
    if not stat.S_ISDIR(info.st_mode):
        raise EnvironmentProblem(
            _("{path} is not a directory: move it away and retry").format(path=path)
        )
    if info.st_uid != os.geteuid():
        raise SecurityError(
            _(
                "{path} belongs to another account (uid {uid}); refusing to keep station "
                "files there: ask IT to remove it"
            ).format(path=path, uid=info.st_uid)
        )
    if info.st_mode & 0o022:
        raise SecurityError(
            _(
                "{path} can be written by other accounts (mode {mode:04o}); "
                "refusing to keep station files there: remove it, or run chmod go= {path}"
            ).format(path=path, mode=stat.S_IMODE(info.st_mode))
        )
    if info.st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)


def ensure_private_dir(path: Path, *, ours: bool = True) -> Path:
    """Create `path` and any missing parents 0700 whatever the umask.

    Existing parents are left as they are (they may be `/home/anna`). With
    `ours` (station's own directories under STATION_HOME or the runtime
    directory) `path` itself is then checked with `check_private_dir`. Without
    it, for a directory IT may own and set up (the audit log's), an existing
    `path` is taken as it is.
    """
    missing = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for new in reversed(missing):
        try:
            os.mkdir(new, PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it first; checked below if it is `path`
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or (ours and exc.errno == errno.EROFS):
                raise os_error_problem(OSError(exc.errno, exc.strerror, str(new))) from None
            message = (
                _("cannot create {new}: {strerror}; check that STATION_HOME is writable")
                if ours
                else _("cannot create {new}: {strerror}")
            )
            raise EnvironmentProblem(message.format(new=new, strerror=exc.strerror)) from None
        os.chmod(new, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    if ours:
        check_private_dir(path)
    return path


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 if it does not exist (never through a symlink)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE))
    except FileExistsError:
        return


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (network shares, FUSE) cannot sync a directory at all.
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------- whole files


def temp_sibling(path: Path) -> Path:
    """A fresh name beside `path` for its next version (same file system, so renames work)."""
    import secrets  # here: reading the store needs no random numbers (start-up)

    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def write_temp(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> Path:
    """Write `data` to a new temporary sibling of `path`, exactly `mode`, fsynced; its name.

    The caller moves it into place (`write_atomic`, `write_exclusive`) or removes it.
    """
    tmp = temp_sibling(path)
    # O_EXCL: meeting an existing file means a concurrent writer, which must
    # not be clobbered.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & PRIVATE_DIR)
    try:
        try:
            os.fchmod(fd, mode)  # the mode given to open() is filtered by the umask
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


def replace_with(tmp: Path, path: Path) -> None:
    """Rename the finished `tmp` over `path` and make that durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def link_new(tmp: Path, path: Path, *, without_links: bool = False) -> bool:
    """Put the finished `tmp` at `path` unless `path` exists; True if this call placed it.

    A hard link refuses an existing `path`, so the file appears complete or not
    at all and two racing creators cannot both win. `without_links`: on a file
    system with no hard links (FAT, some network shares) claim `path` with an
    empty exclusive file and rename over it instead; only for files nothing
    reads while they are written. `tmp` is gone afterwards either way.
    """
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            if not without_links:
                raise
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
            except FileExistsError:
                return False
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return True


def write_atomic(
    path: Path, data: bytes, *, mode: int = PRIVATE_FILE, private_dir: bool = True
) -> None:
    """Replace `path` with `data` (mode 0600 unless told) so readers see the old or the new file.

    `private_dir`: create the parent as a private directory first (station's
    own files); otherwise the parent must exist.
    """
    if private_dir:
        ensure_private_dir(path.parent)
    replace_with(write_temp(path, data, mode=mode), path)


def write_exclusive(
    path: Path, data: bytes, *, mode: int = PRIVATE_FILE, private_dir: bool = True
) -> bool:
    """Create `path` with `data` (0600 unless told) unless it exists; True if this call created it.

    Written to a temporary name and hard-linked into place, so the file
    appears complete or not at all, and two racing creators cannot both win.
    """
    if private_dir:
        ensure_private_dir(path.parent)
    return link_new(write_temp(path, data, mode=mode), path)


def shred_file(path: Path) -> bool:
    """Overwrite `path` with random bytes, fsync, unlink, fsync the directory.

    Returns False if there was nothing to shred. On copy-on-write or
    wear-levelled storage the old blocks may survive the overwrite; what makes
    a shredded key unrecoverable in practice is that it was only ever stored
    wrapped, and the file is small enough to live in one block.
    """
    import secrets

    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        for _attempt in range(2):
            os.lseek(fd, 0, os.SEEK_SET)
            remaining = size
            while remaining:
                written = os.write(fd, secrets.token_bytes(min(remaining, 1 << 16)))
                remaining -= written
            os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    fsync_dir(path.parent)
    return True
