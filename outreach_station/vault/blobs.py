"""The sealed store (formats 3 and 4): encrypted blobs plus one encrypted manifest per generation.

docs/sealed-format.md has it byte by byte. In short:

    blob      = header (24 bytes: magic, format, suite, reserved, nonce)
                || AES-256-GCM(seal key, nonce, plaintext, AD = header || persona id || 0 || name)
    name      = hex(keyed BLAKE2b-128(name key, plaintext)): content-addressed, so an
                unchanged chunk keeps its name and is never written again
    manifest  = header (32 bytes: magic, format, suite, reserved, generation, nonce)
                || AES-256-GCM(seal key, nonce, zlib(JSON), AD = header || persona id)
                format 4: the JSON lists parts, each a blob holding zlib(JSON) of a
                stretch of the entries; format 3 (still read): the JSON is every entry

Both keys come from the persona's data key through HKDF-SHA256 with distinct
labels. Files of 256 KiB and more are cut into 1 MiB chunks, one blob each;
smaller files are packed together, a pack closing after a file whose keyed
path hash says so, so that a changed file rewrites only its own pack. The
entries are cut into manifest parts the same way (a pack closes with its
part): a reseal lists a part whose files are all as unsealing left them
again as it is, so its work follows what changed, not the number of files.

The store (see `storage.base.BlobStore`) only ever sees ciphertext under
keyed names; everything here runs in a small thread pool (AES-GCM, BLAKE2b
and file I/O release the GIL) with a bounded number of blobs in flight.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import operator
import os
import stat
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from outreach_station.errors import EnvironmentProblem, IntegrityError, StateError
from outreach_station.i18n import _
from outreach_station.ids import validate_persona_id
from outreach_station.vault.sealed import (
    KEY_BYTES,
    SKIPPED_DIR_DEPTH,
    SKIPPED_DIR_NAMES,
    SKIPPED_FILE_PREFIX,
    SKIPPED_TOP_DIR_PREFIX,
    SealStats,
    UnsafeArchiveError,
    _parts,
    _Refusal,
    _symlink_stays_inside,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from outreach_station.storage.base import BlobStore

ProgressCallback = Callable[[int, int], None]

BLOB_MAGIC = b"\x89OSBLOB\n"
MANIFEST_MAGIC = b"\x89OSMANI\n"
FORMAT = 3
# Format 4: the manifest is a small root listing parts, each part a blob of its own
# (read: 3 and 4; written: 4).
PARTS_FORMAT = 4
# Suite 1: HKDF-SHA256 keys, keyed BLAKE2b-128 names, AES-256-GCM, zlib'd JSON manifest.
SUITE = 1
_BLOB_HEADER = struct.Struct(">8sBBH12s")
_MANIFEST_HEADER = struct.Struct(">8sBBHQ12s")
NONCE_BYTES = 12
TAG_BYTES = 16
NAME_BYTES = 16
CHUNK_SIZE = 1 << 20
SMALL_FILE = 256 << 10
# A pack closes after a file whose keyed path hash is 0 modulo this (about
# 16 files a pack), or once it holds PACK_LIMIT bytes.
PACK_SPREAD = 4
PACK_LIMIT = 256 << 10
# SQLite rewrites scattered pages in place (bench/profile_churn.py: 11 of the 50
# pages of History between two sessions), so its files are cut finer.
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_CHUNK_SIZE = 32 << 10


def _workers() -> int:
    """One worker per CPU this process may run on, at least 2 and at most 4.

    More threads than cores only fight over the GIL: measured on 2 cores (200 MB
    profile, medians of 3), 4 workers unsealed in 0.88 s and sealed in 1.53 s,
    2 workers in 0.56 s and 1.26 s. Two even on one core, so reading and
    writing overlap the crypto.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 2
    return max(2, min(4, cpus))


WORKERS = _workers()
# Tasks submitted and not finished. A task reads its bytes only once a worker runs
# it, so memory follows WORKERS (a running blob holds its plaintext and its
# ciphertext: about 2 MiB each), not this; a deep queue lets the walk go on while
# the workers hash a changed database (measured: with 6 the reseal's walk waited).
IN_FLIGHT = 64
MAX_GENERATION = (1 << 63) - 1
# A manifest part closes after an entry whose keyed path hash is 0 modulo this
# (about 16 entries a part; a multiple of PACK_SPREAD), and a pack closes with it:
# an unchanged stretch of the tree keeps its part blob, which a reseal lists unread.
PART_SPREAD = 16
_NAME_INFO = b"outreach-station sealed store v3 blob names\x00"
_SEAL_INFO = b"outreach-station sealed store v3 encryption\x00"
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class StoreStats(SealStats):
    """What one seal or unseal of the sealed store did."""

    blobs_written: int = 0
    blobs_reused: int = 0
    blobs_removed: int = 0


@dataclass(frozen=True)
class StoreKeys:
    """A persona's two sealed-store keys, derived from its data key."""

    persona_id: str
    naming: bytes = field(repr=False)
    sealing: bytes = field(repr=False)

    @classmethod
    def derive(cls, data_key: bytes, persona_id: str) -> StoreKeys:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        validate_persona_id(persona_id)
        if len(data_key) != KEY_BYTES:
            raise ValueError("a data key has 32 bytes")
        who = persona_id.encode("utf-8")

        def derive(label: bytes) -> bytes:
            return HKDF(
                algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label + who
            ).derive(data_key)

        return cls(persona_id, derive(_NAME_INFO), derive(_SEAL_INFO))

    def name(self, plaintext: bytes | bytearray | memoryview) -> str:
        return hashlib.blake2b(plaintext, key=self.naming, digest_size=NAME_BYTES).hexdigest()

    def aead(self) -> AESGCM:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self.sealing)


# -- blobs and manifests ---------------------------------------------------------------


def _blob_ad(header: bytes, persona_id: str, name: str) -> bytes:
    return header + persona_id.encode("utf-8") + b"\x00" + name.encode("ascii")


def seal_blob(
    aead: AESGCM, keys: StoreKeys, name: str, plaintext: bytes | bytearray | memoryview
) -> bytes | bytearray:
    header = _BLOB_HEADER.pack(BLOB_MAGIC, FORMAT, SUITE, 0, os.urandom(NONCE_BYTES))
    nonce = header[-NONCE_BYTES:]
    associated = _blob_ad(header, keys.persona_id, name)
    encrypt_into = getattr(aead, "encrypt_into", None)
    if encrypt_into is None:  # cryptography before 45
        return header + aead.encrypt(nonce, plaintext, associated)
    # One buffer for the whole blob: no copy of the ciphertext behind the header.
    sealed = bytearray(len(header) + len(plaintext) + TAG_BYTES)
    sealed[: len(header)] = header
    encrypt_into(nonce, plaintext, associated, memoryview(sealed)[len(header) :])
    return sealed


