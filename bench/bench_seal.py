"""Seal, unseal and reseal of the sealed store against a plain copy, on a ~200 MB profile.

Builds a Chromium-like profile (thousands of 1-50 KB files, a few SQLite
files of a few MB, a few 20-60 MB files; part compressible, part random),
then in one run, side by side, takes the median of `--repeat` runs of:

- copy to disk: `shutil.copytree` of the profile from the RAM workspace to
  the store's disk (no crypto, no fsync): what a seal is measured against;
- seal: a full seal into an empty store (`vault.blobs.seal_tree`: walk,
  pack, name, encrypt, write and fsync every blob, the manifest);
- copy back: `shutil.copytree` of the disk copy into the RAM workspace;
- unseal: `vault.blobs.unseal_tree` of that store into the RAM workspace;
- reseal-1%: after a session that changed 1% of the profile's bytes the way
  Chromium does between sessions (bench/profile_churn.py: a few pages of
  its SQLite files, LOG files and preferences rewritten, logs appended, new
  session files), the reseal of the unsealed workspace, garbage collection
  included;
- for context, AES-256-GCM alone on the same bytes, and the previous
  format's single-file `seal_dir`/`unseal_file`.

Then it seals a profile of `--rss-mb` (1000 by default; 0 skips it) in a
fresh process and reports that process's peak RSS (VmHWM).

    PYTHONPATH=. python bench/bench_seal.py [--size-mb 200] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from outreach_station.storage.blobs import LocalBlobStore
from outreach_station.vault import DEFAULT_CHUNK_SIZE, seal_dir, unseal_file
from outreach_station.vault import blobs as fmt

MB = 1_000_000


def _content(rnd: random.Random, size: int) -> bytes:
    """Half the files random (images, encrypted blobs), half compressible text."""
    if rnd.random() < 0.5:
        return rnd.randbytes(size)
    words = [b"session", b"https://example.org/", b'{"key":', b"cookie", b"0000", b"\n"]
    line = b" ".join(rnd.choice(words) for _ in range(64))
    return (line * (size // len(line) + 1))[:size]


SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_like(rnd: random.Random, size: int) -> bytes:
    """4 KiB pages: a small random header per page, the rest mostly zero-padded rows."""
    pages = [SQLITE_MAGIC + rnd.randbytes(4096 - len(SQLITE_MAGIC))]
    size -= 4096
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


def chromium_session(root: Path, total: int, seed: int) -> int:
    """Change about 1% of the profile's bytes as a Chromium session does; returns bytes changed.

    Measured (bench/profile_churn.py) between two ordinary sessions: a few
    pages of History, Cookies and other SQLite files rewritten in place,
    LOG/LOG.old and Preferences rewritten whole, leveldb logs appended,
    session files replaced by new ones.
    """
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data
    budget = total // 100
    changed = 0
    default = root / "Default"
    # SQLite pages in place, in the three databases a visit writes to: an eighth of the budget.
    databases = [default / name for name in ("History", "Cookies", "Favicons")]
    pages = max(1, budget // 8 // 4096 // len(databases))
    for db in databases:
        size = db.stat().st_size
        with db.open("r+b") as f:
            for _ in range(pages):
                f.seek(rnd.randrange(1, size // 4096) * 4096)
                f.write(rnd.randbytes(4096))
                changed += 4096
    # Small files rewritten whole, two by two in the same folder (LOG and LOG.old): half.
    folders = sorted(
        {p.parent for p in default.rglob("*") if p.is_file() and p.stat().st_size < 60_000}
    )
    while changed < budget * 5 // 8:
        folder = rnd.choice(folders)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        at = rnd.randrange(len(files) - 1)
        for victim in files[at : at + 2]:
            size = victim.stat().st_size
            victim.write_bytes(rnd.randbytes(size))
            changed += size
    # A log appended to: an eighth.
    log = sorted(default.glob("Local Storage/leveldb/*"))[0]
    with log.open("ab") as f:
        f.write(rnd.randbytes(budget // 8))
    changed += budget // 8
    # New session files: the rest.
    sessions = default / "Sessions"
    sessions.mkdir(exist_ok=True)
    index = 0
    while changed < budget:
        size = min(budget - changed, 120_000)
        (sessions / f"Session_{seed}_{index}").write_bytes(rnd.randbytes(size))
        changed += size
        index += 1
    return changed


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


RSS_CHILD = """
import os, sys, time
from pathlib import Path
from outreach_station.storage.blobs import LocalBlobStore
from outreach_station.vault import blobs as fmt
keys = fmt.StoreKeys.derive(os.urandom(32), "benchbenchbe")
store = LocalBlobStore(Path(sys.argv[2]))
started = time.perf_counter()
stats, _m = fmt.seal_tree(Path(sys.argv[1]), store, keys, generation=1)
took = time.perf_counter() - started
status = Path("/proc/self/status").read_text()
hwm = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
print(int(hwm) * 1024, stats.plaintext_bytes, took)
"""


IDLE_CHILD = """
from pathlib import Path
import outreach_station.vault.blobs
import cryptography.hazmat.primitives.ciphers.aead
status = Path("/proc/self/status").read_text()
hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) * 1024)
"""


def peak_rss(ram: Path | None, disk: Path | None, size_mb: int) -> tuple[int, int, float, int]:
    """Peak RSS of a fresh process sealing a `size_mb` profile, its bytes, seconds, and at rest."""
    work = Path(tempfile.mkdtemp(prefix="bench-rss-", dir=ram))
    store = Path(tempfile.mkdtemp(prefix="bench-rss-store-", dir=disk))
    try:
        build_profile(work / "profile", size_mb, seed=11)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        idle = subprocess.run(
            [sys.executable, "-c", IDLE_CHILD], capture_output=True, text=True, env=env, check=True
        )
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(work), str(store / "p")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        hwm, plaintext, took = out.stdout.split()
        return int(hwm), int(plaintext), float(took), int(idle.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; median")
    parser.add_argument("--sealed-dir", type=Path, default=None, help="the store's disk")
    parser.add_argument("--rss-mb", type=int, default=1000, help="profile size for peak RSS")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    ram = _ram_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-seal-", dir=ram))
    sealed_dir = Path(tempfile.mkdtemp(prefix="bench-sealed-", dir=args.sealed_dir))
    try:
        src = work / "profile"
        total = build_profile(src / "profile", args.size_mb)
        files = sum(1 for p in src.rglob("*") if p.is_file())
        key = os.urandom(32)
        keys = fmt.StoreKeys.derive(key, "benchbenchbe")
        times: dict[str, list[float]] = {
            k: []
            for k in ("copy", "seal", "copy_back", "unseal", "reseal", "raw", "seal2", "unseal2")
        }
        written: list[int] = []
        changed: list[int] = []
        blobs = 0
        for run in range(args.repeat):
            disk_copy = sealed_dir / f"copy{run}"
            times["copy"].append(_timed(lambda d=disk_copy: shutil.copytree(src, d)))
            back = work / f"back{run}"
            times["copy_back"].append(_timed(lambda d=disk_copy, b=back: shutil.copytree(d, b)))
            shutil.rmtree(disk_copy)
            shutil.rmtree(back)

            store = LocalBlobStore(sealed_dir / f"store{run}")
            started = time.perf_counter()
            _stats, manifest = fmt.seal_tree(src, store, keys, generation=1)
            fmt.collect(store, manifest)
            times["seal"].append(time.perf_counter() - started)
            blobs = len(manifest.blob_sizes)
            out = work / f"out{run}"
            out.mkdir()
            started = time.perf_counter()
            _stats, baseline = fmt.unseal_tree(store, keys, manifest, out)
            times["unseal"].append(time.perf_counter() - started)

            changed.append(chromium_session(out / "profile", total, seed=run))
            started = time.perf_counter()
            stats, manifest = fmt.seal_tree(
                out,
                store,
                keys,
                generation=2,
                previous=manifest,
                baseline=baseline,
                trusted=manifest.blob_sizes,
            )
            fmt.collect(store, manifest)
            times["reseal"].append(time.perf_counter() - started)
            written.append(stats.blobs_written)
            shutil.rmtree(out)
            shutil.rmtree(sealed_dir / f"store{run}")

            times["raw"].append(raw_gcm_seconds(total, args.chunk_size))
            dest = sealed_dir / "profile.sealed"
            times["seal2"].append(seal_dir(src, dest, key, "benchbenchbe").seconds)
            out = work / f"old{run}"
            times["unseal2"].append(unseal_file(dest, out, key, "benchbenchbe").seconds)
            shutil.rmtree(out)
            dest.unlink()
        med = {k: statistics.median(v) for k, v in times.items()}
        result: dict[str, object] = {
            "profile_bytes": total,
            "files": files,
            "blobs": blobs,
            "repeat": args.repeat,
            "profile_dir": str(work),
            "store_dir": str(sealed_dir),
            "ram_backed_profile": ram is not None,
            "seconds": {k: round(v, 4) for k, v in med.items()},
            "seal_over_copy": round(med["copy"] / med["seal"], 3),
            "unseal_over_copy": round(med["copy_back"] / med["unseal"], 3),
            "reseal_over_seal": round(med["reseal"] / med["seal"], 3),
            "reseal_changed_bytes": int(statistics.median(changed)),
            "reseal_blobs_written": int(statistics.median(written)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sealed_dir, ignore_errors=True)
    if args.rss_mb:
        hwm, plaintext, took, idle = peak_rss(ram, args.sealed_dir, args.rss_mb)
        result.update(
            rss_profile_bytes=plaintext,
            rss_peak_bytes=hwm,
            rss_idle_bytes=idle,
            rss_seal_seconds=round(took, 3),
        )

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = med
    print(
        f"profile: {total / MB:.0f} MB in {files} files, {blobs} blobs "
        f"(median of {args.repeat}; profile in {'RAM' if ram else 'the temp dir'}, "
        f"store in {sealed_dir.parent})"
    )
    print(f"copy to disk    : {s['copy']:.3f} s    seal   : {s['seal']:.3f} s")
    print(f"copy back to RAM: {s['copy_back']:.3f} s    unseal : {s['unseal']:.3f} s")
    print(
        f"reseal after 1% : {s['reseal']:.3f} s  ({result['reseal_changed_bytes'] / MB:.1f} MB "
        f"changed, {result['reseal_blobs_written']} blobs written)"
    )
    print(
        f"context: AES-256-GCM alone {s['raw']:.3f} s; format 2 seal {s['seal2']:.3f} s, "
        f"unseal {s['unseal2']:.3f} s"
    )
    print(f"seal/copy = {result['seal_over_copy']:.3f}          # goal >= 0.9")
    print(f"unseal/copy = {result['unseal_over_copy']:.3f}        # goal >= 0.9")
    print(f"reseal-1%/seal = {result['reseal_over_seal']:.3f}     # goal <= 0.05")
    if args.rss_mb:
        print(
            f"peak RSS sealing {result['rss_profile_bytes'] / MB:.0f} MB: "
            f"{result['rss_peak_bytes'] / MB:.1f} MB (a process that only imported the vault: "
            f"{result['rss_idle_bytes'] / MB:.1f} MB; seal took {result['rss_seal_seconds']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
