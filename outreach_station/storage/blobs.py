"""The local blob store: a persona's sealed blobs in pack files, and its manifest.

    <persona dir>/blobs/<pack id>.pack   the blobs one seal wrote, back to back (0600)
    <persona dir>/blobs/<name>           one blob per file: what stores before packs held
    <persona dir>/profile.sealed         the newest manifest (0600)

A seal's new blobs go into one pack: `put` appends each blob to
`.<pack id>.pack.tmp`; `put_manifest` first writes the pack's index and
footer, fsyncs that one file, renames it into place and fsyncs the
directory, while a second thread writes and fsyncs `profile.sealed.new`;
only then is the manifest renamed into place:
a manifest never becomes visible before the blobs it lists are durable, and
a pack is in place only whole. A killed seal leaves a `.tmp` pack that
`sweep` removes. Blobs keep their identity (a name each), so a team store
can hold the same blobs one by one; a pack is only how this disk keeps them.

Garbage: `delete` of a blob in a pack only forgets it (the index in the
pack stays as written); `sweep` removes a pack none of whose blobs is live
(deleted, or written again in a newer pack) and rewrites one whose dead
blobs weigh more than its live ones, so dead bytes never take more room
than live ones plus the newest seal's garbage. Which generation the manifest holds is read from its
public header (magic, then the generation at bytes 12..19). Blob files of
stores written before packs are read, and deleted when garbage, as before.
docs/sealed-format.md has the pack byte by byte.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable
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


def _stage(path: Path, data: bytes | bytearray) -> None:
    """`data` written to the new file `path` and fsynced, not yet renamed anywhere."""
    fd = os.open(path, _WRITE_FLAGS, _FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _catching(failed: list[BaseException], fn: Callable[..., None], *args: object) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # handed to the caller's thread
        failed.append(exc)


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a blob name: {name!r}")
    return name


PACK_MAGIC = b"\x89OSPACK\n"
PACK_VERSION = 1
PACK_SUFFIX = ".pack"
# After the blobs: one entry per blob, then the footer.
PACK_ENTRY = struct.Struct(">B32sQI")  # name length, name (binary, zero-padded), offset, length
PACK_FOOTER = struct.Struct(">QIB3s8s")  # index offset, count, version, reserved, magic
_PACK_NAME = re.compile(r"([0-9a-f]{16})\.pack")

Where = tuple[str, int, int]  # pack file name, offset, length


def _read_pack_index(path: Path) -> list[Where] | None:
    """The (name, offset, length) of each blob in a pack; None if it is not a whole pack."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size < PACK_FOOTER.size:
            return None
        at, count, version, reserved, magic = PACK_FOOTER.unpack(
            os.pread(fd, PACK_FOOTER.size, size - PACK_FOOTER.size)
        )
        if (
            magic != PACK_MAGIC
            or version != PACK_VERSION
            or reserved != b"\0\0\0"
            or at + count * PACK_ENTRY.size + PACK_FOOTER.size != size
        ):
            return None
        raw = os.pread(fd, count * PACK_ENTRY.size, at)
    finally:
        os.close(fd)
    found: list[Where] = []
    for length, name, offset, blob in PACK_ENTRY.iter_unpack(raw):
        if not 8 <= length <= 32 or offset + blob > at:  # 16 to 64 hex digits
            return None
        found.append((name[:length].hex(), offset, blob))
    return found


class _Pending:
    """The pack a seal is appending to, not yet in place."""

    def __init__(self, tmp: Path, final: Path) -> None:
        self.tmp = tmp
        self.final = final
        self.fd = os.open(tmp, _WRITE_FLAGS, _FILE_MODE)
        self.end = 0
        self.entries: dict[str, tuple[int, int]] = {}