def open_blob(aead: AESGCM, keys: StoreKeys, name: str, sealed: bytes, where: str) -> bytes:
    from cryptography.exceptions import InvalidTag

    size = _BLOB_HEADER.size
    if len(sealed) < size + TAG_BYTES:
        raise _tampered(keys.persona_id, where, _("blob {name} is truncated").format(name=name))
    magic, version, suite, reserved, nonce = _BLOB_HEADER.unpack(sealed[:size])
    if magic != BLOB_MAGIC or version != FORMAT or suite != SUITE or reserved != 0:
        raise _tampered(keys.persona_id, where, _("blob {name} has a bad header").format(name=name))
    try:
        return aead.decrypt(nonce, sealed[size:], _blob_ad(sealed[:size], keys.persona_id, name))
    except InvalidTag:
        raise _tampered(
            keys.persona_id, where, _("blob {name} failed authentication").format(name=name)
        ) from None


def _tampered(persona_id: str, where: str, what: str) -> IntegrityError:
    return IntegrityError(
        _(
            "the sealed profile of persona {persona_id!r} ({where}) is damaged "
            "or altered: {what} (or it belongs to another persona, or the key "
            "is wrong); nothing was opened and the files are kept: report it to "
            "IT"
        ).format(persona_id=persona_id, where=where, what=what)
    )


Ref = tuple[str, int, int]  # blob name, offset in the blob, length


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the profile in a manifest."""

    path: str
    kind: str  # "d" directory, "f" regular file, "l" symlink
    mode: int
    mtime_ns: int
    size: int = 0
    refs: tuple[Ref, ...] = ()
    target: str = ""


@dataclass(frozen=True, eq=False)
class Part:
    """A stretch of a format-4 manifest's entries, sealed as a blob of its own."""

    name: str
    size: int  # the part blob's plaintext bytes
    entries: tuple[Entry, ...]
    blob_sizes: dict[str, int]  # the blobs its files are in
    paths: tuple[str, ...]
    files: int
    plaintext_bytes: int


@dataclass(frozen=True)
class Manifest:
    """A generation of a persona's sealed profile: every path and where its bytes are.

    `blob_sizes` lists every blob the generation needs: where files are, and
    (format 4) the blobs of its `parts`.
    """

    persona_id: str
    generation: int
    entries: tuple[Entry, ...]
    blob_sizes: dict[str, int]
    parts: tuple[Part, ...] = ()

    def encode(self) -> bytes:
        # Tuples, not lists: JSON arrays all the same, and tuples of atoms leave the
        # cyclic GC alone (tens of thousands of lists made it run mid-encode).
        index = {name: i for i, name in enumerate(self.blob_sizes)}
        rows: list[tuple[Any, ...]] = []
        for e in self.entries:
            if e.kind == "f":
                refs = tuple((index[n], off, length) for n, off, length in e.refs)
                rows.append((e.path, e.kind, e.mode, e.mtime_ns, e.size, refs))
            elif e.kind == "l":
                rows.append((e.path, e.kind, e.mode, e.mtime_ns, e.target))
            else:
                rows.append((e.path, e.kind, e.mode, e.mtime_ns))
        body = {
            "format": FORMAT,
            "persona": self.persona_id,
            "generation": self.generation,
            "blobs": tuple(self.blob_sizes.items()),
            "entries": rows,
        }
        return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), 1)

    @classmethod
    def decode(cls, data: bytes, persona_id: str, generation: int, where: str) -> Manifest:
        try:
            body = json.loads(zlib.decompress(data))
            if body["persona"] != persona_id or body["generation"] != generation:
                raise ValueError("names another persona or generation")
            blobs = [(str(n), int(s)) for n, s in body["blobs"]]
            entries = _entries(body["entries"], blobs)
        except (ValueError, KeyError, IndexError, TypeError, zlib.error) as exc:
            # Authenticated, so written by a holder of the key, not by station.
            what = _("manifest {generation} is malformed: {exc}").format(
                generation=generation, exc=exc
            )
            raise _tampered(persona_id, where, what) from None
        return cls(persona_id, generation, tuple(entries), dict(blobs))


def seal_manifest(keys: StoreKeys, manifest: Manifest) -> bytes:
    header = _MANIFEST_HEADER.pack(
        MANIFEST_MAGIC, FORMAT, SUITE, 0, manifest.generation, os.urandom(NONCE_BYTES)
    )
    associated = header + keys.persona_id.encode("utf-8")
    return header + keys.aead().encrypt(header[-NONCE_BYTES:], manifest.encode(), associated)


def read_manifest(store: BlobStore, keys: StoreKeys, generation: int) -> Manifest:
    """The authenticated manifest of `generation`; IntegrityError if anything is off."""
    from cryptography.exceptions import InvalidTag

    where = store.location
    try:
        sealed = store.get_manifest(generation)
    except FileNotFoundError:
        raise _tampered(
            keys.persona_id,
            where,
            _("manifest {generation} is missing").format(generation=generation),
        ) from None
    size = _MANIFEST_HEADER.size
    if len(sealed) < size + TAG_BYTES:
        raise _tampered(
            keys.persona_id,
            where,
            _("manifest {generation} is truncated").format(generation=generation),
        )
    magic, version, suite, reserved, claimed, nonce = _MANIFEST_HEADER.unpack(sealed[:size])
    if magic != MANIFEST_MAGIC or version not in _READ or suite != SUITE or reserved != 0:
        raise _tampered(
            keys.persona_id,
            where,
            _("manifest {generation} has a bad header").format(generation=generation),
        )
    if claimed != generation:
        raise _tampered(
            keys.persona_id,
            where,
            _("manifest {generation} says it is generation {claimed}").format(
                generation=generation, claimed=claimed
            ),
        )
    try:
        plain = keys.aead().decrypt(
            nonce, sealed[size:], sealed[:size] + keys.persona_id.encode("utf-8")
        )
    except InvalidTag:
        raise _tampered(
            keys.persona_id,
            where,
            _("manifest {generation} failed authentication").format(generation=generation),
        ) from None
    if version == PARTS_FORMAT:
        return _read_parts(store, keys, generation, plain, where)
    return Manifest.decode(plain, keys.persona_id, generation, where)


