"""Ten first opens of one platform at once: one persona, one browser, nine refusals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from outreach_station import paths
from outreach_station.errors import ExitCode
from tests.fixtures import station_argv

OPENS = 10


def _main_browsers(marker: str) -> int:
    """Chromium main processes (not helpers) whose profile lies under `marker`."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in raw if a]
        if len(args) == 1:
            # Chromium's main process rewrites its title into one string.
            args = args[0].split(" ")
        profile = any(a.startswith("--user-data-dir=") and marker in a for a in args)
        if profile and not any(a.startswith("--type=") for a in args):
            count += 1
    return count


def test_ten_first_opens_make_one_persona_and_one_browser() -> None:
    runtime = os.environ["XDG_RUNTIME_DIR"]
    procs = [
        subprocess.Popen(
            station_argv("open", "demo", "--headless"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(OPENS)
    ]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sum(p.poll() is None for p in procs) > 1:
            time.sleep(0.2)
        running = [p for p in procs if p.poll() is None]
        ended = [p for p in procs if p.poll() is not None]
        assert len(running) == 1, f"{len(running)} stations still running"
        survivor = running[0]
        assert survivor.stderr is not None
        lines = []
        while " open at " not in (line := survivor.stderr.readline()):
            assert line, "".join(lines)
            lines.append(line)
        refusals = [p.communicate()[1] for p in ended]
        assert [p.returncode for p in ended] == [ExitCode.BUSY] * (OPENS - 1), refusals
        for refusal in refusals:
            assert refusal.count("\n") == 1, refusal
            assert "already open" in refusal, refusal
        with sqlite3.connect(paths.current().registry) as conn:
            personas = conn.execute("SELECT platform, status FROM personas").fetchall()
        assert personas == [("demo", "active")]
        assert _main_browsers(runtime) == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert _main_browsers(runtime) == 0