class LocalBlobStore:
    """A `storage.base.BlobStore` in a persona's directory of the station home."""

    def __init__(self, persona_dir: Path) -> None:
        self.root = persona_dir
        self.manifest_file = persona_dir / MANIFEST_FILE
        self.location = str(self.manifest_file)
        self._blobs = persona_dir / "blobs"
        self._dirs_made = False
        self._lock = threading.Lock()
        self._pending: _Pending | None = None
        # Loaded at first use: the newest place of each packed blob, each pack's blobs,
        # the loose blob files, the names deleted since.
        self._index: dict[str, Where] | None = None
        self._packs: dict[str, list[Where]] = {}
        self._loose: set[str] = set()
        self._deleted: set[str] = set()
        # Packs that lost a live blob since `sweep` last looked at them (all of them
        # at load): only these can have become garbage, so only these are looked at.
        self._touched: set[str] = set()
        self._sequence = 0  # the highest pack's, damaged ones included (never replaced)

    def _ensure(self) -> None:
        if not self._dirs_made:
            fsutil.ensure_private_dir(self.root)
            fsutil.ensure_private_dir(self._blobs)
            self._dirs_made = True

    def _load(self) -> dict[str, Where]:
        if self._index is not None:
            return self._index
        index: dict[str, Where] = {}
        try:
            listed = sorted(os.listdir(self._blobs))
        except FileNotFoundError:
            listed = []
        for entry in listed:
            if _NAME.fullmatch(entry):
                self._loose.add(entry)
            elif _PACK_NAME.fullmatch(entry):
                self._sequence = max(self._sequence, int(entry[:16], 16))
                found = _read_pack_index(self._blobs / entry)
                if found is None:
                    continue  # not written by station: kept, its blobs count as missing
                self._packs[entry] = found
                self._touched.add(entry)
                # Sorted by sequence number: a blob written again lives in the newest pack.
                for name, offset, length in found:
                    index[name] = (entry, offset, length)
        self._index = index
        return index

    def has(self, name: str) -> bool:
        return _check_name(name) in self.names()

    def put(self, name: str, data: bytes | bytearray) -> bool:
        """Append blob `name` to this seal's pack; durable once a manifest is put."""
        self._ensure()
        _check_name(name)
        with self._lock:
            self._load()
            pending = self._pending
            if pending is None:
                self._sequence += 1
                final = self._blobs / f"{self._sequence:016x}{PACK_SUFFIX}"
                tmp = self._blobs / f".{final.name}.{secrets.token_hex(6)}.tmp"
                pending = self._pending = _Pending(tmp, final)
            offset = pending.end
            pending.end += len(data)
            pending.entries[name] = (offset, len(data))
        view = memoryview(data)
        while view:
            written = os.pwrite(pending.fd, view, offset)
            view = view[written:]
            offset += written
        return True

    def _flush_blobs(self) -> None:
        """Put this seal's pack in place, durable: index, footer, fsync, rename, fsync dir."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        index = self._load()
        try:
            rows = b"".join(
                PACK_ENTRY.pack(len(name) // 2, bytes.fromhex(name), offset, length)
                for name, (offset, length) in pending.entries.items()
            )
            footer = PACK_FOOTER.pack(
                pending.end, len(pending.entries), PACK_VERSION, b"\0\0\0", PACK_MAGIC
            )
            tail = memoryview(rows + footer)
            at = pending.end
            while tail:
                written = os.pwrite(pending.fd, tail, at)
                tail = tail[written:]
                at += written
            os.fsync(pending.fd)
        except BaseException:
            os.close(pending.fd)
            with contextlib.suppress(FileNotFoundError):
                pending.tmp.unlink()
            raise
        os.close(pending.fd)
        os.replace(pending.tmp, pending.final)
        _fsync_dir(self._blobs)
        pack = pending.final.name
        self._packs[pack] = [(n, o, n_) for n, (o, n_) in pending.entries.items()]
        for name, (offset, length) in pending.entries.items():
            was = index.get(name)
            if was is not None:
                self._touched.add(was[0])  # written again: its old place is dead
            index[name] = (pack, offset, length)
            self._deleted.discard(name)
            if name in self._loose:  # a blob file left from before packs, or torn
                self._loose.discard(name)
                with contextlib.suppress(FileNotFoundError):
                    (self._blobs / name).unlink()

    def get(self, name: str) -> bytes:
        _check_name(name)
        with self._lock:
            pending = self._pending
            if pending is not None and name in pending.entries:
                offset, length = pending.entries[name]
                return os.pread(pending.fd, length, offset)
        where = None if name in self._deleted else self._load().get(name)
        if where is None:
            with open(self._blobs / name, "rb") as source:
                return source.read()
        pack, offset, length = where
        fd = os.open(self._blobs / pack, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def delete(self, name: str) -> None:
        """Forget blob `name`: its file is removed; a packed one waits for `sweep`."""
        _check_name(name)
        index = self._load()
        if name in self._loose:
            self._loose.discard(name)
            with contextlib.suppress(FileNotFoundError):
                (self._blobs / name).unlink()
        with self._lock:
            pending = self._pending
            if pending is not None and pending.entries.pop(name, None) is not None:
                return  # a failed seal's: the whole pack goes at `sweep`
        if name in index:
            # Its bytes stay in the pack until `sweep` rewrites or removes the pack.
            self._deleted.add(name)
            self._touched.add(index[name][0])

    def names(self) -> set[str]:
        return (set(self._load()) | self._loose) - self._deleted

    def spans(self) -> dict[str, tuple[Path, int, int]]:
        """Where each blob's bytes are: file, offset, length (tests, doctor)."""
        found = {
            name: (self._blobs / pack, offset, length)
            for name, (pack, offset, length) in self._load().items()
            if name not in self._deleted
        }
        for name in self._loose:
            found.setdefault(name, (self._blobs / name, 0, (self._blobs / name).stat().st_size))
        return found

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
        pending = self.root / (MANIFEST_FILE + ".new")
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()  # a killed seal's leftover; the persona's lock holder is us
        # The manifest's bytes go to disk while the pack's do (two fsyncs at once, not
        # one after the other); it is renamed into place only once the pack is durable:
        # the manifest must never outlive its blobs.
        failed: list[BaseException] = []
        staged = threading.Thread(
            target=_catching, args=(failed, _stage, pending, data), name="vault-manifest"
        )
        staged.start()
        try:
            try:
                self._flush_blobs()
            finally:
                staged.join()
            if failed:
                raise failed[0]
            os.replace(pending, self.manifest_file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                pending.unlink()
            raise
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
        """Remove what a killed or failed writer left, and packs that hold mostly garbage.

        A pack none of whose blobs is live (deleted, or written again in a
        newer pack) is removed; one with more dead blobs than live ones has
        its live blobs copied into a new pack, put in place durably before
        the old one is removed.
        """
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            os.close(pending.fd)
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
        index = self._load()
        touched, self._touched = self._touched, set()
        for pack in sorted(touched):
            held = self._packs.get(pack)
            if held is None:
                continue
            live = [
                (name, offset, length)
                for name, offset, length in held
                if name not in self._deleted and index.get(name, ("",))[0] == pack
            ]
            # Dead bytes up to the live ones are left (a copy costs as much as they weigh).
            if live and sum(n for _b, _o, n in live) * 2 >= sum(n for _b, _o, n in held):
                continue
            for name, offset, length in live:
                fd = os.open(self._blobs / pack, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    data = os.pread(fd, length, offset)
                finally:
                    os.close(fd)
                self.put(name, data)
            self._flush_blobs()
            for name, _o, _n in self._packs.pop(pack):
                if index.get(name, ("",))[0] == pack:
                    del index[name]
                    self._deleted.discard(name)
            with contextlib.suppress(FileNotFoundError):
                (self._blobs / pack).unlink()

    def sync(self) -> None:
        """Make deletions durable (after unreferenced blobs were removed)."""
        if self._blobs.is_dir():
            _fsync_dir(self._blobs)

    def remove_all(self) -> bool:
        """Delete every blob and the manifest (a retired persona); whether there was any."""
        import shutil

        self.sweep()
        had = self._blobs.exists()
        shutil.rmtree(self._blobs, ignore_errors=True)
        self._index = None
        self._packs, self._loose, self._deleted, self._touched = {}, set(), set(), set()
        self._sequence = 0
        return had
