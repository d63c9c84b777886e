"""Drill: SIGKILL `station open` at five moments, then check the next open.

Moments: during unseal, right after the browser launched, mid-session,
during reseal (once some of the session's new blobs are in the store), right
after the new manifest was renamed over profile.sealed (before or while the
registry records it and unreferenced blobs are collected). After
each kill the next open must recover (or open) the newest complete
generation, never an older one, and never print a traceback.

Run inside a keyring session (as `bash setup.sh test` makes one), e.g.:

    PYTHONPATH=. .venv/bin/python bench/drill_seal_kill.py --rounds 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _scratch import scratch_home  # bench/_scratch.py, beside this script

MOMENTS = ("unseal", "launch", "session", "reseal", "renamed")
BIG = 96 * 1024 * 1024  # makes unsealing and sealing last long enough to be hit


def _station(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outreach_station", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 90) -> list[str]:
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise RuntimeError(f"never saw {needle!r}: {''.join(lines)[-500:]}")


def _wait(predicate: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)


def _blob_bytes(blobs: Path, before: set[str]) -> int:
    """Bytes in blob and pack files not there `before`, the pack being written included."""
    try:
        listed = os.listdir(blobs)
    except FileNotFoundError:
        return 0
    total = 0
    for name in set(listed) - before:
        with contextlib.suppress(FileNotFoundError):
            total += (blobs / name).stat().st_size
    return total


def _blob_names(blobs: Path) -> set[str]:
    try:
        return set(os.listdir(blobs))
    except FileNotFoundError:
        return set()


def _session_bytes(ws_dir: Path) -> None:
    """What a session adds that the reseal must write: 32 MiB of new content."""
    with (ws_dir / "profile" / "session.bin").open("wb") as out:
        for _ in range(8):
            out.write(os.urandom(1 << 22))


def main() -> int:  # noqa: PLR0912 - one drill, step by step
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    scratch, runtime = scratch_home("drill")
    from outreach_station import api, paths, workspace
    from outreach_station.errors import StationError
    from outreach_station.storage.sqlite import SqliteStore as Registry
    from outreach_station.vault import peek_generation
    from tests.fixtures import write_platform
    from tests.site import TestSite

    results: Counter[tuple[str, str]] = Counter()
    notes: list[str] = []
    with TestSite() as site:
        write_platform(scratch / "profiles", "site-one", site.url)
        os.environ["STATION_PROFILES"] = str(scratch / "profiles")
        persona = api.create_persona("site-one")
        ws_dir = workspace.workspace_dir(paths.current(), persona.id)
        sealed = workspace.sealed_file(paths.current(), persona.id)
        blobs = paths.current().persona_dir(persona.id) / "blobs"

        def read_value() -> str:
            seen: dict[str, str] = {}

            async def hook(_context: Any, _page: Any) -> None:
                marker = ws_dir / "profile" / "drill.txt"
                seen["value"] = marker.read_text() if marker.exists() else ""

            api.open_platform(
                "site-one", persona_id=persona.id, headless=True, hook=hook, close_after_hook=True
            )
            return seen["value"]

        # A big profile, so that unsealing and sealing take a while.
        async def fill(_context: Any, _page: Any) -> None:
            with (ws_dir / "profile" / "big.bin").open("wb") as out:
                for _ in range(BIG // (1 << 22)):
                    out.write(os.urandom(1 << 22))

        api.open_platform(
            "site-one", persona_id=persona.id, headless=True, hook=fill, close_after_hook=True
        )
        newest = ""
        for round_ in range(args.rounds):
            for moment in MOMENTS:
                value = f"{moment}-{round_}"
                proc = _station("open", "site-one", "--persona", persona.id, "--headless")
                written = False
                try:
                    if moment == "unseal":
                        _wait_line(proc, "unsealing profile:")
                    elif moment == "launch":
                        _wait_line(proc, "using Chromium")
                    else:
                        _wait_line(proc, " open at ")
                        (ws_dir / "profile" / "drill.txt").write_text(value)
                        written = True
                        if moment == "session":
                            time.sleep(0.5)
                        elif moment == "reseal":
                            # A reseal writes only what changed: give it something to write,
                            # and kill it once part of that is in the store.
                            _session_bytes(ws_dir)
                            before_blobs = _blob_names(blobs)
                            proc.send_signal(signal.SIGTERM)
                            # New blobs go into one pack: kill once 4 MiB of it are written.
                            _wait(lambda b=before_blobs: _blob_bytes(blobs, b) >= 4 << 20)
                        else:
                            _session_bytes(ws_dir)
                            before = sealed.stat().st_ino
                            proc.send_signal(signal.SIGTERM)
                            _wait(lambda b=before: sealed.stat().st_ino != b, timeout=120)
                    os.killpg(proc.pid, signal.SIGKILL)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    _out, err = proc.communicate(timeout=60)
                if "Traceback" in err:
                    notes.append(f"{moment}/{round_}: traceback in the killed run")
                if written:
                    newest = value
                try:
                    got = read_value()
                except StationError as exc:
                    results[(moment, "refused")] += 1
                    notes.append(f"{moment}/{round_}: next open refused: {exc}")
                    continue
                with Registry(paths.current().registry) as reg:
                    on_record = reg.sealed_generation(persona.id)
                in_file = peek_generation(sealed, persona.id)
                if got == newest and on_record == (in_file, None):
                    results[(moment, "newest")] += 1
                else:
                    results[(moment, "WRONG")] += 1
                    notes.append(
                        f"{moment}/{round_}: got {got!r}, newest {newest!r}, "
                        f"record {on_record}, file {in_file}"
                    )
    for moment in MOMENTS:
        row = ", ".join(f"{k[1]} {v}" for k, v in sorted(results.items()) if k[0] == moment)
        print(f"{moment:8} {row}")
    for note in notes:
        print(note)
    shutil.rmtree(runtime, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if not notes else 1


if __name__ == "__main__":
    raise SystemExit(main())