_READ = (FORMAT, PARTS_FORMAT)


def _rows(entries: Iterable[Entry], index: dict[str, int]) -> list[tuple[Any, ...]]:
    """Manifest rows (format 3 and 4 alike), blob names as indexes into `index`."""
    rows: list[tuple[Any, ...]] = []
    for e in entries:
        if e.kind == "f":
            refs = tuple((index[n], off, length) for n, off, length in e.refs)
            rows.append((e.path, e.kind, e.mode, e.mtime_ns, e.size, refs))
        elif e.kind == "l":
            rows.append((e.path, e.kind, e.mode, e.mtime_ns, e.target))
        else:
            rows.append((e.path, e.kind, e.mode, e.mtime_ns))
    return rows


def _entries(rows: Iterable[Any], blobs: list[tuple[str, int]]) -> list[Entry]:
    """The entries of manifest rows; ValueError and friends on anything malformed."""
    entries = []
    for row in rows:
        path, kind, mode, mtime_ns = str(row[0]), str(row[1]), int(row[2]), int(row[3])
        if kind == "f":
            refs = tuple((blobs[i][0], int(o), int(n)) for i, o, n in row[5])
            entries.append(Entry(path, kind, mode, mtime_ns, int(row[4]), refs))
        elif kind == "l":
            entries.append(Entry(path, kind, mode, mtime_ns, target=str(row[4])))
        elif kind == "d":
            entries.append(Entry(path, kind, mode, mtime_ns))
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return entries


def _make_part(name: str, size: int, entries: tuple[Entry, ...], sizes: dict[str, int]) -> Part:
    files = [e for e in entries if e.kind == "f"]
    return Part(
        name,
        size,
        entries,
        sizes,
        tuple(e.path for e in entries),
        len(files),
        sum(e.size for e in files),
    )


def encode_part(persona_id: str, entries: Iterable[Entry], blob_sizes: dict[str, int]) -> bytes:
    """A part blob's plaintext: zlib(JSON) of its entries and the blobs they are in."""
    entries = tuple(entries)
    blobs: dict[str, int] = {}
    for e in entries:
        for name, _o, _n in e.refs:
            blobs.setdefault(name, blob_sizes[name])
    index = {name: i for i, name in enumerate(blobs)}
    body = {
        "format": PARTS_FORMAT,
        "persona": persona_id,
        "blobs": tuple(blobs.items()),
        "entries": _rows(entries, index),
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), 1)


def _decode_part(name: str, plain: bytes, persona_id: str) -> Part:
    body = json.loads(zlib.decompress(plain))
    if body["format"] != PARTS_FORMAT or body["persona"] != persona_id:
        raise ValueError(f"part {name} names another persona or format")
    blobs = [(str(n), int(s)) for n, s in body["blobs"]]
    entries = tuple(_entries(body["entries"], blobs))
    return _make_part(name, len(plain), entries, dict(blobs))


def manifest_of_parts(persona_id: str, generation: int, parts: Iterable[Part]) -> Manifest:
    parts = tuple(parts)
    sizes: dict[str, int] = {}
    for part in parts:
        sizes.update(part.blob_sizes)
    for part in parts:
        sizes[part.name] = part.size
    entries = tuple(itertools.chain.from_iterable(part.entries for part in parts))
    return Manifest(persona_id, generation, entries, sizes, parts)


def seal_root(keys: StoreKeys, manifest: Manifest) -> bytes:
    """A format-4 manifest: the generation's parts, in order, by name and size."""
    header = _MANIFEST_HEADER.pack(
        MANIFEST_MAGIC, PARTS_FORMAT, SUITE, 0, manifest.generation, os.urandom(NONCE_BYTES)
    )
    body = {
        "format": PARTS_FORMAT,
        "persona": manifest.persona_id,
        "generation": manifest.generation,
        "parts": [(part.name, part.size) for part in manifest.parts],
    }
    plain = zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), 1)
    associated = header + keys.persona_id.encode("utf-8")
    return header + keys.aead().encrypt(header[-NONCE_BYTES:], plain, associated)


def _read_parts(
    store: BlobStore, keys: StoreKeys, generation: int, plain: bytes, where: str
) -> Manifest:
    """The manifest a format-4 root lists: each part read and authenticated as a blob."""
    aead = keys.aead()
    parts = []
    try:
        body = json.loads(zlib.decompress(plain))
        if body["persona"] != keys.persona_id or body["generation"] != generation:
            raise ValueError("names another persona or generation")
        listed = [(_check_part_name(str(n)), int(s)) for n, s in body["parts"]]
    except (ValueError, KeyError, IndexError, TypeError, zlib.error) as exc:
        what = _("manifest {generation} is malformed: {exc}").format(generation=generation, exc=exc)
        raise _tampered(keys.persona_id, where, what) from None
    for name, size in listed:
        try:
            sealed = store.get(name)
        except FileNotFoundError:
            raise _tampered(
                keys.persona_id, where, _("blob {name} is missing").format(name=name)
            ) from None
        part_plain = open_blob(aead, keys, name, sealed, where)
        if len(part_plain) != size:
            raise _tampered(
                keys.persona_id, where, _("blob {name} has the wrong size").format(name=name)
            )
        try:
            parts.append(_decode_part(name, part_plain, keys.persona_id))
        except (ValueError, KeyError, IndexError, TypeError, zlib.error) as exc:
            what = _("manifest {generation} is malformed: {exc}").format(
                generation=generation, exc=exc
            )
            raise _tampered(keys.persona_id, where, what) from None
    return manifest_of_parts(keys.persona_id, generation, parts)


def _check_part_name(name: str) -> str:
    if len(name) != 2 * NAME_BYTES or name.strip("0123456789abcdef"):
        raise ValueError(f"not a blob name: {name!r}")
    return name


def peek_generation(src_file: Path, persona_id: str) -> int | None:
    """The generation `profile.sealed` claims, NOT authenticated (status, doctor, tests).

    A format-3 or format-4 manifest or a format-2 sealed file; None for a format-1 file.
    """
    from outreach_station.vault import sealed

    with open(src_file, "rb") as source:
        head = source.read(_MANIFEST_HEADER.size)
    if head[:8] == MANIFEST_MAGIC:
        if len(head) < _MANIFEST_HEADER.size:
            raise _tampered(persona_id, str(src_file), _("the manifest is truncated"))
        return int(_MANIFEST_HEADER.unpack(head)[4])
    return sealed.peek_generation(src_file, persona_id)


