"""Each platform's colour (its persona's window frame) marks it in station's terminal tables."""

from __future__ import annotations

import os
import pty
import re
import subprocess

from outreach_station.appearance import platform_colour
from outreach_station.cli import _output
from tests.fixtures import station_argv

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _in_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    leader, follower = pty.openpty()
    # The suite turns colour off for every test (conftest); this one is about colour.
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    child = subprocess.Popen(
        station_argv(*args),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**base, "TERM": "xterm", **(env or {})},
    )
    os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()
        os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_platforms_are_coloured_on_a_terminal_and_not_with_no_color() -> None:
    shown = _in_a_terminal("platforms")
    demo = platform_colour("demo").sgr()
    line = next(line for line in shown.splitlines() if "demo" in line and "Demo" in line)
    assert line.startswith(f"\x1b[{demo}mdemo"), repr(line)
    # The codes take no width: without them the columns line up as when piped.
    plain = [ANSI.sub("", line) for line in shown.splitlines() if line.strip()]
    header = next(line for line in plain if line.startswith("ID"))
    row = next(line for line in plain if line.startswith("demo "))
    assert row.index("Demo") == header.index("NAME")
    muted = _in_a_terminal("platforms", env={"NO_COLOR": "1"})
    assert "\x1b[" not in muted


def test_no_colour_when_piped() -> None:
    piped = subprocess.run(
        station_argv("platforms"), capture_output=True, text=True, check=True, timeout=60
    )
    assert "\x1b[" not in piped.stdout
    assert _output.platform_colours(["demo"]) is None  # pytest's stdout is not a terminal
