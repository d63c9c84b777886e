"""Start-up of `station --help` and `station persona list` against `import typer`, in one run.

Whole processes, all with the same interpreter (`sys.executable`), in each
round in a rotating order so that a slow moment of the machine hits all
three alike:

- typer: `python -c 'import typer'`, the floor for any typer command line;
- help: `station --help`;
- persona-list: `station persona list` on a fresh station home holding a few
  personas of two platforms (listing reads the registry only: no keyring).

`station` is the console script installed beside the interpreter, started
as `python <script>` so that the interpreter is the same; without one,
`python -m outreach_station`. Reports the medians in ms and the ratios to
typer (goals: help <= 1.3, persona list <= 1.5). Creating the personas
needs the Secret Service (every creation is audited): run it inside the
test session, e.g. `bash setup.sh bench`.

    PYTHONPATH=. python bench/bench_startup.py [--rounds 21] [--personas 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _station_argv() -> list[str]:
    script = Path(sys.executable).parent / "station"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "outreach_station"]


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(argv[1:])} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--personas", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="station-bench-"))
    os.environ.update(
        STATION_HOME=str(work / "home"),
        STATION_POLICY=str(work / "no-policy.toml"),
        STATION_PROFILES=str(work / "profiles"),
    )
    (work / "profiles").mkdir()
    for name in ("bench-a", "bench-b"):
        (work / "profiles" / f"{name}.toml").write_text(
            f'name = "{name}"\nstart_url = "https://{name}.example/"\n'
        )
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    station = _station_argv()
    commands = {
        "typer": [sys.executable, "-c", "import typer"],
        "help": [*station, "--help"],
        "persona-list": [*station, "persona", "list"],
    }
    try:
        from outreach_station import api

        half = max(1, args.personas // 2)
        api.create_personas("bench-a", count=half)
        api.create_personas("bench-b", standby=True, count=max(1, args.personas - half))
        listed = subprocess.run(
            commands["persona-list"], env=env, capture_output=True, text=True, check=True
        ).stdout
        personas = len(listed.splitlines()) - 2  # header and rule
        # An installed package has its bytecode compiled; an editable checkout run
        # with PYTHONDONTWRITEBYTECODE would compile every module on every start.
        package = Path(api.__file__).parent
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
        for argv_ in commands.values():  # warm the page cache before anything is timed
            _once(argv_, env)

        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(_once(commands[name], env))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "rounds": args.rounds,
        "personas": personas,
        "interpreter": sys.executable,
        "typer_ms": med["typer"] * 1000,
        "help_ms": med["help"] * 1000,
        "persona_list_ms": med["persona-list"] * 1000,
        "ratio_help": med["help"] / med["typer"],
        "ratio_persona_list": med["persona-list"] / med["typer"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.rounds} rounds, medians, {personas} personas, {sys.executable}")
        print(f"python -c 'import typer'  {result['typer_ms']:6.0f} ms")
        print(f"station --help            {result['help_ms']:6.0f} ms")
        print(f"station persona list      {result['persona_list_ms']:6.0f} ms")
        print(f"help/typer = {result['ratio_help']:.2f}         # goal <= 1.3")
        print(f"persona-list/typer = {result['ratio_persona_list']:.2f} # goal <= 1.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
