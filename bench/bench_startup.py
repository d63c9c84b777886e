"""Start-up of `station --help` and `station persona list` against `import typer`, in one run.

Whole processes, all with the same interpreter (`sys.executable`), in each
round in a rotating order so that a slow moment of the machine hits all
three alike. Each process's wall-clock time and the CPU time it used
(user + system, from wait4) are recorded: the ratios asked for are of
wall-clock medians; those of CPU time move less when other work shares the
machine. The three are:

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


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds of one whole process, and the CPU seconds (user + system) it used."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(argv[1:])} exited {child.returncode}: "
            f"{errors.decode(errors='replace').strip()}"
        )
    return elapsed, usage.ru_utime + usage.ru_stime


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
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                wall, used = _once(commands[name], env)
                times[name].append(wall)
                cpu[name].append(used)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    result = {
        "rounds": args.rounds,
        "personas": personas,
        "interpreter": sys.executable,
        "typer_ms": med["typer"] * 1000,
        "help_ms": med["help"] * 1000,
        "persona_list_ms": med["persona-list"] * 1000,
        "ratio_help": med["help"] / med["typer"],
        "ratio_persona_list": med["persona-list"] / med["typer"],
        "cpu_typer_ms": med_cpu["typer"] * 1000,
        "cpu_help_ms": med_cpu["help"] * 1000,
        "cpu_persona_list_ms": med_cpu["persona-list"] * 1000,
        "cpu_ratio_help": med_cpu["help"] / med_cpu["typer"],
        "cpu_ratio_persona_list": med_cpu["persona-list"] / med_cpu["typer"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.rounds} rounds, medians, {personas} personas, {sys.executable}")
        print("                          wall      CPU")
        for label, key in (
            ("python -c 'import typer'", "typer"),
            ("station --help", "help"),
            ("station persona list", "persona_list"),
        ):
            print(
                f"{label:<25} {result[key + '_ms']:4.0f} ms  {result['cpu_' + key + '_ms']:4.0f} ms"
            )
        print(
            f"CPU time (steadier on a busy machine): help/typer {result['cpu_ratio_help']:.2f}, "
            f"persona-list/typer {result['cpu_ratio_persona_list']:.2f}"
        )
        print(f"help/typer = {result['ratio_help']:.2f}         # goal <= 1.3")
        print(f"persona-list/typer = {result['ratio_persona_list']:.2f} # goal <= 1.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
