"""The sealed-profile format: a tar stream in numbered, authenticated AES-256-GCM chunks.

Layout (docs/sealed-format.md has it byte by byte):

    header (56 bytes): magic, version, suite, chunk size, 32-byte salt, reserved,
                       generation (version 1: 48 bytes, no generation)
    chunk 0 .. chunk n: ciphertext of `chunk size` plaintext bytes + 16-byte tag;
                        the last chunk is shorter than `chunk size` (possibly empty)

Each file gets a fresh random salt and its own subkey, HKDF-SHA256(data key,
salt, persona id), so reseals never reuse a (key, nonce) pair. The nonce of
chunk i is its counter plus a "last chunk" flag (the STREAM construction);
every chunk's associated data is the whole header plus the persona id. So
truncation, reordering, bit flips, header edits and swapping in another
persona's file all fail authentication.

Both directions stream: at most a couple of chunks of plaintext are held in
memory at any time.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import struct
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from outreach_station.errors import EnvironmentProblem, IntegrityError, StateError, UsageError
from outreach_station.fsutil import PRIVATE_FILE, ensure_private_dir, fsync_dir
from outreach_station.i18n import _
from outreach_station.ids import validate_persona_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ProgressCallback = Callable[[int, int], None]

MAGIC = b"\x89OSSEAL\n"
# Version 2 adds the generation to the header, so that the registry can tell
# an older genuine file put back from the newest one. Version 1 is still read.
VERSION = 2
LEGACY_VERSION = 1
# Suite 1: HKDF-SHA256 subkey, AES-256-GCM chunks, pax tar payload.
SUITE = 1
_HEADER = struct.Struct(">8sBBI32sH")
_GENERATION = struct.Struct(">Q")
LEGACY_HEADER_BYTES = _HEADER.size
HEADER_BYTES = _HEADER.size + _GENERATION.size
MAX_GENERATION = (1 << 63) - 1
SALT_BYTES = 32
TAG_BYTES = 16
KEY_BYTES = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 26
_HKDF_INFO = b"outreach-station sealed profile v1\x00"
NEW_SUFFIX = ".new"

# Directories Chromium rebuilds by itself, found in the user-data dir or in a
# profile dir directly below it (Default/, Profile 1/): depth 0 is the
# workspace (profile/, home/), 1 the user-data dir, 2 a profile dir, where
# Chromium keeps its HTTP cache (Default/Cache) and code cache. Deeper
# matches are left alone: an extension may ship a folder called "Cache", and
# Service Worker/CacheStorage is site data, not a cache Chromium rebuilds.
SKIPPED_DIR_DEPTH = 2
SKIPPED_DIR_NAMES = frozenset(
    {
        "Cache",
        "Code Cache",
        "GPUCache",
        "GrShaderCache",
        "ShaderCache",
        "GraphiteDawnCache",
        "DawnGraphiteCache",
        "DawnWebGPUCache",
        "component_crx_cache",
        "Crashpad",
        # Under the browser's private HOME (see workspace): crash dumps and font caches.
        "Crash Reports",
        "fontconfig",
    }
)
# SingletonLock/Socket/Cookie tie a profile to a running process and host.
SKIPPED_FILE_PREFIX = "Singleton"
# The browser's scratch directories when its TMPDIR is the workspace (browser.scratch_dir).
SKIPPED_TOP_DIR_PREFIX = "org.chromium.Chromium."


@dataclass(frozen=True)
class SealStats:
    """What one seal, unseal or verify did."""

    files: int
    directories: int
    skipped: int
    plaintext_bytes: int
    sealed_bytes: int
    chunks: int
    seconds: float
    # The generation in the file's authenticated header; None for a version-1 file.
    generation: int | None = None


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise UsageError(_("a data key has 32 bytes"))


def _subkey_aead(key: bytes, salt: bytes, persona_id: str) -> AESGCM:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = _HKDF_INFO + persona_id.encode("utf-8")
    subkey = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(key)
    return AESGCM(subkey)


def _nonce(counter: int, last: bool) -> bytes:
    return b"\x00\x00\x00" + counter.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _failure(persona_id: str, path: Path, what: str) -> IntegrityError:
    return IntegrityError(
        _(
            "the sealed profile of persona {persona_id!r} ({path}) failed "
            "authentication ({what}): it is damaged, truncated or altered, "
            "belongs to another persona, or the key is wrong"
        ).format(persona_id=persona_id, path=path, what=what)
    )


# -- packing -------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    relative: str
    path: str
    st: os.stat_result
    link_target: str | None = None


def _walk(root: Path) -> tuple[list[_Entry], int]:
    """Everything to pack, in a stable order, and how many entries were skipped."""
    entries: list[_Entry] = []
    skipped = 0

    def visit(directory: str, prefix: str, depth: int) -> None:
        nonlocal skipped
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            relative = f"{prefix}{child.name}"
            st = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if (depth <= SKIPPED_DIR_DEPTH and child.name in SKIPPED_DIR_NAMES) or (
                    depth == 0 and child.name.startswith(SKIPPED_TOP_DIR_PREFIX)
                ):
                    skipped += 1
                    continue
                entries.append(_Entry(relative, child.path, st))
                visit(child.path, relative + "/", depth + 1)
            elif depth == 0 and child.name.startswith(SKIPPED_FILE_PREFIX):
                skipped += 1
            elif stat.S_ISREG(st.st_mode):
                entries.append(_Entry(relative, child.path, st))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(child.path)
                # Unsealing refuses links that leave the profile, so packing
                # one would make the whole profile unopenable.
                resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target))
                if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
                    skipped += 1
                else:
                    entries.append(_Entry(relative, child.path, st, target))
            else:
                skipped += 1  # sockets, fifos, devices: nothing a profile needs

    visit(str(root), "", 0)
    return entries, skipped


def _tarinfo(entry: _Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.relative)
    info.mode = stat.S_IMODE(entry.st.st_mode)
    info.mtime = int(entry.st.st_mtime)
    # Who owned the files on this machine is nobody's business in the archive.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.link_target is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
    elif stat.S_ISDIR(entry.st.st_mode):
        info.type = tarfile.DIRTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.st.st_size
    return info


def _estimate_tar_bytes(entries: list[_Entry]) -> int:
    total = 1024
    for entry in entries:
        total += 512
        if stat.S_ISREG(entry.st.st_mode) and entry.link_target is None:
            total += -(-entry.st.st_size // 512) * 512
    return total


class _ChunkWriter(io.RawIOBase):
    """The file object tarfile writes into: buffers a chunk, encrypts, writes it out."""

    def __init__(
        self,
        out: IO[bytes],
        aead: AESGCM,
        associated: bytes,
        chunk_size: int,
        on_chunk: Callable[[int], None],
    ) -> None:
        super().__init__()
        self._out = out
        self._aead = aead
        self._associated = associated
        self._chunk_size = chunk_size
        self._on_chunk = on_chunk
        self._buffer = bytearray()
        self._position = 0
        self._plaintext_done = 0
        self.chunks = 0
        self.sealed_bytes = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def _emit(self, plaintext: memoryview | bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self.chunks, last), plaintext, self._associated)
        self._out.write(sealed)
        self.chunks += 1
        self.sealed_bytes += len(sealed)
        self._plaintext_done += len(plaintext)
        self._on_chunk(self._plaintext_done)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        self._position += size
        size_chunk = self._chunk_size
        if self._buffer:
            need = size_chunk - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) < size_chunk:
                return size
            self._emit(bytes(self._buffer), last=False)
            self._buffer.clear()
        # Whole chunks straight from the caller's buffer: no copy.
        while len(view) >= size_chunk:
            self._emit(view[:size_chunk], last=False)
            view = view[size_chunk:]
        self._buffer += view
        return size

    def finish(self) -> None:
        # The last chunk is always shorter than a full one (empty if need
        # be), which is how a reader knows it is last without looking ahead.
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()


def _pack(
    entries: list[_Entry],
    out: IO[bytes],
    *,
    key: bytes,
    persona_id: str,
    chunk_size: int,
    generation: int,
    on_plaintext: Callable[[int], None],
) -> tuple[int, int, int, int, int]:
    salt = secrets.token_bytes(SALT_BYTES)
    header = _HEADER.pack(MAGIC, VERSION, SUITE, chunk_size, salt, 0) + _GENERATION.pack(generation)
    out.write(header)
    aead = _subkey_aead(key, salt, persona_id)
    writer = _ChunkWriter(out, aead, header + persona_id.encode("utf-8"), chunk_size, on_plaintext)
    files = directories = 0
    with tarfile.TarFile(
        fileobj=writer,
        mode="w",
        format=tarfile.PAX_FORMAT,
        copybufsize=chunk_size,
    ) as tar:
        for entry in entries:
            info = _tarinfo(entry)
            if info.isreg():
                with open(entry.path, "rb") as source:
                    tar.addfile(info, source)
                files += 1
            else:
                tar.addfile(info)
                directories += int(info.isdir())
    writer.finish()
    return files, directories, writer.tell(), HEADER_BYTES + writer.sealed_bytes, writer.chunks


# -- reading -------------------------------------------------------------------


def _read_full(source: IO[bytes], size: int) -> bytes:
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = source.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


GenerationCheck = Callable[[int | None], None]


def _read_header(
    source: IO[bytes], persona_id: str, path: Path
) -> tuple[bytes, int, bytes, int | None]:
    """The raw header bytes, chunk size, salt and generation (None: version 1), unauthenticated."""
    header = _read_full(source, LEGACY_HEADER_BYTES)
    if len(header) != LEGACY_HEADER_BYTES:
        raise _failure(persona_id, path, _("file shorter than its header"))
    magic, version, suite, chunk_size, salt, reserved = _HEADER.unpack(header)
    if magic != MAGIC:
        raise _failure(persona_id, path, _("not a sealed profile: bad magic"))
    if version not in (LEGACY_VERSION, VERSION) or suite != SUITE or reserved != 0:
        raise _failure(
            persona_id,
            path,
            _("unknown version {version} or suite {suite}").format(version=version, suite=suite),
        )
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise _failure(persona_id, path, _("implausible chunk size in header"))
    generation: int | None = None
    if version == VERSION:
        more = _read_full(source, _GENERATION.size)
        if len(more) != _GENERATION.size:
            raise _failure(persona_id, path, _("file shorter than its header"))
        header += more
        (generation,) = _GENERATION.unpack(more)
    return header, chunk_size, salt, generation


def peek_generation(src_file: Path, persona_id: str) -> int | None:
    """The generation a sealed file's header claims, NOT authenticated (status, doctor).

    None for a version-1 file. Opening authenticates it (`unseal_file`'s check).
    """
    with open(src_file, "rb") as source:
        return _read_header(source, persona_id, src_file)[3]


def _chunks(
    source: IO[bytes],
    key: bytes,
    persona_id: str,
    path: Path,
    on_sealed: Callable[[int], None],
    *,
    check: GenerationCheck | None = None,
) -> Iterator[bytes]:
    """Authenticated plaintext chunks of a sealed file, in order; IntegrityError on any fault.

    `check(generation)` runs once chunk 0 (whose associated data covers the
    header) has authenticated, before any plaintext is handed out.
    """
    from cryptography.exceptions import InvalidTag

    header, chunk_size, salt, generation = _read_header(source, persona_id, path)
    aead = _subkey_aead(key, salt, persona_id)
    associated = header + persona_id.encode("utf-8")
    sealed_chunk = chunk_size + TAG_BYTES
    done = len(header)
    counter = 0
    while True:
        block = _read_full(source, sealed_chunk)
        last = len(block) < sealed_chunk
        if len(block) < TAG_BYTES:
            raise _failure(
                persona_id, path, _("truncated before chunk {counter}").format(counter=counter)
            )
        try:
            plaintext = aead.decrypt(_nonce(counter, last), block, associated)
        except InvalidTag:
            raise _failure(persona_id, path, _("chunk {counter}").format(counter=counter)) from None
        done += len(block)
        on_sealed(done)
        if counter == 0 and check is not None:
            check(generation)
        yield plaintext
        if last:
            return
        counter += 1


class _ChunkReader(io.RawIOBase):
    """Authenticated plaintext as a forward-only file for tarfile.

    tarfile's random-access reader only ever seeks forward (or to where it
    already is) when members are extracted in order, which lets it copy file
    data in large reads instead of through its small stream buffer.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._current = memoryview(b"")
        self._offset = 0  # within _current
        self._base = 0  # stream position of _current[0]
        self._exhausted = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._base + self._offset

    def _advance(self) -> bool:
        if self._exhausted:
            return False
        self._base += len(self._current)
        self._offset = 0
        try:
            self._current = memoryview(next(self._chunks))
        except StopIteration:
            self._current = memoryview(b"")
            self._exhausted = True
            return False
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise io.UnsupportedOperation("unbounded read of a sealed stream")
        parts: list[memoryview] = []
        wanted = size
        while wanted:
            available = len(self._current) - self._offset
            if not available:
                if not self._advance():
                    break
                continue
            take = min(available, wanted)
            parts.append(self._current[self._offset : self._offset + take])
            self._offset += take
            wanted -= take
        return b"".join(parts)

    def seek(self, target: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            target += self.tell()
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("sealed streams seek from the start only")
        if target < self._base:
            raise io.UnsupportedOperation("sealed streams cannot seek backwards past a chunk")
        while target > self._base + len(self._current):
            if not self._advance():
                # Past the end: stay at the end; the next read says EOF.
                self._offset = len(self._current)
                return self.tell()
        self._offset = target - self._base
        return target

    def drain(self) -> int:
        """Read (and so authenticate) whatever tarfile left unread; returns the stream length."""
        while self._advance():
            pass
        return self._base


class UnsafeArchiveError(IntegrityError):
    """An authenticated sealed profile whose archive reaches outside its directory.

    Station never packs such a member, so the file was made by someone who
    holds the persona's key: evidence, not a glitch.
    """


def _unsafe(persona_id: str, path: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        _(
            "refused to unseal {path} (persona {persona_id!r}): archive member "
            "{member!r} {why}; station never writes that, so someone holding "
            "the key made this file: keep it and report it to IT"
        ).format(path=path, persona_id=persona_id, member=member, why=why)
    )


class _Refusal(Exception):
    """One member fails the checks; `member` names it when found after the fact."""

    def __init__(self, why: str, member: str = "") -> None:
        super().__init__(why)
        self.member = member


_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
Parts = tuple[str, ...]


def _parts(name: str) -> Parts:
    """The path components of an archive name that must stay below the target."""
    if name.startswith("/"):
        raise _Refusal(_("has an absolute path"))
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Refusal(_("has a '..' component"))
    if not parts:
        raise _Refusal(_("names the profile directory itself"))
    return parts


def _symlink_stays_inside(parts: Parts, target: str) -> bool:
    """Whether `target`, read from the link's own directory, never climbs above the top."""
    if not target or target.startswith("/"):
        return False
    depth = len(parts) - 1
    for component in target.split("/"):
        if component in ("", "."):
            continue
        depth += -1 if component == ".." else 1
        if depth < 0:
            return False
    return True


class _Extractor:
    """Writes archive members below one directory, refusing anything that reaches out.

    Our own checks, the same on every Python (tarfile's `filter=` is missing
    before 3.11.4, and Debian 12 ships 3.11.2): no absolute names, no `..`,
    no devices, FIFOs or other special members, no setuid/setgid/sticky bits,
    no member written below a symlink or over a name already extracted, no
    symlink whose target leaves the directory (checked on the names, then
    again on the finished tree, since a target may climb through another
    link), and hard links only to regular files extracted before them.
    Every write goes through directory descriptors opened with O_NOFOLLOW
    and creates with O_EXCL, so even a gap in these checks cannot follow a
    link out of the directory.
    """

    def __init__(self, root: Path) -> None:
        self._root_path = root
        self._root = os.open(root, _DIR_FLAGS)
        self._seen: set[Parts] = set()
        self._implicit: set[Parts] = set()  # parents made before their own member
        self._symlinks: list[tuple[Parts, str]] = []
        self._regular: set[Parts] = set()
        self._dirs: list[tuple[Parts, int, float]] = []
        self._cached: tuple[Parts, int] | None = None

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._drop_cache()
        os.close(self._root)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _parent(self, parents: Parts) -> int:
        """A descriptor of the directory `parents`, made 0700 where missing; do not close it."""
        if self._cached is not None and self._cached[0] == parents:
            return self._cached[1]
        symlinks = {link for link, _target in self._symlinks}
        fd = os.dup(self._root)
        try:
            for i, name in enumerate(parents):
                prefix = parents[: i + 1]
                if prefix in symlinks:
                    raise _Refusal(
                        _("would be written through the symlink {path!r}").format(
                            path="/".join(prefix)
                        )
                    )
                if prefix not in self._seen:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    self._seen.add(prefix)
                    self._implicit.add(prefix)
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise _Refusal(
                        _("lies below {path!r}, which is not a directory").format(
                            path="/".join(prefix)
                        )
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        self._drop_cache()
        self._cached = (parents, fd)
        return fd

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _parts(member.name)
        if member.mode & _SPECIAL_BITS:
            raise _Refusal(_("has setuid, setgid or sticky bits"))
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise _Refusal(_("is a device, FIFO or other special file"))
        if parts in self._seen and not (member.isdir() and parts in self._implicit):
            raise _Refusal(_("appears twice or replaces an earlier member"))
        parent = self._parent(parts[:-1])
        name = parts[-1]
        mode = stat.S_IMODE(member.mode)
        if member.isdir():
            if parts in self._implicit:
                self._implicit.discard(parts)
            else:
                os.mkdir(name, 0o700, dir_fd=parent)
            self._dirs.append((parts, mode, member.mtime))
        elif member.issym():
            if not _symlink_stays_inside(parts, member.linkname):
                raise _Refusal(
                    _("is a symlink to {linkname!r}, outside the profile").format(
                        linkname=member.linkname
                    )
                )
            os.symlink(member.linkname, name, dir_fd=parent)
            self._symlinks.append((parts, member.linkname))
        elif member.islnk():
            target = _parts(member.linkname)
            if target not in self._regular:
                raise _Refusal(
                    _("is a hard link to {linkname!r}, not a file extracted before it").format(
                        linkname=member.linkname
                    )
                )
            os.link(
                "/".join(target),
                name,
                src_dir_fd=self._root,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        else:
            self._write(tar, member, parent, name, mode)
            self._regular.add(parts)
        self._seen.add(parts)

    @staticmethod
    def _write(
        tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, name: str, mode: int
    ) -> None:
        import shutil

        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - only for non-files
            raise _Refusal(_("has no data"))
        fd = os.open(name, _NEW_FILE_FLAGS, PRIVATE_FILE, dir_fd=parent)
        with source, open(fd, "wb") as out:
            shutil.copyfileobj(source, out, DEFAULT_CHUNK_SIZE)
            out.flush()
            os.fchmod(fd, mode)
            os.utime(fd, (member.mtime, member.mtime))

    def finish(self) -> None:
        """Check where every symlink really points, then give directories their modes."""
        self._drop_cache()
        top = os.path.realpath(self._root_path)
        for parts, target in self._symlinks:
            resolved = os.path.realpath(os.path.join(self._root_path, *parts))
            if os.path.commonpath([top, resolved]) != top:
                raise _Refusal(
                    _(
                        "is a symlink to {target!r}, which leads outside the profile "
                        "through another link"
                    ).format(target=target),
                    "/".join(parts),
                )
        # Deepest first: a parent's mode might keep us out of its children.
        for parts, mode, mtime in sorted(self._dirs, key=lambda d: len(d[0]), reverse=True):
            fd = os.open(os.path.join(self._root_path, *parts), _DIR_FLAGS)
            try:
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


def verify_file(
    src_file: Path,
    key: bytes,
    persona_id: str,
    progress: ProgressCallback | None = None,
) -> SealStats:
    """Authenticate every chunk of a sealed file without extracting anything."""
    validate_persona_id(persona_id)
    _check_key(key)
    started = time.perf_counter()
    try:
        with open(src_file, "rb") as source:
            total = os.fstat(source.fileno()).st_size
            report = _reporter(progress, total)
            plaintext = chunks = 0
            seen: list[int | None] = []
            for chunk in _chunks(source, key, persona_id, src_file, report, check=seen.append):
                plaintext += len(chunk)
                chunks += 1
    except FileNotFoundError:
        raise StateError(
            _("persona {persona_id!r} has no sealed profile at {src_file}").format(
                persona_id=persona_id, src_file=src_file
            )
        ) from None
    return SealStats(
        0, 0, 0, plaintext, total, chunks, time.perf_counter() - started, seen[0] if seen else None
    )


def _reporter(progress: ProgressCallback | None, total: int) -> Callable[[int], None]:
    if progress is None:
        return lambda done: None
    return lambda done: progress(min(done, total), total)


def unseal_file(
    src_file: Path,
    dest_dir: Path,
    key: bytes,
    persona_id: str,
    progress: ProgressCallback | None = None,
    *,
    check: GenerationCheck | None = None,
) -> SealStats:
    """Decrypt and extract a sealed profile into `dest_dir` (created 0700 if missing, else empty).

    Streams: each chunk is authenticated before any of its bytes reach
    tarfile, and every member passes station's own checks (see `_Extractor`)
    before anything is written: an archive only a key holder could have made
    that reaches outside `dest_dir` or makes special files raises
    `UnsafeArchiveError`. A fault found late,
    such as truncation, is only detected after earlier files were written,
    so on ANY exception `dest_dir` may hold a partial profile: the caller
    must wipe it and must not use it. `progress(done, total)` counts sealed
    bytes authenticated out of the sealed file's size. `check(generation)`
    sees the file's authenticated generation before anything is extracted,
    and may raise to refuse the file.
    """
    validate_persona_id(persona_id)
    _check_key(key)
    ensure_private_dir(dest_dir)
    if any(dest_dir.iterdir()):
        raise StateError(
            _("refusing to unseal persona {persona_id!r} into non-empty {dest_dir}").format(
                persona_id=persona_id, dest_dir=dest_dir
            )
        )
    started = time.perf_counter()
    try:
        source = open(src_file, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise StateError(
            _("persona {persona_id!r} has no sealed profile at {src_file}").format(
                persona_id=persona_id, src_file=src_file
            )
        ) from None
    counts = {"files": 0, "directories": 0, "chunks": 0}
    with source:
        total = os.fstat(source.fileno()).st_size
        report = _reporter(progress, total)

        seen: list[int | None] = []

        def checked(generation: int | None) -> None:
            seen.append(generation)
            if check is not None:
                check(generation)

        def counted_chunks() -> Iterator[bytes]:
            for chunk in _chunks(source, key, persona_id, src_file, report, check=checked):
                counts["chunks"] += 1
                yield chunk

        reader = _ChunkReader(counted_chunks())
        try:
            with (
                tarfile.TarFile(
                    fileobj=reader,
                    mode="r",
                    copybufsize=DEFAULT_CHUNK_SIZE,
                ) as tar,
                _Extractor(dest_dir) as extractor,
            ):
                for member in tar:
                    try:
                        extractor.extract(tar, member)
                    except _Refusal as refusal:
                        raise _unsafe(persona_id, src_file, member.name, str(refusal)) from None
                    counts["files"] += int(member.isreg())
                    counts["directories"] += int(member.isdir())
                try:
                    extractor.finish()
                except _Refusal as refusal:
                    raise _unsafe(persona_id, src_file, refusal.member, str(refusal)) from None
            plaintext = reader.drain()
        except tarfile.TarError as exc:
            # Authenticated bytes that are not a valid archive were written
            # by a holder of the key, not by station.
            raise _failure(
                persona_id,
                src_file,
                _("bad archive: {kind}").format(kind=type(exc).__name__),
            ) from None
        except io.UnsupportedOperation:
            raise _failure(persona_id, src_file, _("archive out of order")) from None
        except OSError as exc:
            raise EnvironmentProblem(
                _("unsealing persona {persona_id!r} into {dest_dir} failed: {reason}").format(
                    persona_id=persona_id,
                    dest_dir=dest_dir,
                    reason=exc.strerror or type(exc).__name__,
                )
            ) from exc
    return SealStats(
        counts["files"],
        counts["directories"],
        0,
        plaintext,
        total,
        counts["chunks"],
        time.perf_counter() - started,
        seen[0] if seen else None,
    )


# -- sealing -------------------------------------------------------------------


def new_path(dest_file: Path) -> Path:
    """Where a seal in progress writes; a leftover one is a crashed seal."""
    return dest_file.with_name(dest_file.name + NEW_SUFFIX)


def seal_dir(
    src_dir: Path,
    dest_file: Path,
    key: bytes,
    persona_id: str,
    progress: ProgressCallback | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    generation: int = 0,
    before_replace: Callable[[], None] | None = None,
) -> SealStats:
    """Pack `src_dir` into the sealed file `dest_file`, atomically.

    Writes `dest_file.new` (0600) with `generation` in its authenticated
    header, fsyncs it, authenticates every chunk of it, calls
    `before_replace()` (the registry records the generation as pending
    there), then renames it over `dest_file` and fsyncs the directory. A crash
    at any point leaves the previous generation intact; a stale `.new` from
    a crash is removed by the next seal. Caches Chromium rebuilds (see
    `SKIPPED_DIR_NAMES`) and `Singleton*` files are not packed.

    `progress(done, total)` covers two passes, packing then verification,
    so `total` is twice the estimated archive size; the last call has
    `done == total`.
    """
    validate_persona_id(persona_id)
    _check_key(key)
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise UsageError(_("chunk size must be a power of two between 4 KiB and 64 MiB"))
    if not 0 <= generation <= MAX_GENERATION:
        raise UsageError(
            _("a generation is between 0 and {MAX_GENERATION}").format(
                MAX_GENERATION=MAX_GENERATION
            )
        )
    if not src_dir.is_dir():
        raise StateError(
            _("cannot seal persona {persona_id!r}: {src_dir} is not a directory").format(
                persona_id=persona_id, src_dir=src_dir
            )
        )
    started = time.perf_counter()
    ensure_private_dir(dest_file.parent)
    pending = new_path(dest_file)
    with contextlib.suppress(FileNotFoundError):
        pending.unlink()  # a crashed seal's leftover; the lock holder is us
    entries, skipped = _walk(src_dir)
    estimate = max(_estimate_tar_bytes(entries), 1)
    total = 2 * estimate

    def packing(done: int) -> None:
        if progress is not None:
            progress(min(done, estimate), total)

    try:
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        raise StateError(
            _("another seal of persona {persona_id!r} is writing {pending}").format(
                persona_id=persona_id, pending=pending
            )
        ) from None
    try:
        with open(fd, "wb") as out:
            files, dirs, plaintext, sealed, chunks = _pack(
                entries,
                out,
                key=key,
                persona_id=persona_id,
                chunk_size=chunk_size,
                generation=generation,
                on_plaintext=packing,
            )
            out.flush()
            os.fsync(out.fileno())

        def verifying(done: int) -> None:
            if progress is not None:
                progress(estimate + min(estimate, done * estimate // max(sealed, 1)), total)

        with open(pending, "rb") as check:
            for _chunk in _chunks(check, key, persona_id, pending, verifying):
                pass
        if before_replace is not None:
            before_replace()
        os.replace(pending, dest_file)
        fsync_dir(dest_file.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
        if isinstance(exc, OSError):
            raise EnvironmentProblem(
                _(
                    "sealing persona {persona_id!r} into {dest_file} failed: {reason}; "
                    "the previous sealed profile is unchanged"
                ).format(
                    persona_id=persona_id,
                    dest_file=dest_file,
                    reason=exc.strerror or type(exc).__name__,
                )
            ) from exc
        raise
    if progress is not None:
        progress(total, total)
    return SealStats(
        files, dirs, skipped, plaintext, sealed, chunks, time.perf_counter() - started, generation
    )
