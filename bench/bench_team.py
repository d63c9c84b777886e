"""Team mode against the embedded default, side by side in one run, and leases under contention.

Part 1, team open vs local open of the same profile. A private PostgreSQL on
127.0.0.1 (started from Debian's packages as in the tests, but durable:
fsync and synchronous commits on, as a production server). Two station homes
in this process: "local" (no team) and "team" (founded the team on that
server). Each has one persona of the same platform whose profile holds the
same bytes: two sessions of the start page, plus `--extra-mb` of data written
into the profile in the first session (a used profile: caches, IndexedDB).
Rounds alternate the two; each round is `api.open_platform` until the start
page has loaded, then closed. The local open unseals and reseals; the team
open also takes the lease, unwraps the persona's key, checks the server's
current generation, uploads the new generation's blobs and manifest with the
lease's token, and gives the lease back. Goal: team/local <= 1.3.

Part 2, contention. `--laptops` processes (each its own connection, member
and host) contend for `--personas` personas of the team for `--seconds`
seconds through the same lease code a team open uses (`team.sync.hold`: take
the lease, renew it in the background, give it back). Each holds a persona
for 50-300 ms, then waits 0-50 ms. A double open is two holders whose
intervals [lease taken, release begun] overlap on one persona (the clock is
the machine's monotonic clock, shared by all processes). Reports the
attempts, the leases taken, refusals, double opens (goal 0) and the
acquisition time (p50, p95, max) of every attempt.

Needs PostgreSQL's server (apt-get install postgresql), the postgres system
account when run as root, and the Secret Service (run it in the test session):

    bash setup.sh bench bench/bench_team.py [--rounds 7] [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
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
        self.send_header("Set-Cookie", "bench=1; Max-Age=86400")
        self.end_headers()
        self.wfile.write(PAGE)


def _use(home: Path) -> None:
    os.environ["STATION_HOME"] = str(home)


def _open(persona_id: str, extra: bytes = b"") -> tuple[float, float]:
    """Seconds until the start page has loaded, and until the session was closed and saved."""
    from outreach_station import api, paths
    from outreach_station.workspace import workspace_dir

    marks: dict[str, float] = {}

    async def hook(_context: Any, _page: Any) -> None:
        marks["loaded"] = time.perf_counter()
        if extra:  # what a used profile holds besides Chromium's own files
            cache = workspace_dir(paths.current(), persona_id) / "profile" / "Default" / "bench"
            cache.mkdir(parents=True, exist_ok=True)
            step = 1 << 20
            for i in range(0, len(extra), step):
                (cache / f"data-{i // step:04d}.bin").write_bytes(extra[i : i + step])

    started = time.perf_counter()
    api.open_platform(
        "bench", persona_id=persona_id, headless=True, hook=hook, close_after_hook=True
    )
    return marks["loaded"] - started, time.perf_counter() - started


def _team_home(home: Path, server: Any, dbname: str) -> None:
    """Found the team on the server from `home`; the member password goes to the keyring."""
    from outreach_station.team.membership import init_team

    url = server.url(dbname)

    def ask(prompt: str) -> str:  # "Database password of ROLE on HOST:PORT"
        owner = prompt.split(" on ", maxsplit=1)[0].endswith("station_owner")
        return server.owner_password if owner else server.member_password

    _use(home)
    init_team(url, ask_password=ask, display_name="Bench")


# -- part 2: contention --------------------------------------------------------


def _laptop(  # noqa: PLR0917 - a Process target takes its arguments in order
    number: int, url: str, password: str, personas: list[str], seconds: float, out: Any
) -> None:
    """One simulated laptop: take, hold and give back leases until the time is up."""
    from outreach_station.errors import BusyError
    from outreach_station.storage.postgres import PostgresStore, TeamConnection
    from outreach_station.team import sync

    def connect() -> PostgresStore:
        return PostgresStore(TeamConnection(url), password=password)

    rng = random.Random(number)  # noqa: S311 - hold times of a bench, not a secret
    store = connect()
    attempts: list[float] = []
    held: list[tuple[str, int, float, float]] = []
    refused = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            persona = rng.choice(personas)
            started = time.monotonic()
            try:
                with sync.hold(
                    store,
                    persona,
                    f"member-{number}",
                    f"laptop-{number}",
                    timedelta(seconds=30),
                    connect=connect,
                ) as session:
                    taken = time.monotonic()
                    attempts.append(taken - started)
                    time.sleep(rng.uniform(0.05, 0.3))
                    held.append((persona, session.token, taken, time.monotonic()))
            except BusyError:
                attempts.append(time.monotonic() - started)
                refused += 1
            time.sleep(rng.uniform(0, 0.05))
    finally:
        store.close()
    out.put({"attempts": attempts, "held": held, "refused": refused})


def _double_opens(held: list[tuple[str, int, float, float]]) -> int:
    """Pairs of holders of one persona whose intervals overlap."""
    doubles = 0
    by_persona: dict[str, list[tuple[float, float]]] = {}
    for persona, _token, taken, released in held:
        by_persona.setdefault(persona, []).append((taken, released))
    for intervals in by_persona.values():
        intervals.sort()
        latest_end = float("-inf")
        for taken, released in intervals:
            if taken < latest_end:
                doubles += 1
            latest_end = max(latest_end, released)
    return doubles


def _contend(
    server: Any, dbname: str, personas: list[str], laptops: int, seconds: float
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    url = server.url(dbname)
    workers = [
        ctx.Process(target=_laptop, args=(n, url, server.member_password, personas, seconds, out))
        for n in range(laptops)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    attempts = sorted(a for r in results for a in r["attempts"])
    held = [tuple(h) for r in results for h in r["held"]]
    tokens = [h[1] for h in held]
    return {
        "laptops": laptops,
        "personas": len(personas),
        "seconds": seconds,
        "attempts": len(attempts),
        "leases_taken": len(held),
        "refused": sum(r["refused"] for r in results),
        "double_opens": _double_opens(held),  # type: ignore[arg-type]
        "tokens_unique": len(set(tokens)) == len(tokens),
        "acquire_p50_ms": 1000 * statistics.median(attempts),
        "acquire_p95_ms": 1000 * attempts[int(0.95 * (len(attempts) - 1))],
        "acquire_max_ms": 1000 * attempts[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--extra-mb", type=int, default=20)
    parser.add_argument("--laptops", type=int, default=10)
    parser.add_argument("--personas", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from tests.pg import database, find_bin_dir, start_server

    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("needs PostgreSQL's server: apt-get install postgresql", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="station-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="station-bench-", dir="/dev/shm"))
    (work / "policy.toml").write_text("[team]\nallow_join = true\n")
    os.environ.update(
        XDG_RUNTIME_DIR=str(runtime),
        STATION_POLICY=str(work / "policy.toml"),
        STATION_PROFILES=str(work / "profiles"),
    )
    page = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{page.server_address[1]}/"
    (work / "profiles").mkdir()
    (work / "profiles" / "bench.toml").write_text(f'name = "Bench"\nstart_url = "{url}"\n')
    server = start_server(bin_dir, durable=True)
    local_home, team_home = work / "local", work / "team"
    try:
        with database(server) as dbname:
            from outreach_station import api

            _team_home(team_home, server, dbname)
            extra = os.urandom(args.extra_mb << 20)
            personas = {}
            for home in (local_home, team_home):
                _use(home)
                personas[home] = api.create_persona("bench").id
                _open(personas[home], extra)  # the used profile, the same bytes in both
                _open(personas[home])
            local: list[tuple[float, float]] = []
            team: list[tuple[float, float]] = []
            for round_ in range(args.rounds):
                order = (local_home, team_home) if round_ % 2 == 0 else (team_home, local_home)
                for home in order:
                    _use(home)
                    (local if home == local_home else team).append(_open(personas[home]))
            _use(team_home)
            contended = [personas[team_home]] + [
                api.create_persona("bench", standby=True).id for _ in range(args.personas - 1)
            ]
            contention = _contend(server, dbname, contended, args.laptops, args.seconds)
    finally:
        page.shutdown()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)

    med = statistics.median
    result = {
        "rounds": args.rounds,
        "extra_mb": args.extra_mb,
        "local_open_s": med(t for t, _ in local),
        "team_open_s": med(t for t, _ in team),
        "local_session_s": med(w for _, w in local),
        "team_session_s": med(w for _, w in team),
        "contention": contention,
    }
    result["team/local open"] = result["team_open_s"] / result["local_open_s"]
    result["team/local session"] = result["team_session_s"] / result["local_session_s"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"profile: Chromium's files + {args.extra_mb} MB; {args.rounds} rounds, medians")
    print(f"local open until loaded        {result['local_open_s']:.3f} s")
    print(f"team open until loaded         {result['team_open_s']:.3f} s")
    print(f"team/local open = {result['team/local open']:.2f}          # goal <= 1.3")
    print(f"local open, load, close, seal  {result['local_session_s']:.3f} s")
    print(f"team open, load, close, upload {result['team_session_s']:.3f} s")
    print(f"team/local session = {result['team/local session']:.2f}")
    c = contention
    print(
        f"contention: {c['laptops']} laptops, {c['personas']} personas, {c['seconds']:.0f} s: "
        f"{c['attempts']} attempts, {c['leases_taken']} leases taken, {c['refused']} refused"
    )
    print(f"double opens = {c['double_opens']}               # goal 0")
    print(
        f"lease acquisition p50 {c['acquire_p50_ms']:.1f} ms, p95 {c['acquire_p95_ms']:.1f} ms, "
        f"max {c['acquire_max_ms']:.1f} ms"
    )
    return 0 if c["double_opens"] == 0 and c["tokens_unique"] else 1


if __name__ == "__main__":
    sys.exit(main())
