"""Fresh personas pass their checks with the whole of Debian's fonts-noto, installed nowhere.

Issue 14 names the `fonts-noto` metapackage: with its recommended packages
(CJK, CJK extra, every extra script, the UI faces) it is 266 MB to
download and 704 MB unpacked, too much to install on a machine other
developers and CI share (every font check would then scan it). This script
downloads those packages with `apt-get download` into a cache directory,
unpacks them with `dpkg-deb -x`, and makes them the machine's fonts only for
itself: in a private mount namespace it lays the unpacked trees over
/usr/share/fonts, /usr/share/fontconfig/conf.avail and /etc/fonts/conf.d
(overlay mounts, read-only below) and over /var/cache/fontconfig (writable,
its changes kept in the cache directory), so fontconfig, `fonts.inventory()`
and every persona's browser see exactly what a laptop with fonts-noto
installed has. Then it creates `--personas` fresh personas on a Swedish
desktop platform and runs `station check` (api.check_persona) on each.

Needs root (mount namespace, overlay mounts) and the Secret Service:

    bash setup.sh bench bench/bench_fonts_noto.py --personas 10 [--cache DIR] [--json]
    bash setup.sh bench bench/bench_fonts_noto.py --personas 3 --baseline
                           # the same on the machine's own fonts, to compare

Exits 1 if any persona fails a check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scratch import scratch_home

# fonts-noto and what it recommends on Debian 12 beyond what setup.sh test
# installs (fonts-noto-core, -mono, -color-emoji).
PACKAGES = (
    "fonts-noto",
    "fonts-noto-cjk",
    "fonts-noto-cjk-extra",
    "fonts-noto-extra",
    "fonts-noto-ui-core",
    "fonts-noto-ui-extra",
    "fonts-noto-unhinted",
)
DEFAULT_CACHE = Path("/var/tmp/station-fonts-noto")
INSIDE = "STATION_BENCH_FONTS_NOTO_INSIDE"
# The system directories the packages write to, overlaid read-only.
OVERLAID = ("usr/share/fonts", "usr/share/fontconfig/conf.avail", "etc/fonts/conf.d")


def prepare(cache: Path) -> Path:
    """The packages' files unpacked under cache/root (downloaded and unpacked once)."""
    debs = cache / "debs"
    root = cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_", 1)[0] for p in debs.glob("*.deb")}
    missing = [name for name in PACKAGES if name not in have]
    if missing:
        print(f"downloading {' '.join(missing)} into {debs}", file=sys.stderr)
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    stamp = root / ".unpacked"
    if not stamp.exists():
        root.mkdir(exist_ok=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        stamp.touch()
    return root


def mount_fonts(cache: Path, root: Path) -> None:
    """Inside the private namespace: the unpacked packages become the machine's fonts."""
    for rel in OVERLAID:
        lower = root / rel
        target = Path("/") / rel
        if lower.is_dir() and target.is_dir():
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}:{target}", target],
                check=True,
            )
    upper, work = cache / "fontconfig-cache", cache / "fontconfig-work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir=/var/cache/fontconfig,upperdir={upper},workdir={work}",
            "/var/cache/fontconfig",
        ],
        check=True,
    )
    # What apt's trigger would do: the system cache a persona's browser reads.
    subprocess.run(["fc-cache", "--system-only"], check=True)


def run_personas(count: int) -> dict[str, object]:
    scratch, _runtime = scratch_home("bench-fonts-noto")
    profiles = scratch / "profiles"
    profiles.mkdir()
    os.environ["STATION_PROFILES"] = str(profiles)
    (profiles / "desk-se.toml").write_text(
        'name = "desk-se"\nstart_url = "http://127.0.0.1:9/"\ndevice = "desktop"\n'
        'locale = "sv-SE"\ntimezone = "Europe/Stockholm"\n'
    )
    from outreach_station import api, fonts

    started = time.perf_counter()
    machine = fonts.inventory()
    inventory_seconds = time.perf_counter() - started
    checks: list[float] = []
    passed = 0
    failed: list[str] = []
    kept: list[int] = []
    collect: list[int] = []
    with_cjk = 0
    for _ in range(count):
        persona = api.create_persona("desk-se")
        kept.append(len(persona.fingerprint["fonts"]))
        with_cjk += any("CJK" in family for family in persona.fingerprint["fonts"])
        began = time.perf_counter()
        result = api.check_persona(persona.id)
        checks.append(time.perf_counter() - began)
        meta = result.report.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("elapsed_ms"), int):
            collect.append(meta["elapsed_ms"])
        bad = [f"{persona.id}: {c.name}: {c.seen}" for c in result.checks if not c.ok]
        failed += bad
        passed += not bad
    return {
        "installed_families": len(machine.families),
        "measurable_families": len(machine.measurable),
        "cjk_families": sum("CJK" in f for f in machine.families),
        "inventory_seconds": round(inventory_seconds, 1),
        "personas": count,
        "passed": passed,
        # The new fonts were really in play: personas that keep a CJK family.
        "personas_with_cjk": with_cjk,
        "families_per_persona": f"{min(kept)}-{max(kept)}" if kept else "",
        "check_seconds": f"{min(checks):.1f}-{max(checks):.1f}" if checks else "",
        # How long the page took to collect every scope (each scope may take 20 s).
        "page_collect_ms": f"{min(collect)}-{max(collect)}" if collect else "",
        "failed_checks": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--baseline", action="store_true", help="the machine's own fonts, without fonts-noto"
    )
    args = parser.parse_args(argv)
    cache = args.cache.resolve()
    if not args.baseline and not os.environ.get(INSIDE):
        if os.geteuid() != 0:
            print("needs root: it mounts the fonts in a private mount namespace", file=sys.stderr)
            return 2
        prepare(cache)
        env = {**os.environ, INSIDE: "1"}
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
        unshare = ["unshare", "--mount", "--propagation", "private"]
        return subprocess.run([*unshare, *command], env=env, check=False).returncode
    if not args.baseline:
        mount_fonts(cache, cache / "root")
    summary = run_personas(args.personas)
    ok = summary["passed"] == args.personas
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
        print("OK" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
