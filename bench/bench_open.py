"""`station open` against bare Playwright on the same profile, side by side in one run.

For each round, in alternating order:

- bare: Playwright `launch_persistent_context` (Playwright's default switches)
  on a plaintext copy of the persona's profile + `goto` of the start page
  until `load`, then close;
- station: `api.open_platform` of the same persona until its start page has
  loaded (hook called), then close. This includes unsealing the profile into
  RAM before the launch and sealing it again after the close; the launch
  alone (from "browser ready to start" to "page loaded") is timed too.

Reports medians and the ratios station/bare (goals: launch <= 1.15, sealed
open <= 1.25), plus start-up of `station --help` and `station persona list`
(goal <= 200 ms) and of `station rotate` (goal: well under a second).
Needs the Secret Service (run it inside the test session, see README).

    PYTHONPATH=. python bench/bench_open.py [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAGE = b"<!doctype html><title>start</title><h1>start page</h1>" + b"<p>x</p>" * 200


class _Page(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def _bare(executable: str, profile: Path, url: str) -> float:
    from playwright.async_api import async_playwright

    async def run() -> float:
        started = time.perf_counter()
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(profile), executable_path=executable, headless=True
            )
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(url, wait_until="load")
            loaded = time.perf_counter() - started
            await context.close()
        return loaded

    return asyncio.run(run())


def _station(platform: str, persona_id: str) -> tuple[float, float, float]:
    """Seconds until loaded (from the call), of the launch alone, and in all (with sealing)."""
    from outreach_station import api

    marks: dict[str, float] = {}

    def notify(message: str) -> None:
        if message.startswith("using "):
            marks["launch"] = time.perf_counter()

    async def hook(_context: Any, _page: Any) -> None:
        marks["loaded"] = time.perf_counter()

    started = time.perf_counter()
    api.open_platform(
        platform,
        persona_id=persona_id,
        headless=True,
        notify=notify,
        hook=hook,
        close_after_hook=True,
    )
    done = time.perf_counter()
    return marks["loaded"] - started, marks["loaded"] - marks["launch"], done - started


def _wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rotations(platform: str, runs: int) -> list[float]:
    """Seconds of each of `runs` rotations of `platform` through the core API."""
    from outreach_station import api

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        api.rotate(platform, reason="bench", force=True)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="station-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="station-bench-", dir="/dev/shm"))
    os.environ.update(
        STATION_HOME=str(work / "home"),
        XDG_RUNTIME_DIR=str(runtime),
        STATION_POLICY=str(work / "no-policy.toml"),
        STATION_PROFILES=str(work / "profiles"),
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (work / "profiles").mkdir()
    (work / "profiles" / "bench.toml").write_text(f'name = "Bench"\nstart_url = "{url}"\n')
    # No standby pool: every rotation draws a fresh persona (fonts, population, registry).
    (work / "profiles" / "bench-fresh.toml").write_text(
        f'name = "Bench, no pool"\nstart_url = "{url}"\n'
    )

    from outreach_station import api, paths
    from outreach_station.browser import find_browser
    from outreach_station.workspace import SealedState, sealed_file

    try:
        persona = api.create_persona("bench")
        for _ in range(2):  # a profile that has been used: sealed, with its databases
            _station("bench", persona.id)
        station_paths = paths.current()
        plain = work / "plain-profile"
        (work / "unsealed").mkdir(mode=0o700)
        SealedState(station_paths, persona.id).unseal(
            work / "unsealed", api.open_vault().data_key(persona.id), None
        )
        shutil.copytree(work / "unsealed" / "profile", plain)
        executable = str(find_browser().path)

        bare, total, launch, whole = [], [], [], []
        for round_ in range(args.rounds):
            order = ("bare", "station") if round_ % 2 == 0 else ("station", "bare")
            for which in order:
                if which == "bare":
                    bare.append(_bare(executable, plain, url))
                else:
                    t, lch, w = _station("bench", persona.id)
                    total.append(t)
                    launch.append(lch)
                    whole.append(w)
        blobs = station_paths.persona_dir(persona.id) / "blobs"
        sealed_size = sealed_file(station_paths, persona.id).stat().st_size + sum(
            p.stat().st_size for p in blobs.iterdir()
        )

        env = dict(os.environ)
        exe = [sys.executable, "-m", "outreach_station"]
        # An installed package has its bytecode compiled; an editable checkout run
        # with PYTHONDONTWRITEBYTECODE would compile every module on every start.
        package = Path(api.__file__).parent
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
        help_s = _wall([*exe, "--help"], env, 10)
        list_s = _wall([*exe, "persona", "list"], env, 10)
        api.create_personas("bench", standby=True, count=12)
        rotations = _rotations("bench", 6)
        rotate_cli = _wall([*exe, "rotate", "bench", "--force", "--yes"], env, 5)
        api.create_persona("bench-fresh")
        fresh = _rotations("bench-fresh", 6)
        fresh_cli = _wall([*exe, "rotate", "bench-fresh", "--force", "--yes"], env, 5)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)

    med = statistics.median
    result = {
        "rounds": args.rounds,
        "sealed_profile_bytes": sealed_size,
        "bare_playwright_s": med(bare),
        "station_open_until_loaded_s": med(total),
        "station_launch_until_loaded_s": med(launch),
        "station_open_including_reseal_s": med(whole),
        "ratio_launch": med(launch) / med(bare),
        "ratio_sealed_open": med(total) / med(bare),
        "station_help_s": help_s,
        "station_persona_list_s": list_s,
        "rotate_api_s": med(rotations),
        "rotate_cli_s": rotate_cli,
        "rotate_fresh_api_s": med(fresh),
        "rotate_fresh_cli_s": fresh_cli,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"profile: {sealed_size / 1e6:.1f} MB sealed; {args.rounds} rounds, medians")
        print(f"bare Playwright launch+goto       {result['bare_playwright_s']:.3f} s")
        print(
            f"station launch+goto (unsealed)    {result['station_launch_until_loaded_s']:.3f} s"
            f"  ratio {result['ratio_launch']:.2f} (goal <= 1.15)"
        )
        print(
            f"station open incl. unseal         {result['station_open_until_loaded_s']:.3f} s"
            f"  ratio {result['ratio_sealed_open']:.2f} (goal <= 1.25)"
        )
        print(
            f"station open incl. unseal+reseal  {result['station_open_including_reseal_s']:.3f} s"
        )
        print(f"station --help                    {help_s * 1000:.0f} ms (goal <= 200 ms)")
        print(f"station persona list              {list_s * 1000:.0f} ms (goal <= 200 ms)")
        print(f"rotate (core)                     {result['rotate_api_s'] * 1000:.0f} ms")
        print(f"station rotate (whole command)    {rotate_cli * 1000:.0f} ms")
        print(f"rotate, fresh persona (core)      {result['rotate_fresh_api_s'] * 1000:.0f} ms")
        print(f"station rotate, fresh persona     {fresh_cli * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
