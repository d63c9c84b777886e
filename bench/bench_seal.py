"""Seal and unseal throughput against raw AES-256-GCM, on a realistic ~200 MB profile.

Builds a Chromium-like profile (thousands of 1-50 KB files, a few SQLite-like
files of a few MB, a few 20-60 MB files; part compressible, part random),
then in one run measures:

- raw: AES-256-GCM encryption of the same number of bytes in memory, in
  chunks of the same size (the ceiling: pure crypto, no I/O, no tar);
- seal: `seal_dir` end to end (walk, tar, encrypt, write, fsync, verify every
  chunk, rename, fsync the directory);
- unseal: `unseal_file` end to end (read, authenticate, untar, write files);
- copy: `shutil.copytree` of the same profile in the same RAM directory, no
  crypto and no tar: what the file system alone costs, for context.

The profile and the unseal target live in a RAM-backed directory when there
is one (the workspace unseals into RAM), the sealed file beside it on disk
(`--sealed-dir`, default the system temp dir), as in real use.

    PYTHONPATH=. python bench/bench_seal.py [--size-mb 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from outreach_station.vault import DEFAULT_CHUNK_SIZE, seal_dir, unseal_file

MB = 1_000_000


def _content(rnd: random.Random, size: int) -> bytes:
    """Half the files random (images, encrypted blobs), half compressible text."""
    if rnd.random() < 0.5:
        return rnd.randbytes(size)
    words = [b"session", b"https://example.org/", b'{"key":', b"cookie", b"0000", b"\n"]
    line = b" ".join(rnd.choice(words) for _ in range(64))
    return (line * (size // len(line) + 1))[:size]


def _sqlite_like(rnd: random.Random, size: int) -> bytes:
    """4 KiB pages: a small random header per page, the rest mostly zero-padded rows."""
    pages = []
    for _ in range(size // 4096):
        fill = rnd.randrange(512, 4096)
        pages.append(rnd.randbytes(fill) + b"\x00" * (4096 - fill))
    return b"".join(pages)


def build_profile(root: Path, size_mb: int, seed: int = 7) -> int:
    """Write the profile; returns the total bytes of file content."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    budget = size_mb * MB
    total = 0
    default = root / "Default"
    # Large files: ~35% of the budget, 20-60 MB each (scaled down for small runs).
    large_budget = int(budget * 0.35)
    index = 0
    while large_budget > 0:
        size = min(large_budget, rnd.randrange(20 * MB, 60 * MB) * size_mb // 200)
        size = max(size, 1 * MB)
        target = default / "IndexedDB" / f"https_site{index}.blob" / "1"
        target.mkdir(parents=True, exist_ok=True)
        with open(target / f"{index:04x}", "wb") as f:
            left = size
            while left:
                part = min(left, 4 * MB)
                f.write(_content(rnd, part))
                left -= part
        total += size
        large_budget -= size
        index += 1
    # SQLite-like mid files: ~15%.
    for name in ("History", "Cookies", "Web Data", "Favicons", "Login Data", "Top Sites"):
        size = max(4096, int(budget * 0.15 / 6) // 4096 * 4096)
        (default / name).parent.mkdir(parents=True, exist_ok=True)
        (default / name).write_bytes(_sqlite_like(rnd, size))
        total += size
    # Thousands of small files: the rest.
    folders = [
        default / "Service Worker" / "CacheStorage" / f"{i:032x}" / "entries" for i in range(8)
    ]
    folders += [default / "Local Storage" / "leveldb", default / "Session Storage"]
    folders += [default / "File System" / "000" / "t" / f"{i:02d}" for i in range(20)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    count = 0
    while total < budget:
        size = min(rnd.randrange(1024, 50 * 1024), budget - total)
        folder = folders[count % len(folders)]
        (folder / f"{count:06d}_{rnd.getrandbits(32):08x}").write_bytes(_content(rnd, size))
        total += size
        count += 1
    return total


def raw_gcm_seconds(total: int, chunk_size: int) -> float:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(os.urandom(32))
    chunk = os.urandom(chunk_size)
    associated = os.urandom(48) + b"bench"
    full, rest = divmod(total, chunk_size)
    tail = chunk[:rest]
    started = time.perf_counter()
    for counter in range(full):
        aead.encrypt(counter.to_bytes(12, "big"), chunk, associated)
    aead.encrypt(full.to_bytes(12, "big"), tail, associated)
    return time.perf_counter() - started


def _ram_dir() -> Path | None:
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and Path(candidate).is_dir() and os.access(candidate, os.W_OK):
            return Path(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; median")
    parser.add_argument("--sealed-dir", type=Path, default=None, help="where the sealed file goes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    ram = _ram_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-seal-", dir=ram))
    sealed_dir = Path(tempfile.mkdtemp(prefix="bench-sealed-", dir=args.sealed_dir))
    try:
        src = work / "profile"
        total = build_profile(src, args.size_mb)
        files = sum(1 for p in src.rglob("*") if p.is_file())
        key = os.urandom(32)
        dest = sealed_dir / "profile.sealed"

        raw, seal, unseal, copy = [], [], [], []
        for run in range(args.repeat):
            started = time.perf_counter()
            shutil.copytree(src, work / "copy")
            copy.append(time.perf_counter() - started)
            shutil.rmtree(work / "copy")
            raw.append(raw_gcm_seconds(total, args.chunk_size))
            seal.append(
                seal_dir(src, dest, key, "benchbenchbe", chunk_size=args.chunk_size).seconds
            )
            out = work / f"out{run}"
            unseal.append(unseal_file(dest, out, key, "benchbenchbe").seconds)
            shutil.rmtree(out)
        raw_s, seal_s, unseal_s, copy_s = (statistics.median(x) for x in (raw, seal, unseal, copy))
        result = {
            "profile_bytes": total,
            "files": files,
            "sealed_bytes": dest.stat().st_size,
            "chunk_size": args.chunk_size,
            "repeat": args.repeat,
            "profile_dir": str(src.parent),
            "sealed_dir": str(sealed_dir),
            "ram_backed_profile": ram is not None,
            "raw_gcm_mb_s": round(total / raw_s / MB, 1),
            "seal_mb_s": round(total / seal_s / MB, 1),
            "unseal_mb_s": round(total / unseal_s / MB, 1),
            "copytree_mb_s": round(total / copy_s / MB, 1),
            "seal_seconds": round(seal_s, 3),
            "unseal_seconds": round(unseal_s, 3),
            "raw_seconds": round(raw_s, 3),
            "seal_over_raw": round(raw_s / seal_s, 3),
            "unseal_over_raw": round(raw_s / unseal_s, 3),
            "copytree_over_raw": round(raw_s / copy_s, 3),
            "goal_ratio": 0.6,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sealed_dir, ignore_errors=True)

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"profile: {result['profile_bytes'] / MB:.0f} MB in {files} files "
            f"(chunk {args.chunk_size // 1024} KiB, median of {args.repeat})"
        )
        print(f"raw AES-256-GCM : {result['raw_gcm_mb_s']:8.1f} MB/s  ({raw_s:.3f} s)")
        print(f"seal            : {result['seal_mb_s']:8.1f} MB/s  ({seal_s:.3f} s)")
        print(f"unseal          : {result['unseal_mb_s']:8.1f} MB/s  ({unseal_s:.3f} s)")
        print(f"copytree        : {result['copytree_mb_s']:8.1f} MB/s  ({copy_s:.3f} s, no crypto)")
        print(f"seal/raw   = {result['seal_over_raw']:.3f}   (goal >= 0.6)")
        print(f"unseal/raw = {result['unseal_over_raw']:.3f}   (goal >= 0.6)")
        print(f"copy/raw   = {result['copytree_over_raw']:.3f}   (file-system ceiling)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
