"""Small file-system helpers the vault needs for crash safety.

Kept apart so the key and the sealed-file code share one notion of
"durably written": data fsynced, then renamed, then the directory fsynced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700 whatever the umask; refuse one not ours."""
    from outreach_station.paths import ensure_private_dir as ensure

    ensure(path)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL: a leftover from a crash is removed by the caller first, so
    # meeting one here means a concurrent writer, which must not be clobbered.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600) so readers see the old or the new file."""
    ensure_private_dir(path.parent)
    tmp = _tmp_sibling(path)
    try:
        _write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` with `data` (0600) unless it exists; True if this call created it.

    Written to a temporary name and hard-linked into place, so the file
    appears complete or not at all, and two racing creators cannot both win.
    """
    ensure_private_dir(path.parent)
    tmp = _tmp_sibling(path)
    try:
        _write_new(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return True


def shred_file(path: Path) -> bool:
    """Overwrite `path` with random bytes, fsync, unlink, fsync the directory.

    Returns False if there was nothing to shred. On copy-on-write or
    wear-levelled storage the old blocks may survive the overwrite; what makes
    a shredded key unrecoverable in practice is that it was only ever stored
    wrapped, and the file is small enough to live in one block.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        for _ in range(2):
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