def is_manifest(src_file: Path) -> bool:
    """Whether `profile.sealed` holds a manifest, format 3 or 4 (else format 1 or 2, or nothing)."""
    try:
        with open(src_file, "rb") as source:
            return source.read(8) == MANIFEST_MAGIC
    except FileNotFoundError:
        return False


def newest_generation(store: BlobStore) -> int | None:
    """The highest generation with a manifest in the store, from names alone (not authenticated)."""
    found = store.manifests()
    return found[-1] if found else None


# -- sealing -------------------------------------------------------------------


# What a file looked like right after unsealing wrote it: size, mtime, ctime, inode.
Fingerprint = tuple[int, int, int, int]


class Baseline(dict[str, Fingerprint]):
    """What each path looked like right after unsealing wrote it, by path.

    And `digests`: for each SQLite chunk blob of the unsealed generation, a
    Poly1305 tag of its plaintext under `digest_key`, a random key that never
    leaves this process. A thread fills them from the store while the session
    runs (`digest_chunks`); a reseal then finds which chunks of a changed
    database are still what their blob holds by one Poly1305 pass (a quarter of
    a BLAKE2b's time, measured) instead of naming every chunk again. Poly1305 with
    a secret key is a universal hash: two different chunks, however chosen by
    someone who never sees the key or a tag, get one tag with probability below
    2^-90. A chunk without a digest yet is hashed as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.digest_key = os.urandom(32)
        self.digests: dict[str, bytes] = {}
        self.stop = threading.Event()  # set by the reseal: the digests left are not waited for


def _digest(key: bytes, plaintext: bytes | memoryview) -> bytes:
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    return Poly1305.generate_tag(key, plaintext)


def _sqlite_chunked(e: Entry) -> bool:
    return len(e.refs) > 1 and e.refs[0][1] == 0 and e.refs[0][2] == SQLITE_CHUNK_SIZE


def digest_chunks(
    store: BlobStore, keys: StoreKeys, manifest: Manifest, baseline: Baseline
) -> None:
    """Fill `baseline.digests` from the store's SQLite chunk blobs; stops at the first failure.

    Blobs are content-named and each is authenticated here, so a digest
    describes exactly the plaintext its name stands for, whenever it is made.
    """
    aead = keys.aead()
    names = dict.fromkeys(
        name
        for e in manifest.entries
        if e.kind == "f" and _sqlite_chunked(e)
        for name, _o, _n in e.refs
    )
    try:
        for name in names:
            if baseline.stop.is_set():
                return
            plain = open_blob(aead, keys, name, store.get(name), store.location)
            baseline.digests[name] = _digest(baseline.digest_key, plain)
    except Exception:  # a background helper: never a traceback, never a failure
        return  # the chunks left are hashed at the reseal, as without digests


def _fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class _Found(NamedTuple):
    """One path to seal, with only what the manifest and the reseal need (a 1 GB
    profile has tens of thousands: a stat result each would cost megabytes)."""

    relative: str
    kind: str
    mode: int
    mtime_ns: int
    fingerprint: Fingerprint
    target: str = ""


@dataclass
class _Scan:
    """The walk so far: what to seal, its paths and fingerprints alongside (lists that grow)."""

    found: list[_Found] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fingerprints: list[Fingerprint] = field(default_factory=list)
    skipped: int = 0


def _scan(root: Path, seed: int, scan: _Scan) -> Iterator[int]:  # noqa: PLR0915 - one walk, inlined (hot)
    """Walk `root` into `scan`, yielding the index after each part's last entry.

    Everything to seal, in a stable order. The same rules as format 2's walk
    (`sealed._walk`): caches Chromium rebuilds, `Singleton*`, the browser's
    scratch folders, special files and symlinks leaving the profile are not
    sealed. A part ends after an entry whose keyed path hash says so: paths
    alone decide, so an unchanged stretch of the tree is cut as it was. A
    generator, so that a part's blobs are sealed (in the pool) while the
    walk goes on.
    """
    found, paths, fingerprints = scan.found, scan.paths, scan.fingerprints
    add_found, add_path, add_fingerprint = found.append, paths.append, fingerprints.append
    crc32 = zlib.crc32
    by_name = operator.attrgetter("name")
    is_dir, is_reg, is_lnk, imode = stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK, stat.S_IMODE
    # tuple.__new__ rather than _Found(...): the walk makes one per path, and the
    # NamedTuple constructor is a Python-level call (measured: a tenth of the walk).
    make = tuple.__new__

    # Directories by descriptor: each stat is then relative to its directory, not a
    # walk of the whole path again (measured: a sixth of a bare walk's time).
    opening = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def visit(directory: int, prefix: str, depth: int) -> Iterator[int]:
        with os.scandir(directory) as it:
            children = sorted(it, key=by_name)
        shallow = depth <= SKIPPED_DIR_DEPTH
        for child in children:
            name = child.name
            relative = prefix + name
            st = child.stat(follow_symlinks=False)
            kind = st.st_mode
            target = ""
            if is_reg(kind):
                if depth == 0 and name.startswith(SKIPPED_FILE_PREFIX):
                    scan.skipped += 1
                    continue
                letter = "f"
            elif is_dir(kind):
                if (shallow and name in SKIPPED_DIR_NAMES) or (
                    depth == 0 and name.startswith(SKIPPED_TOP_DIR_PREFIX)
                ):
                    scan.skipped += 1
                    continue
                letter = "d"
            elif depth == 0 and name.startswith(SKIPPED_FILE_PREFIX):
                scan.skipped += 1
                continue
            elif is_lnk(kind):
                target = os.readlink(name, dir_fd=directory)
                resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target))
                if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
                    scan.skipped += 1
                    continue
                letter = "l"
            else:
                scan.skipped += 1
                continue
            mtime_ns = st.st_mtime_ns
            fingerprint = (st.st_size, mtime_ns, st.st_ctime_ns, st.st_ino)
            add_found(make(_Found, (relative, letter, imode(kind), mtime_ns, fingerprint, target)))
            add_path(relative)
            add_fingerprint(fingerprint)
            if not crc32(relative.encode("utf-8"), seed) % PART_SPREAD:
                yield len(found)
            if letter == "d":
                fd = os.open(name, opening, dir_fd=directory)
                try:
                    yield from visit(fd, relative + "/", depth + 1)
                finally:
                    os.close(fd)

    fd = os.open(root, opening)
    try:
        yield from visit(fd, "", 0)
    finally:
        os.close(fd)
    if not found or crc32(found[-1].relative.encode("utf-8"), seed) % PART_SPREAD:
        yield len(found)


class _Pool:
    """A thread pool that never holds more than IN_FLIGHT unfinished tasks."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="vault")
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        self._lock = threading.Lock()
        # Unfinished tasks, and the failures of finished ones: a task leaves the set
        # as it finishes (scanning a list of futures at every submit cost a reseal
        # thousands of locked `done()` calls).
        self._futures: set[Future[Any]] = set()
        self._failed: list[BaseException] = []

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
            if not future.cancelled() and future.exception() is not None:
                self._failed.append(future.exception())  # type: ignore[arg-type]
        self._slots.release()

    def _raise_failure(self) -> None:
        with self._lock:
            failure = self._failed[0] if self._failed else None
        if failure is not None:
            raise failure  # the first failure stops the submitter

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        self._slots.acquire()
        try:
            self._raise_failure()
            future = self._executor.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._finished)  # at once if it is already done
        return future

    def finish(self) -> None:
        while True:
            with self._lock:
                left = next(iter(self._futures), None)
            if left is None:
                break
            failure = left.exception()  # waits; its callback may not have run yet
            with self._lock:
                self._futures.discard(left)
                if failure is not None:
                    self._failed.append(failure)
        self._raise_failure()

    def close(self) -> None:
        with self._lock:
            left = list(self._futures)
        for future in left:
            future.cancel()
        self._executor.shutdown(wait=True)


