"""The sealed-profile format: round trips, what is skipped, and every kind of tampering."""

from __future__ import annotations

import io
import itertools
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from outreach_station.errors import IntegrityError, StateError, UsageError
from outreach_station.vault import SKIPPED_DIR_NAMES, seal_dir, unseal_file, verify_file
from outreach_station.vault import sealed as sealed_mod

REPO = Path(__file__).resolve().parents[2]
CHUNK = 4096  # small chunks make many chunk edges out of small test data
SEALED_CHUNK = CHUNK + sealed_mod.TAG_BYTES
HEADER = sealed_mod.HEADER_BYTES


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))


class RedactedKey(bytes):
    """A data key that pytest's failure reports print without its bytes."""

    def __repr__(self) -> str:
        return "<32-byte test key>"


@pytest.fixture
def key() -> bytes:
    return RedactedKey(secrets.token_bytes(32))


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under root: file bytes, ('dir',) or ('link', target)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                out[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = full.read_bytes()
    return out


def make_profile(root: Path, seed: int = 1) -> None:
    """A small Chromium-like profile: site data, caches to skip, odd names."""
    rnd = secrets.SystemRandom()
    default = root / "Default"
    (default / "Local Storage" / "leveldb").mkdir(parents=True)
    (default / "Local Storage" / "leveldb" / "000003.log").write_bytes(b"ls" * 3000 * seed)
    (default / "Cookies").write_bytes(os.urandom(3 * CHUNK + 123))
    (default / "Preferences").write_text(f'{{"seed": {seed}}}')
    (default / "empty-file").write_bytes(b"")
    (default / "empty dir").mkdir()
    sw = default / "Service Worker" / "CacheStorage" / "abc123"
    sw.mkdir(parents=True)
    (sw / "index").write_bytes(b"site data, keep me")
    # Cache-named folders deeper down belong to sites or extensions: kept.
    deep = default / "Extensions" / "ext" / "1.0" / "Cache"
    deep.mkdir(parents=True)
    (deep / "asset.js").write_text("kept")
    uni = default / "Fichiers café" / "naïve 文件 🚀"
    uni.mkdir(parents=True)
    (uni / "ünïcødé ✓.txt").write_text("unicode ok ✓", encoding="utf-8")
    (default / ("x" * 120) / ("y" * 120)).mkdir(parents=True)
    (default / ("x" * 120) / ("y" * 120) / ("z" * 100 + ".bin")).write_bytes(b"long path")
    (default / "link-to-prefs").symlink_to("Preferences")
    (default / "abs-link").symlink_to("/etc/passwd")
    (default / "escaping-link").symlink_to("../../outside")
    (root / "Local State").write_text("{}")
    for name in SKIPPED_DIR_NAMES:
        for parent in (root, default):
            (parent / name / "sub").mkdir(parents=True)
            (parent / name / "sub" / "blob").write_bytes(rnd.randbytes(100))
    (root / "SingletonLock").symlink_to("host-1234")
    (root / "SingletonCookie").symlink_to("5678")
    (root / "SingletonSocket").symlink_to("/tmp/nonexistent/SingletonSocket")


def expected_snapshot(root: Path) -> dict[str, object]:
    snap = snapshot(root)
    skipped_roots = {"SingletonLock", "SingletonCookie", "SingletonSocket"}
    skipped_roots |= set(SKIPPED_DIR_NAMES)
    skipped_roots |= {f"Default/{name}" for name in SKIPPED_DIR_NAMES}
    skipped_roots |= {"Default/abs-link", "Default/escaping-link"}
    return {
        rel: value
        for rel, value in snap.items()
        if not any(rel == s or rel.startswith(s + "/") for s in skipped_roots)
    }


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    root = tmp_path / "profile"
    make_profile(root)
    return root


@pytest.fixture
def sealed(tmp_path: Path, profile: Path, key: bytes) -> Path:
    dest = tmp_path / "store" / "profile.sealed"
    seal_dir(profile, dest, key, "aliceaaaaaaa", chunk_size=CHUNK)
    return dest


def test_round_trip_keeps_everything_but_caches(
    tmp_path: Path, profile: Path, sealed: Path, key: bytes
) -> None:
    out = tmp_path / "out"
    stats = unseal_file(sealed, out, key, "aliceaaaaaaa")
    got = snapshot(out)
    assert got == expected_snapshot(profile)
    assert got["Default/empty-file"] == b""
    assert got["Default/Fichiers café/naïve 文件 🚀/ünïcødé ✓.txt"] == "unicode ok ✓".encode()
    assert got["Default/Service Worker/CacheStorage/abc123/index"] == b"site data, keep me"
    assert got["Default/Extensions/ext/1.0/Cache/asset.js"] == b"kept"
    assert got["Default/link-to-prefs"] == ("link", "Preferences")
    assert stats.files == sum(isinstance(v, bytes) for v in got.values())
    assert stats.chunks > 5


def test_caches_singletons_and_escaping_links_are_skipped(
    tmp_path: Path, profile: Path, key: bytes
) -> None:
    dest = tmp_path / "p.sealed"
    stats = seal_dir(profile, dest, key, "aliceaaaaaaa")
    out = tmp_path / "out"
    unseal_file(dest, out, key, "aliceaaaaaaa")
    for name in SKIPPED_DIR_NAMES:
        assert not (out / name).exists()
        assert not (out / "Default" / name).exists()
    for name in ("SingletonLock", "SingletonCookie", "SingletonSocket"):
        assert not (out / name).is_symlink()
    assert not (out / "Default" / "abs-link").is_symlink()
    assert not (out / "Default" / "escaping-link").is_symlink()
    assert (out / "Default" / "Service Worker" / "CacheStorage").is_dir()
    # 10 cache names at two levels, 3 singletons, 2 escaping links
    assert stats.skipped == 2 * len(SKIPPED_DIR_NAMES) + 3 + 2


def test_file_layout_is_header_then_full_chunks_then_short_last(sealed: Path, key: bytes) -> None:
    blob = sealed.read_bytes()
    assert blob[:8] == sealed_mod.MAGIC
    body = len(blob) - HEADER
    full, last = divmod(body, SEALED_CHUNK)
    # The last chunk is shorter than a full one, so never exactly divisible.
    assert sealed_mod.TAG_BYTES <= last < SEALED_CHUNK
    stats = verify_file(sealed, key, "aliceaaaaaaa")
    assert stats.chunks == full + 1
    assert stats.plaintext_bytes == full * CHUNK + last - sealed_mod.TAG_BYTES
    assert os.stat(sealed).st_mode & 0o777 == 0o600


def test_exact_multiple_of_chunk_gets_an_empty_last_chunk(tmp_path: Path, key: bytes) -> None:
    src = tmp_path / "p"
    src.mkdir()
    content = b"a" * 17920
    (src / "f").write_bytes(content)  # one header + data + end blocks = 20480 = 5 chunks
    dest = tmp_path / "e.sealed"
    stats = seal_dir(src, dest, key, "aliceaaaaaaa", chunk_size=CHUNK)
    assert stats.plaintext_bytes == 5 * CHUNK
    assert stats.chunks == 6
    assert dest.stat().st_size == HEADER + 5 * SEALED_CHUNK + sealed_mod.TAG_BYTES
    out = tmp_path / "out"
    unseal_file(dest, out, key, "aliceaaaaaaa")
    assert (out / "f").read_bytes() == content
    # Without the empty last chunk the file ends exactly at a chunk edge.
    dest.write_bytes(dest.read_bytes()[: -sealed_mod.TAG_BYTES])
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        verify_file(dest, key, "aliceaaaaaaa")


def _offsets(size: int) -> list[int]:
    body = size - HEADER
    chunks = -(-body // SEALED_CHUNK)
    picks = set(range(HEADER))  # every header byte
    picks |= {HEADER, HEADER + 1, HEADER + CHUNK // 2, HEADER + CHUNK + 5}  # first chunk
    middle = HEADER + (chunks // 2) * SEALED_CHUNK
    picks |= {middle, middle + 77, middle + CHUNK + 3}  # middle chunk and its tag
    picks |= set(range(size - 16, size))  # the last tag
    picks |= {secrets.randbelow(size) for _ in range(20)}
    return sorted(picks)


def test_bit_flips_anywhere_are_detected(tmp_path: Path, sealed: Path, key: bytes) -> None:
    original = sealed.read_bytes()
    for offset in _offsets(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 1 << (offset % 8)
        sealed.write_bytes(damaged)
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            verify_file(sealed, key, "aliceaaaaaaa")
    # Unsealing catches them too (a few, extraction is slower).
    for offset in (3, 20, HEADER + 10, len(original) // 2, len(original) - 1):
        damaged = bytearray(original)
        damaged[offset] ^= 0x80
        sealed.write_bytes(damaged)
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            unseal_file(sealed, tmp_path / f"out-{offset}", key, "aliceaaaaaaa")


def test_truncation_at_every_chunk_edge_and_mid_chunk(
    tmp_path: Path, sealed: Path, key: bytes
) -> None:
    original = sealed.read_bytes()
    cuts = {0, 1, HEADER - 1, HEADER, len(original) - 1, len(original) - 16}
    edge = HEADER
    while edge < len(original):
        cuts |= {edge, edge + 1, edge + SEALED_CHUNK // 2, edge + SEALED_CHUNK - 1}
        edge += SEALED_CHUNK
    for cut in sorted(c for c in cuts if c < len(original)):
        sealed.write_bytes(original[:cut])
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            verify_file(sealed, key, "aliceaaaaaaa")
    sealed.write_bytes(original[: HEADER + 2 * SEALED_CHUNK])
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        unseal_file(sealed, out, key, "aliceaaaaaaa")


def test_appended_bytes_are_detected(sealed: Path, key: bytes) -> None:
    original = sealed.read_bytes()
    for extra in (b"\x00", os.urandom(16), original[HEADER : HEADER + SEALED_CHUNK]):
        sealed.write_bytes(original + extra)
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            verify_file(sealed, key, "aliceaaaaaaa")


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER:]
    return blob[:HEADER], [body[i : i + SEALED_CHUNK] for i in range(0, len(body), SEALED_CHUNK)]


def test_reordered_or_repeated_chunks_are_detected(sealed: Path, key: bytes) -> None:
    header, chunks = _split(sealed.read_bytes())
    assert len(chunks) >= 4
    variants = [
        [chunks[0], chunks[2], chunks[1], *chunks[3:]],
        [chunks[1], chunks[0], *chunks[2:]],
        [chunks[0], chunks[0], *chunks[1:]],
        [*chunks[:-2], chunks[-1]],  # a middle chunk dropped
        [*chunks[1:]],
    ]
    for variant in variants:
        sealed.write_bytes(header + b"".join(variant))
        with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
            verify_file(sealed, key, "aliceaaaaaaa")


def test_swapping_persona_files_is_detected(
    tmp_path: Path, profile: Path, sealed: Path, key: bytes
) -> None:
    # Same key on purpose: only the persona binding can catch this.
    bob = tmp_path / "bob.sealed"
    seal_dir(profile, bob, key, "bobbbbbbbbbb", chunk_size=CHUNK)
    with pytest.raises(IntegrityError, match="'bobbbbbbbbbb'"):
        verify_file(sealed, key, "bobbbbbbbbbb")
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        unseal_file(bob, tmp_path / "out", key, "aliceaaaaaaa")
    # Bob's header spliced onto alice's chunks, and the other way round.
    a_head, a_chunks = _split(sealed.read_bytes())
    b_head, b_chunks = _split(bob.read_bytes())
    sealed.write_bytes(b_head + b"".join(a_chunks))
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        verify_file(sealed, key, "aliceaaaaaaa")
    sealed.write_bytes(a_head + b_chunks[0] + b"".join(a_chunks[1:]))
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'"):
        verify_file(sealed, key, "aliceaaaaaaa")


def test_wrong_key_is_detected_and_nothing_extracted(
    tmp_path: Path, sealed: Path, key: bytes
) -> None:
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="'aliceaaaaaaa'") as caught:
        unseal_file(sealed, out, secrets.token_bytes(32), "aliceaaaaaaa")
    assert "chunk 0" in str(caught.value)
    assert list(out.iterdir()) == []
    with pytest.raises(UsageError):
        verify_file(sealed, key[:16], "aliceaaaaaaa")


def test_each_seal_uses_a_fresh_salt(tmp_path: Path, profile: Path, key: bytes) -> None:
    one, two = tmp_path / "1.sealed", tmp_path / "2.sealed"
    seal_dir(profile, one, key, "aliceaaaaaaa", chunk_size=CHUNK)
    seal_dir(profile, two, key, "aliceaaaaaaa", chunk_size=CHUNK)
    a, b = one.read_bytes(), two.read_bytes()
    assert len(a) == len(b)
    assert a[14:46] != b[14:46]  # salts
    # Same plaintext, same counters: only a new subkey makes these differ.
    assert a[HEADER : HEADER + 64] != b[HEADER : HEADER + 64]


def test_unseal_refuses_non_empty_destination(tmp_path: Path, sealed: Path, key: bytes) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("x")
    with pytest.raises(StateError, match="non-empty"):
        unseal_file(sealed, out, key, "aliceaaaaaaa")
    assert [p.name for p in out.iterdir()] == ["stale"]


def test_persona_ids_that_are_paths_are_refused(tmp_path: Path, profile: Path, key: bytes) -> None:
    for bad in ("../x", "a/b", "", ".hidden", ".."):
        with pytest.raises(UsageError):
            seal_dir(profile, tmp_path / "x.sealed", key, bad)
    assert not (tmp_path / "x.sealed").exists()


def _raw_sealed(path: Path, tar_bytes: bytes, key: bytes, persona_id: str) -> None:
    """Seal arbitrary archive bytes with the real format (a key holder's forgery)."""
    salt = os.urandom(32)
    header = sealed_mod._HEADER.pack(sealed_mod.MAGIC, 1, 1, CHUNK, salt, 0)
    aead = sealed_mod._subkey_aead(key, salt, persona_id)
    ad = header + persona_id.encode()
    parts = [header]
    chunks = [tar_bytes[i : i + CHUNK] for i in range(0, len(tar_bytes), CHUNK)]
    if not chunks or len(chunks[-1]) == CHUNK:
        chunks.append(b"")
    for i, chunk in enumerate(chunks):
        parts.append(aead.encrypt(sealed_mod._nonce(i, i == len(chunks) - 1), chunk, ad))
    path.write_bytes(b"".join(parts))


def _forge(tmp_path: Path, key: bytes, name: str) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        evil = tarfile.TarInfo(name)
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    forged = tmp_path / "forged.sealed"
    _raw_sealed(forged, buf.getvalue(), key, "aliceaaaaaaa")
    verify_file(forged, key, "aliceaaaaaaa")  # authentic bytes, yet not what station writes
    return forged


@pytest.mark.parametrize("name", ["../escaped.txt", "a/../../up.txt", "a/../../../up2.txt"])
def test_extraction_refuses_dot_dot_paths(tmp_path: Path, key: bytes, name: str) -> None:
    forged = _forge(tmp_path, key, name)
    out = tmp_path / "deep" / "out"
    with pytest.raises(IntegrityError, match="aliceaaaaaaa"):
        unseal_file(forged, out, key, "aliceaaaaaaa")
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "deep" / "up.txt").exists()
    assert not (tmp_path / "up2.txt").exists()


def test_extraction_refuses_absolute_paths(tmp_path: Path, key: bytes) -> None:
    target = tmp_path / "abs-escape.txt"
    forged = _forge(tmp_path, key, str(target))
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="absolute path"):
        unseal_file(forged, out, key, "aliceaaaaaaa")
    assert not target.exists()
    assert not (out / str(target).lstrip("/")).exists()


def test_device_nodes_are_refused(tmp_path: Path, key: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dev = tarfile.TarInfo("null")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        tar.addfile(dev)
    forged = tmp_path / "dev.sealed"
    _raw_sealed(forged, buf.getvalue(), key, "aliceaaaaaaa")
    out = tmp_path / "out"
    with pytest.raises(IntegrityError):
        unseal_file(forged, out, key, "aliceaaaaaaa")
    assert not (out / "null").exists()


def test_progress_is_monotonic_and_ends_at_total(tmp_path: Path, profile: Path, key: bytes) -> None:
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "p.sealed"
    seal_dir(profile, dest, key, "aliceaaaaaaa", lambda d, t: seen.append((d, t)), chunk_size=CHUNK)
    assert len(seen) > 5
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert len({t for _, t in seen}) == 1
    assert seen[-1][0] == seen[-1][1]
    assert any(d < t // 2 for d, t in seen) and any(t // 2 < d < t for d, t in seen)
    seen.clear()
    unseal_file(dest, tmp_path / "out", key, "aliceaaaaaaa", lambda d, t: seen.append((d, t)))
    assert seen[-1] == (dest.stat().st_size, dest.stat().st_size)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))


def test_streams_without_holding_the_profile_in_memory(tmp_path: Path, key: bytes) -> None:
    src = tmp_path / "big"
    src.mkdir()
    with open(src / "blob", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    dest = tmp_path / "big.sealed"
    tracemalloc.start()
    try:
        seal_dir(src, dest, key, "aliceaaaaaaa")
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        unseal_file(dest, tmp_path / "out", key, "aliceaaaaaaa")
        _, unseal_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seal_peak < 12 << 20, seal_peak
    assert unseal_peak < 12 << 20, unseal_peak
    assert (tmp_path / "out" / "blob").read_bytes() == (src / "blob").read_bytes()


def test_failed_seal_keeps_old_generation_and_removes_new(
    tmp_path: Path, profile: Path, sealed: Path, key: bytes
) -> None:
    before = sealed.read_bytes()
    (profile / "Default" / "new-file").write_bytes(os.urandom(10 * CHUNK))

    def explode(done: int, total: int) -> None:
        if done > total // 4:
            raise RuntimeError("disk pulled")

    with pytest.raises(RuntimeError):
        seal_dir(profile, sealed, key, "aliceaaaaaaa", explode, chunk_size=CHUNK)
    assert sealed.read_bytes() == before
    assert not sealed_mod.new_path(sealed).exists()


def test_stale_new_file_is_replaced_by_next_seal(
    tmp_path: Path, profile: Path, sealed: Path, key: bytes
) -> None:
    stale = sealed_mod.new_path(sealed)
    stale.write_bytes(b"half a seal from a crash")
    # Unsealing ignores it: it reads only the finished generation.
    unseal_file(sealed, tmp_path / "o1", key, "aliceaaaaaaa")
    seal_dir(profile, sealed, key, "aliceaaaaaaa", chunk_size=CHUNK)
    assert not stale.exists()
    verify_file(sealed, key, "aliceaaaaaaa")


CRASH_SCRIPT = r"""
import os, signal, sys, time
from pathlib import Path
from outreach_station.vault import seal_dir

src, dest, mode, arg = sys.argv[1:5]
key = bytes.fromhex(sys.stdin.readline().strip())

def progress(done, total):
    if mode == "self" and done >= float(arg) * total:
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "slow":
        time.sleep(float(arg))

print("ready", flush=True)
seal_dir(Path(src), Path(dest), key, "aliceaaaaaaa", progress, chunk_size=1 << 16)
print("finished", flush=True)
"""


def _crash_seal(src: Path, dest: Path, key: bytes, mode: str, arg: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(src), str(dest), mode, arg],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(key.hex() + "\n")  # the key travels on stdin, never argv
    proc.stdin.close()
    return proc


@pytest.fixture
def generations(tmp_path: Path, key: bytes) -> tuple[Path, Path, dict[str, object]]:
    src = tmp_path / "src"
    make_profile(src)
    dest = tmp_path / "store" / "p.sealed"
    seal_dir(src, dest, key, "aliceaaaaaaa")
    old = expected_snapshot(src)
    # The next generation differs and is big enough to take a while.
    with open(src / "Default" / "big", "wb") as f:
        for _ in range(24):
            f.write(os.urandom(1 << 20))
    return src, dest, old


def _assert_old_generation(tmp_path: Path, dest: Path, key: bytes, old: dict[str, object]) -> None:
    out = tmp_path / f"check-{secrets.token_hex(4)}"
    unseal_file(dest, out, key, "aliceaaaaaaa")
    assert snapshot(out) == old


@pytest.mark.parametrize("fraction", ["0.2", "0.45", "0.7", "0.95"])
def test_sigkill_at_any_phase_leaves_old_generation(
    tmp_path: Path,
    key: bytes,
    generations: tuple[Path, Path, dict[str, object]],
    fraction: str,
) -> None:
    # Below 0.5 the kill lands while packing, above while verifying.
    src, dest, old = generations
    proc = _crash_seal(src, dest, key, "self", fraction)
    proc.wait(timeout=120)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert "finished" not in out
    assert sealed_mod.new_path(dest).exists()
    _assert_old_generation(tmp_path, dest, key, old)
    seal_dir(src, dest, key, "aliceaaaaaaa")
    assert not sealed_mod.new_path(dest).exists()
    fresh = tmp_path / "fresh"
    unseal_file(dest, fresh, key, "aliceaaaaaaa")
    assert (fresh / "Default" / "big").read_bytes() == (src / "Default" / "big").read_bytes()


def test_external_sigkill_mid_write(
    tmp_path: Path, key: bytes, generations: tuple[Path, Path, dict[str, object]]
) -> None:
    src, dest, old = generations
    pending = sealed_mod.new_path(dest)
    proc = _crash_seal(src, dest, key, "slow", "0.003")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pending.exists() and pending.stat().st_size > 4 << 20:
                break
            assert proc.poll() is None, "the seal finished before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail("the .new file never grew")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    size = pending.stat().st_size
    assert 4 << 20 < size < 24 << 20  # really cut mid-write
    assert pending.stat().st_mode & 0o777 == 0o600
    _assert_old_generation(tmp_path, dest, key, old)
    stats = seal_dir(src, dest, key, "aliceaaaaaaa")
    assert not pending.exists()
    assert stats.sealed_bytes == dest.stat().st_size
