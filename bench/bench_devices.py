"""Distinct devices on this machine: N fresh personas, each checked in several sealed sessions.

The issue's acceptance run: 20 fresh personas (desktop and phone, Swedish
and British platforms), each opened headless against the built-in inspector
`--sessions` times (every session unseals the profile the previous one
sealed). Reports how many distinct device hashes (no screen, window,
languages, time zone or user agent in them) and fingerprint hashes the
personas gave, whether each persona kept its hashes across sessions, and
whether every `station check` passed. Exits 1 if any of that fails.
Needs the Secret Service (run it inside the test session, see README).

    bash setup.sh bench bench/bench_devices.py --personas 20 --sessions 3 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scratch import scratch_home

PLATFORMS = (
    ("desk-se", "desktop", "sv-SE", "Europe/Stockholm"),
    ("desk-gb", "desktop", "en-GB", "Europe/London"),
    ("mob-se", "mobile", "sv-SE", "Europe/Stockholm"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scratch, _runtime = scratch_home("bench-devices")
    profiles = scratch / "profiles"
    profiles.mkdir()
    os.environ["STATION_PROFILES"] = str(profiles)
    for platform_id, device, locale, zone in PLATFORMS:
        (profiles / f"{platform_id}.toml").write_text(
            f'name = "{platform_id}"\nstart_url = "http://127.0.0.1:9/"\ndevice = "{device}"\n'
            f'locale = "{locale}"\ntimezone = "{zone}"\n'
        )
    from outreach_station import api

    started = time.perf_counter()
    personas = [api.create_persona(PLATFORMS[i % len(PLATFORMS)][0]) for i in range(args.personas)]
    device: dict[str, set[str | None]] = {p.id: set() for p in personas}
    whole: dict[str, set[str]] = {p.id: set() for p in personas}
    failed: list[str] = []
    for _session in range(args.sessions):
        for persona in personas:
            result = api.check_persona(persona.id)
            device[persona.id].add(result.device_hash)
            whole[persona.id].add(str(result.report.get("hash")))
            failed += [f"{persona.id}: {c.name}: {c.seen}" for c in result.checks if not c.ok]
    firsts = [next(iter(hashes)) for hashes in device.values()]
    summary = {
        "personas": args.personas,
        "sessions": args.sessions,
        "distinct_device_hashes": len(set(firsts)),
        "distinct_fingerprint_hashes": len({next(iter(h)) for h in whole.values()}),
        "unstable_devices": [pid for pid, hashes in device.items() if len(hashes) != 1],
        "unstable_fingerprints": [pid for pid, hashes in whole.items() if len(hashes) != 1],
        "renderings": Counter(p.fingerprint.get("font_rendering") for p in personas),
        "failed_checks": failed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    ok = (
        summary["distinct_device_hashes"] == args.personas
        and not summary["unstable_devices"]
        and not summary["unstable_fingerprints"]
        and not failed
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=dict))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
        print("OK" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