def _read_into(path: str, view: memoryview) -> None:
    with open(path, "rb", buffering=0) as source:
        got = source.readinto(view)
        if got != len(view) or source.read(1):
            raise StateError(_("{path} changed while it was being sealed").format(path=path))


def _read_range(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise StateError(_("{path} changed while it was being sealed").format(path=path))
    return data


def _chunk_size(path: str) -> int:
    with open(path, "rb", buffering=0) as source:
        head = source.read(len(SQLITE_MAGIC))
    return SQLITE_CHUNK_SIZE if head == SQLITE_MAGIC else CHUNK_SIZE


def _pack_boundary(seed: int, relative: str) -> bool:
    # Where packs close only shapes which small files share a blob, so a cheap
    # checksum seeded per persona is enough: blob sizes do not follow a public rule.
    return zlib.crc32(relative.encode("utf-8"), seed) % PACK_SPREAD == 0


@dataclass
class _Sealing:
    keys: StoreKeys
    store: BlobStore
    existing: set[str]
    progress: Callable[[int], None]
    written: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    sealed_bytes: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.aead = self.keys.aead()

    def put(self, plaintext: bytes | bytearray | memoryview) -> str:
        """Name, encrypt and store one blob unless the store already has it (a worker's job)."""
        name = self.keys.name(plaintext)
        with self.lock:
            known = name in self.existing or name in self.sizes
            self.sizes[name] = len(plaintext)
        if not known:
            sealed = seal_blob(self.aead, self.keys, name, plaintext)
            if self.store.put(name, sealed):
                with self.lock:
                    self.written.append(name)
                    self.sealed_bytes += len(sealed)
        with self.lock:
            self.done += len(plaintext)
            self.progress(self.done)
        return name

    def keep(self, name: str, size: int) -> None:
        """Blob `name`, trusted and holding `size` bytes the seal has, is used again unwritten."""
        with self.lock:
            self.sizes[name] = size
            self.reused += 1
            self.done += size
            self.progress(self.done)


def _chunk_names(
    old: Entry | None, chunk: int, existing: set[str], digests: dict[str, bytes]
) -> dict[int, str]:
    """For a changed SQLite file: by offset, the trusted, digested blob each chunk was in."""
    if not digests or old is None or old.kind != "f" or chunk != SQLITE_CHUNK_SIZE:
        return {}
    was: dict[int, str] = {}
    at = 0
    for name, offset, length in old.refs:
        if offset == 0 and length == chunk and name in existing and name in digests:
            was[at] = name
        at += length
    return was


def _unchanged(item: _Found, previous: dict[str, Entry], baseline: Baseline | None) -> Entry | None:
    """The previous entry of a file not written since unsealing, None if it must be read."""
    if baseline is None:
        return None
    before = previous.get(item.relative)
    if before is None or before.kind != "f" or baseline.get(item.relative) != item.fingerprint:
        return None
    return before if before.size == item.fingerprint[0] else None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while sealing or unsealing.

    Both make tens of thousands of small objects (no cycles among them),
    and each few hundred allocations the GC walked everything the process
    held: measured, most of a reseal's time after a 1% session.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def seal_tree(
    src_dir: Path,
    store: BlobStore,
    keys: StoreKeys,
    *,
    generation: int,
    previous: Manifest | None = None,
    baseline: Baseline | None = None,
    trusted: Iterable[str] = (),
    before_manifest: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[StoreStats, Manifest]:
    """Seal `src_dir` into `store` as `generation`; blobs first, then the manifest.

    Files whose size, mtime, ctime and inode are what `baseline` recorded at
    unsealing reuse `previous`'s blobs unread; other files are read, cut
    into chunks and packs, and only blobs not among `trusted` are written.
    `trusted` are the blobs of the committed generation, durable since it was
    committed; any other blob in the store may be the torn leftover of a
    killed seal, so it is written again rather than relied on. Once
    every blob is durable, `before_manifest()` runs (the registry records
    the generation as pending there) and the manifest is written. On any
    failure before that, the blobs this seal added are removed again, so
    the store is as it was. Nothing is deleted here: see `collect`.
    """
    with _gc_paused():
        return _seal_tree(
            src_dir,
            store,
            keys,
            generation=generation,
            previous=previous,
            baseline=baseline,
            trusted=trusted,
            before_manifest=before_manifest,
            progress=progress,
        )


def _seal_tree(  # noqa: PLR0912, PLR0915 - one pass over the tree, step by step
    src_dir: Path,
    store: BlobStore,
    keys: StoreKeys,
    *,
    generation: int,
    previous: Manifest | None = None,
    baseline: Baseline | None = None,
    trusted: Iterable[str] = (),
    before_manifest: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[StoreStats, Manifest]:
    started = time.perf_counter()
    if not 0 < generation <= MAX_GENERATION:
        raise ValueError(f"a generation is between 1 and {MAX_GENERATION}")
    if not src_dir.is_dir():
        raise StateError(
            _("cannot seal persona {persona_id!r}: {src_dir} is not a directory").format(
                persona_id=keys.persona_id, src_dir=src_dir
            )
        )
    seed = int.from_bytes(keys.naming[:4], "big")
    scan = _Scan()
    entries = scan.found
    ends: Iterable[int] = _scan(src_dir, seed, scan)
    root = str(src_dir)
    # Parts of the previous generation by their first path: one still as unsealing
    # wrote it is listed again, unread and not encoded again.
    old_parts = (
        {part.paths[0]: part for part in previous.parts if part.paths}
        if previous is not None and baseline is not None
        else {}
    )
    before: dict[str, Entry] = {}
    store.sweep()
    existing = store.names() & set(trusted)
    if previous is None or baseline is None:
        ends = list(ends)  # the whole walk first: everything is read, and progress knows its total
        total = max(1, sum(e.fingerprint[0] for e in entries if e.kind == "f"))
    elif previous.parts:  # the walk goes on as parts are sealed: the last generation's size
        total = max(1, sum(part.plaintext_bytes for part in previous.parts))
    else:
        total = max(1, sum(e.size for e in previous.entries))
    sealing = _Sealing(
        keys,
        store,
        existing,
        (lambda done: progress(min(done, total), total)) if progress is not None else _ignore,
    )
    results: dict[int, tuple[Ref, ...]] = {}
    pool = _Pool()
    # Entry index, path, size, and the previous entry if the file is unchanged.
    pack: list[tuple[int, str, int, Entry | None]] = []
    pack_bytes = 0

    def flush_pack() -> None:
        nonlocal pack, pack_bytes
        if not pack:
            return
        members = pack
        pack, pack_bytes = [], 0
        kept = _kept_in_pack(members, previous, existing)
        if kept:
            with sealing.lock:
                for index, refs in kept.items():
                    results[index] = refs
                    for name, _o, length in refs:
                        if name not in sealing.sizes:
                            sealing.sizes[name] = previous.blob_sizes[name] if previous else 0
                            sealing.reused += 1
                        sealing.done += length
            members = [m for m in members if m[0] not in kept]
            if not members:
                return

        def job() -> None:
            data = bytearray(sum(size for _i, _p, size, _o in members))
            view = memoryview(data)
            at = 0
            for _i, relative, size, _o in members:
                _read_into(os.path.join(root, relative), view[at : at + size])
                at += size
            name = sealing.put(data)
            offset = 0
            for index, _p, size, _o in members:
                results[index] = ((name, offset, size),) if size else ()
                offset += size

        pool.submit(job)

    digests = baseline.digests if isinstance(baseline, Baseline) else {}
    digest_key = baseline.digest_key if isinstance(baseline, Baseline) else b""
    if isinstance(baseline, Baseline):
        baseline.stop.set()

    def chunk_job(
        path: str,
        span: tuple[int, int],
        chunk: int,
        slot: list[Ref | None],
        k: int,
        *,
        was: dict[int, str],
    ) -> Callable[[], None]:
        """Chunks k, k+1, ... of one file, read as one span of at most CHUNK_SIZE bytes.

        `was` names, by offset in the file, the trusted blob the chunk there
        was in: one whose digest the chunk still matches keeps its blob unnamed.
        """

        offset, size = span

        def job() -> None:
            data = memoryview(_read_range(path, offset, size))
            for at in range(0, size, chunk):
                piece = data[at : at + chunk]
                name = was.get(offset + at)
                if name is None or digests.get(name) != _digest(digest_key, piece):
                    name = sealing.put(piece)
                else:
                    sealing.keep(name, len(piece))
                slot[k + at // chunk] = (name, 0, len(piece))

        return job

    chunk_slots: list[tuple[int, list[Ref | None]]] = []
    # Each part in order: reused as it was, or the range of entries it covers.
    layout: list[Part | tuple[int, int]] = []
    try:
        for start, end in itertools.pairwise(itertools.chain((0,), ends)):
            if start == end:
                continue
            kept = old_parts.get(scan.paths[start])
            if kept is not None and _same_part(kept, scan, (start, end), baseline, existing):
                layout.append(kept)
                with sealing.lock:
                    sealing.sizes.update(kept.blob_sizes)
                    sealing.sizes[kept.name] = kept.size
                    sealing.reused += len(kept.blob_sizes) + 1
                    sealing.done += kept.plaintext_bytes
                continue
            layout.append((start, end))
            if previous is not None and not before:
                before = {e.path: e for e in previous.entries}
            for index in range(start, end):
                entry = entries[index]
                if entry.kind != "f":
                    continue
                size = entry.fingerprint[0]
                old = _unchanged(entry, before, baseline) if before else None
                if size < SMALL_FILE:
                    if size == 0:
                        results[index] = ()
                        continue
                    pack.append((index, entry.relative, size, old))
                    pack_bytes += size
                    if pack_bytes >= PACK_LIMIT or _pack_boundary(seed, entry.relative):
                        flush_pack()
                    continue
                if old is not None and all(name in existing for name, _o, _n in old.refs):
                    results[index] = old.refs
                    with sealing.lock:
                        for name, _o, length in old.refs:
                            sealing.sizes[name] = length
                        sealing.reused += len(old.refs)
                        sealing.done += size
                    continue
                path = os.path.join(root, entry.relative)
                chunk = _chunk_size(path)
                was = _chunk_names(before.get(entry.relative), chunk, existing, digests)
                count = -(-size // chunk)
                slot: list[Ref | None] = [None] * count
                chunk_slots.append((index, slot))
                # Small chunks are read and hashed a span at a time: one task per MiB.
                per_task = max(1, CHUNK_SIZE // chunk)
                for k in range(0, count, per_task):
                    offset = k * chunk
                    length = min(per_task * chunk, size - offset)
                    pool.submit(chunk_job(path, (offset, length), chunk, slot, k, was=was))
            flush_pack()  # a pack never spans two parts
        flush_pack()
        pool.finish()
        for index, slot in chunk_slots:
            results[index] = tuple(r for r in slot if r is not None)
        parts: list[Part] = []
        for item in layout:
            if isinstance(item, Part):
                parts.append(item)
                continue
            part_entries = tuple(_entry(entries[i], results.get(i)) for i in range(*item))
            sizes = {n: sealing.sizes[n] for e in part_entries for n, _o, _n in e.refs}
            plain = encode_part(keys.persona_id, part_entries, sizes)
            parts.append(_make_part(sealing.put(plain), len(plain), part_entries, sizes))
        entries.clear()  # the parts' entries replace them
        manifest = manifest_of_parts(keys.persona_id, generation, parts)
        sealed_manifest = seal_root(keys, manifest)
        if before_manifest is not None:
            before_manifest()
        store.put_manifest(generation, sealed_manifest)
    except BaseException as exc:
        pool.close()
        for name in sealing.written:
            with contextlib.suppress(OSError):
                store.delete(name)
        with contextlib.suppress(OSError):
            store.sweep()
        if isinstance(exc, OSError):
            raise EnvironmentProblem(
                _(
                    "sealing persona {persona_id!r} into {location} failed: {reason}; "
                    "the previous sealed profile is unchanged"
                ).format(
                    persona_id=keys.persona_id,
                    location=store.location,
                    reason=exc.strerror or type(exc).__name__,
                )
            ) from exc
        raise
    pool.close()
    if progress is not None:
        progress(total, total)
    stats = StoreStats(
        files=sum(part.files for part in parts),
        directories=sum(e.kind == "d" for e in manifest.entries),
        skipped=scan.skipped,
        plaintext_bytes=sum(part.plaintext_bytes for part in parts),
        sealed_bytes=sealing.sealed_bytes + len(sealed_manifest),
        chunks=len(manifest.blob_sizes),
        seconds=time.perf_counter() - started,
        generation=generation,
        blobs_written=len(sealing.written),
        blobs_reused=sealing.reused,
    )
    return stats, manifest


def _entry(found: _Found, refs: tuple[Ref, ...] | None) -> Entry:
    if found.kind == "f":
        return Entry(
            found.relative, "f", found.mode, found.mtime_ns, found.fingerprint[0], refs or ()
        )
    return Entry(found.relative, found.kind, found.mode, found.mtime_ns, target=found.target)


def _same_part(
    part: Part,
    scan: _Scan,
    span: tuple[int, int],
    baseline: Baseline | None,
    existing: set[str],
) -> bool:
    """Whether `part` still describes entries start..end: the same paths, each as unsealed."""
    start, end = span
    return (
        baseline is not None
        and end - start == len(part.paths)
        and tuple(scan.paths[start:end]) == part.paths
        and scan.fingerprints[start:end] == list(map(baseline.get, part.paths))
        and part.name in existing
        and existing.issuperset(part.blob_sizes)
    )


def _kept_in_pack(
    members: list[tuple[int, str, int, Entry | None]],
    previous: Manifest | None,
    existing: set[str],
) -> dict[int, tuple[Ref, ...]]:
    """By entry index, the refs of the pack's files that keep their bytes where they were.

    A file not written since unsealing keeps its piece of its trusted blob,
    even if the other files of that blob changed: only the changed files are
    read and packed anew. A blob is used again only while at least half its
    bytes are still some unchanged file's in this pack (counted here, so an
    underestimate: the rest is repacked), so the dead bytes inside live blobs
    never weigh more than the live ones.
    """
    if previous is None:
        return {}
    live: dict[str, int] = {}
    candidates: list[tuple[int, tuple[Ref, ...]]] = []
    for index, _p, _s, old in members:
        if old is None or not old.refs or not all(n in existing for n, _o, _l in old.refs):
            continue
        candidates.append((index, old.refs))
        for name, _o, length in old.refs:
            live[name] = live.get(name, 0) + length
    return {
        index: refs
        for index, refs in candidates
        if all(2 * live[name] >= previous.blob_sizes.get(name, 0) > 0 for name, _o, _l in refs)
    }


def _ignore(_done: int) -> None:
    return None


def collect(store: BlobStore, manifest: Manifest) -> int:
    """Remove every blob and manifest the current generation does not need; how many blobs."""
    keep = set(manifest.blob_sizes)
    removed = 0
    for generation in store.manifests():
        if generation != manifest.generation:
            store.delete_manifest(generation)
    for name in store.names() - keep:
        store.delete(name)
        removed += 1
    # Not made durable: a removed blob that comes back after a power cut is
    # listed by no manifest, so nothing trusts it and the next seal removes it.
    store.sweep()
    return removed


# -- unsealing -----------------------------------------------------------------


def _unsafe(persona_id: str, where: str, path: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        _(
            "refused to unseal {where} (persona {persona_id!r}): manifest entry "
            "{path!r} {why}; station never writes that, so someone holding the "
            "key made this file: keep it and report it to IT"
        ).format(where=where, persona_id=persona_id, path=path, why=why)
    )


def _check_entries(manifest: Manifest, where: str) -> None:  # noqa: PLR0912 - one rule a branch
    """Refuse a manifest whose paths reach out, repeat, or go below a non-directory."""
    dirs: set[tuple[str, ...]] = {()}
    seen: set[tuple[str, ...]] = set()
    links: list[tuple[str, ...]] = []
    for e in manifest.entries:
        try:
            parts = _parts(e.path)
            if "/".join(parts) != e.path:
                raise _Refusal(_("is not a plain relative path"))
            if parts in seen:
                raise _Refusal(_("appears twice"))
            if parts[:-1] not in dirs:
                raise _Refusal(_("lies below something that is not a directory listed before it"))
            if e.mode & _SPECIAL_BITS or e.mode != stat.S_IMODE(e.mode):
                raise _Refusal(_("has setuid, setgid or sticky bits"))
            if e.kind == "l" and not _symlink_stays_inside(parts, e.target):
                raise _Refusal(
                    _("is a symlink to {target!r}, outside the profile").format(target=e.target)
                )
            if e.kind == "f":
                at = 0
                for name, offset, length in e.refs:
                    blob = manifest.blob_sizes.get(name)
                    if blob is None or offset < 0 or length <= 0 or offset + length > blob:
                        raise _Refusal(_("points outside its blobs"))
                    at += length
                if at != e.size:
                    raise _Refusal(_("has pieces that do not add up to its size"))
        except _Refusal as refusal:
            raise _unsafe(manifest.persona_id, where, e.path, str(refusal)) from None
        seen.add(parts)
        if e.kind == "d":
            dirs.add(parts)
        elif e.kind == "l":
            links.append(parts)


def unseal_tree(
    store: BlobStore,
    keys: StoreKeys,
    manifest: Manifest,
    dest_dir: Path,
    progress: ProgressCallback | None = None,
) -> tuple[StoreStats, Baseline]:
    """Write the generation `manifest` describes into the empty `dest_dir`.

    Every blob is authenticated before a byte of it is written. On ANY
    exception `dest_dir` may hold part of the profile: the caller wipes it.
    Returns the stats and, for each file, what it looked like once written
    (the next seal reuses the blobs of files still looking like that); a
    thread then digests the SQLite chunks in the background (see `Baseline`).
    """
    with _gc_paused():
        stats, baseline = _unseal_tree(store, keys, manifest, dest_dir, progress)
    if any(e.kind == "f" and _sqlite_chunked(e) for e in manifest.entries):
        threading.Thread(
            target=digest_chunks,
            args=(store, keys, manifest, baseline),
            name="vault-digests",
            daemon=True,
        ).start()
    return stats, baseline


def _unseal_tree(  # noqa: PLR0912, PLR0915 - one pass over the manifest, step by step
    store: BlobStore,
    keys: StoreKeys,
    manifest: Manifest,
    dest_dir: Path,
    progress: ProgressCallback | None = None,
) -> tuple[StoreStats, Baseline]:
    started = time.perf_counter()
    where = store.location
    _check_entries(manifest, where)
    if any(dest_dir.iterdir()):
        raise StateError(
            _("refusing to unseal persona {persona_id!r} into non-empty {dest_dir}").format(
                persona_id=keys.persona_id, dest_dir=dest_dir
            )
        )
    root = str(dest_dir) + "/"  # entry paths are checked plain relative paths
    total = max(1, sum(manifest.blob_sizes.values()))
    done = 0
    lock = threading.Lock()
    baseline = Baseline()
    aead = keys.aead()
    # Which pieces of which files each blob holds.
    pieces: dict[str, list[tuple[Entry, int, int, int]]] = {}
    split: list[Entry] = []
    try:
        for e in manifest.entries:
            full = root + e.path
            if e.kind == "d":
                os.mkdir(full, 0o700)
            elif e.kind == "f":
                if len(e.refs) != 1:
                    # Empty, or in several blobs: made now, filled by offset below.
                    fd = os.open(full, _NEW_FILE, 0o600)
                    os.close(fd)
                    split.append(e)
                at = 0
                for name, offset, length in e.refs:
                    pieces.setdefault(name, []).append((e, at, offset, length))
                    at += length

        def finish_file(fd: int, e: Entry) -> None:
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            st = os.fstat(fd)
            # Made with its mode: a chmod only where the umask took bits, or for a file
            # made 0600 to be filled piece by piece (one system call a file fewer).
            if stat.S_IMODE(st.st_mode) != e.mode:
                os.fchmod(fd, e.mode)
                st = os.fstat(fd)
            fingerprint = _fingerprint(st)
            with lock:
                baseline[e.path] = fingerprint

        def job(batch: list[tuple[str, list[tuple[Entry, int, int, int]]]]) -> Callable[[], None]:
            def run() -> None:
                for name, wanted in batch:
                    one(name, wanted)

            return run

        def one(name: str, wanted: list[tuple[Entry, int, int, int]]) -> None:
            nonlocal done
            try:
                sealed = store.get(name)
            except FileNotFoundError:
                raise _tampered(
                    keys.persona_id, where, _("blob {name} is missing").format(name=name)
                ) from None
            plain = open_blob(aead, keys, name, sealed, where)
            if len(plain) != manifest.blob_sizes[name]:
                raise _tampered(
                    keys.persona_id, where, _("blob {name} has the wrong size").format(name=name)
                )
            view = memoryview(plain)
            for e, at, offset, length in wanted:
                full = root + e.path
                if len(e.refs) == 1:
                    fd = os.open(full, _NEW_FILE, e.mode)
                    try:
                        _write_all(fd, view[offset : offset + length], 0)
                        finish_file(fd, e)
                    finally:
                        os.close(fd)
                else:
                    fd = os.open(full, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        _write_all(fd, view[offset : offset + length], at)
                    finally:
                        os.close(fd)
            with lock:
                done += len(plain)
                if progress is not None:
                    progress(min(done, total), total)

        pool = _Pool()
        try:
            # Small blobs (packs, SQLite chunks) a MiB at a time: one task each cost
            # more in handing over than in decrypting.
            batch: list[tuple[str, list[tuple[Entry, int, int, int]]]] = []
            held = 0
            for name, wanted in pieces.items():
                batch.append((name, wanted))
                held += manifest.blob_sizes[name]
                if held >= CHUNK_SIZE:
                    pool.submit(job(batch))
                    batch, held = [], 0
            if batch:
                pool.submit(job(batch))
            pool.finish()
        finally:
            pool.close()
        for e in split:
            fd = os.open(root + e.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                finish_file(fd, e)
            finally:
                os.close(fd)
        for e in manifest.entries:
            if e.kind == "l":
                os.symlink(e.target, root + e.path)
                # Links and directories too: a part is reused only if all it lists is as written.
                baseline[e.path] = _fingerprint(os.lstat(root + e.path))
        top = os.path.realpath(dest_dir)
        for e in manifest.entries:
            if e.kind == "l":
                resolved = os.path.realpath(root + e.path)
                if os.path.commonpath([top, resolved]) != top:
                    raise _unsafe(
                        keys.persona_id,
                        where,
                        e.path,
                        _(
                            "is a symlink to {target!r}, which leads outside the profile "
                            "through another link"
                        ).format(target=e.target),
                    )
        for e in sorted(
            (e for e in manifest.entries if e.kind == "d"),
            key=lambda d: d.path.count("/"),
            reverse=True,
        ):
            fd = os.open(root + e.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, e.mode)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                baseline[e.path] = _fingerprint(os.fstat(fd))
            finally:
                os.close(fd)
    except OSError as exc:
        raise EnvironmentProblem(
            _("unsealing persona {persona_id!r} into {dest_dir} failed: {reason}").format(
                persona_id=keys.persona_id,
                dest_dir=dest_dir,
                reason=exc.strerror or type(exc).__name__,
            )
        ) from exc
    if progress is not None:
        progress(total, total)
    stats = StoreStats(
        files=sum(e.kind == "f" for e in manifest.entries),
        directories=sum(e.kind == "d" for e in manifest.entries),
        skipped=0,
        plaintext_bytes=sum(e.size for e in manifest.entries),
        sealed_bytes=total,
        chunks=len(manifest.blob_sizes),
        seconds=time.perf_counter() - started,
        generation=manifest.generation,
    )
    return stats, baseline


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
