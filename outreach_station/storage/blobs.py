"""The local blob store: a persona's sealed blobs and its manifest as files under its directory.

    <persona dir>/blobs/<name>        one file per blob (0600)
    <persona dir>/profile.sealed      the newest manifest (0600)

The local store keeps one manifest, the newest: `put_manifest` writes
`profile.sealed.new`, fsyncs it and renames it over `profile.sealed`, the
same file today's format-2 sealed profile lives in, so a format-2 profile is
replaced only when the first format-3 generation lands. Which generation
the file holds is read from the manifest's public header (magic, then the
generation at bytes 12..19). Blobs go to a temporary sibling and are
renamed into place without an fsync each; `put_manifest` first makes every
blob put since the last manifest durable, with one `syncfs` of the store's
file system where the OS has it (Linux), else one fsync per blob, then
fsyncs the blob directory: a manifest never becomes visible before the
blobs it lists are durable. A blob left by a killed seal may therefore be
torn; the vault never relies on a blob its committed manifest does not list
(it writes such a blob again, and `put` replaces it). Leftover temporaries
are removed by `sweep`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
import threading
from pathlib import Path

from outreach_station import fsutil

_NAME = re.compile(r"[0-9a-f]{16,64}")
_FILE_MODE = 0o600
MANIFEST_MAGIC = b"\x89OSMANI\n"
MANIFEST_FILE = "profile.sealed"
# The public part of a manifest's header: magic, format, suite, reserved, generation.
MANIFEST_PREFIX = struct.Struct(">8sBBHQ")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(
    path: Path, data: bytes | bytearray, tmp: Path | None = None, *, sync: bool = True
) -> None:
    """`data` at `path`, whole or not at all; durable when this returns if `sync`."""
    if tmp is None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, _WRITE_FLAGS, _FILE_MODE)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _syncfs(directory: Path) -> bool:
    """Flush the whole file system holding `directory` in one call; False where there is none."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if not hasattr(libc, "syncfs"):
        return False
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)
    return True


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a blob name: {name!r}")
    return name


class LocalBlobStore:
    """A `storage.base.BlobStore` in a persona's directory of the station home."""

    def __init__(self, persona_dir: Path) -> None:
        self.root = persona_dir
        self.manifest_file = persona_dir / MANIFEST_FILE
        self.location = str(self.manifest_file)
        self._blobs = persona_dir / "blobs"
        self._dirs_made = False
        self._unsynced: list[Path] = []
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if not self._dirs_made:
            fsutil.ensure_private_dir(self.root)
            fsutil.ensure_private_dir(self._blobs)
            self._dirs_made = True

    def has(self, name: str) -> bool:
        return (self._blobs / _check_name(name)).exists()

    def put(self, name: str, data: bytes | bytearray) -> bool:
        """Store blob `name` (replacing a torn leftover); durable once a manifest is put."""
        self._ensure()
        target = self._blobs / _check_name(name)
        _write_file(target, data, sync=False)
        with self._lock:
            self._unsynced.append(target)
        return True

    def _flush_blobs(self) -> None:
        with self._lock:
            pending, self._unsynced = self._unsynced, []
        if pending and not _syncfs(self._blobs):
            for path in pending:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(self._blobs)

    def get(self, name: str) -> bytes:
        with open(self._blobs / _check_name(name), "rb") as source:
            return source.read()

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._blobs / _check_name(name)).unlink()

    def names(self) -> set[str]:
        try:
            return {n for n in os.listdir(self._blobs) if _NAME.fullmatch(n)}
        except FileNotFoundError:
            return set()

    def _held(self, *, whole: bool = True) -> tuple[int, bytes] | None:
        try:
            with open(self.manifest_file, "rb") as source:
                data = source.read() if whole else source.read(MANIFEST_PREFIX.size)
        except FileNotFoundError:
            return None
        if len(data) < MANIFEST_PREFIX.size or data[:8] != MANIFEST_MAGIC:
            return None  # a format-2 sealed file, or damage: no manifest
        return MANIFEST_PREFIX.unpack_from(data)[4], data

    def put_manifest(self, generation: int, data: bytes) -> None:
        self._ensure()
        # The blobs first: the manifest must never outlive them.
        self._flush_blobs()
        pending = self.root / (MANIFEST_FILE + ".new")
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()  # a killed seal's leftover; the persona's lock holder is us
        _write_file(self.manifest_file, data, pending)
        _fsync_dir(self.root)

    def get_manifest(self, generation: int) -> bytes:
        held = self._held()
        if held is None or held[0] != generation:
            raise FileNotFoundError(f"no manifest of generation {generation}")
        return held[1]

    def manifests(self) -> list[int]:
        held = self._held(whole=False)
        return [] if held is None else [held[0]]

    def delete_manifest(self, generation: int) -> None:
        held = self._held(whole=False)
        if held is not None and held[0] == generation:
            self.manifest_file.unlink()

    def exists(self) -> bool:
        return self.manifest_file.exists()

    def sweep(self) -> None:
        """Remove what a killed writer left: temporaries never renamed into place."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / (MANIFEST_FILE + ".new")).unlink()
        try:
            listed = os.listdir(self._blobs)
        except FileNotFoundError:
            return
        for name in listed:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    (self._blobs / name).unlink()

    def sync(self) -> None:
        """Make deletions durable (after unreferenced blobs were removed)."""
        if self._blobs.is_dir():
            _fsync_dir(self._blobs)

    def remove_all(self) -> bool:
        """Delete every blob and the manifest (a retired persona); whether there was any."""
        import shutil

        had = self._blobs.exists()
        shutil.rmtree(self._blobs, ignore_errors=True)
        return had
