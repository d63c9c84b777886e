"""Rotation from any laptop, and a lost lease: the holder's session closes within seconds.

Laptop A's session runs `station open site-one --headless` in a child
process (its own process group, so that it can be suspended whole) on A's
home and the suite's keyring; laptop B is another station home with its own
keyring in a child process (`test_team_open`). One private PostgreSQL, real
headless Chromium on the loopback test site. "Within seconds" is asserted
with a bound of 15 s: a correctness bound (the holder hears the server's
NOTIFY within a second), not a benchmark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths
from outreach_station.errors import ExitCode
from outreach_station.team import sync
from tests.fixtures import install_policy
from tests.team import test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB
from tests.team.test_team_open import _B_CLI, _join_b, _run_b

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.browser, pytest.mark.keyring]

BOUND_SECONDS = 15.0

# Laptop B's CLI, with the holder given 3 s (not 15) to answer: the suspended case.
_B_CLI_QUICK = _B_CLI.replace(
    "from outreach_station.cli import app",
    "from outreach_station.cli import app\n"
    "import outreach_station.team.remote as remote\n"
    "remote.ANSWER_SECONDS = 3.0",
)


def _descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, with its command name."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z":
                continue
            parents[int(entry.name)] = int(fields[1])
            names[int(entry.name)] = name
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _browsers(root: int) -> set[int]:
    return {pid for pid, name in _descendants(root).items() if "chrom" in name.lower()}


class HolderA:
    """Laptop A's `station open`, running until something closes it."""

    def __init__(self, isolation: Path) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "T_ROOT": str(isolation.parent / "system-root"),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _B_CLI, "open", "site-one", "--headless"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out = ""
        self.err = ""

    def wait_open(self, team_db: TeamDb) -> tuple[str, Any, set[int]]:
        """The persona A holds, its lease, and A's browser processes, once the browser runs."""
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.finish()
            assert time.monotonic() < deadline, "A's browser did not start"
            with team_db.member_store() as store:
                leases = store.leases()
            browsers = _browsers(self.proc.pid)
            if leases and browsers:
                return leases[0].persona_id, leases[0], browsers
            time.sleep(0.2)

    def wait_gone(self, browsers: set[int], seconds: float) -> datetime:
        """When A's browser processes were all gone (fails after `seconds`)."""
        deadline = time.monotonic() + seconds
        while any(_alive(pid) for pid in browsers):
            assert time.monotonic() < deadline, f"A's browser still runs after {seconds} s"
            time.sleep(0.05)
        return datetime.now(UTC)

    def finish(self) -> str:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
        try:
            self.out, self.err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.out, self.err = self.proc.communicate()
        return self.err

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()


def _close_asked(team_db: TeamDb, persona_id: str) -> datetime:
    with team_db.server.admin(team_db.name) as admin:
        row = admin.execute(
            "SELECT close_asked FROM leases WHERE persona_id = %s", (persona_id,)
        ).fetchone()
    assert row is not None and row[0] is not None
    asked: datetime = row[0]
    return asked


def test_b_rotates_while_a_holds_the_persona_a_closes_uploads_and_b_rotates(
    runner: Any,
    laptop_a: TeamDb,
    isolation: Path,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    a, b = _join_b(runner, laptop_a, laptop_b)
    holder = HolderA(isolation)
    try:
        persona_id, held, browsers = holder.wait_open(laptop_a)
        assert held.member == a

        # A's laptop is suspended: B's rotate is refused, saying who holds it, where,
        # and what to do; nothing is rotated and the request is taken back.
        os.killpg(holder.proc.pid, signal.SIGSTOP)
        refused = _run_b(
            laptop_b, _B_CLI_QUICK, "rotate", "site-one", "--yes", "--reason", "suspended"
        )
        assert refused.returncode == ExitCode.BUSY, refused.stderr
        since = held.since.astimezone().strftime("%Y-%m-%d %H:%M")
        assert refused.stderr.strip().splitlines()[-1] == (
            f"station: error: persona {persona_id} is open by Anna ({a}) on {held.host} "
            f"since {since} and that laptop did not answer within 3 s (suspended or offline); "
            "nothing was rotated: run station rotate again when it is back, or free the "
            f"persona with station team unlock {persona_id} --reason TEXT and then rotate"
        )
        assert "asked that laptop to close it" in refused.stderr
        with laptop_a.member_store() as store:
            assert store.get(persona_id).status == "active"
            assert [p.id for p in store.list(platform="site-one")] == [persona_id]
            after = store.lease(persona_id)
            assert after is not None
            assert (after.token, after.close) == (held.token, None)

        # The lid opens: the withdrawn request does not close A's session.
        os.killpg(holder.proc.pid, signal.SIGCONT)
        time.sleep(2)
        assert holder.proc.poll() is None
        assert browsers <= _browsers(holder.proc.pid)

        # B rotates again with A awake: A's browser is gone within seconds of the request,
        # A's generation is uploaded with A's token, then B blocks the persona.
        rotated = _run_b(
            laptop_b, _B_CLI, "rotate", "site-one", "--yes", "--reason", "account suspended"
        )
        gone = holder.wait_gone(browsers, 60)
        a_err = holder.finish()
    finally:
        holder.stop()
    assert rotated.returncode == 0, rotated.stderr
    assert (gone - _close_asked(laptop_a, persona_id)).total_seconds() < BOUND_SECONDS
    assert holder.proc.returncode == 0, a_err
    # A's person is told why, at once and in the closing line.
    assert (
        f"persona {persona_id} is closing: Bo ({b}) on {held.host} rotated its platform "
        "(account suspended); your work is sealed and sent to the team server"
    ) in a_err
    assert (
        f"persona {persona_id} closed (station rotate on another laptop of the team replaced "
        "this persona)"
    ) in a_err
    # B waited for A, said so, and rotated.
    assert f"{held.host} is closing persona {persona_id}" in rotated.stderr
    assert f"closed the open session of persona {persona_id} on another laptop" in rotated.stderr
    assert f"site-one: persona {persona_id} marked blocked (account suspended)" in rotated.stdout
    with laptop_a.member_store() as store:
        current = store.current_generation(persona_id)
        assert current is not None
        assert (current.member, current.token) == (a, held.token)
        assert store.get(persona_id).status == "blocked"
        fresh = store.active("site-one")
        assert fresh is not None and fresh.id != persona_id
        assert store.lease(persona_id) is None  # B gave it back after the rotation
    assert sync.pending(paths.current()) == []


def test_a_lost_lease_closes_the_session_within_seconds_and_keeps_its_work(
    runner: Any,
    laptop_a: TeamDb,
    isolation: Path,
    *,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    from datetime import timedelta

    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    holder = HolderA(isolation)
    try:
        persona_id, held, browsers = holder.wait_open(laptop_a)
        # Another member frees the persona and opens it.
        unlocked = runner.invoke(
            ["team", "unlock", persona_id, "--reason", "laptop left at the office", "--yes"]
        )
        assert unlocked.exit_code == 0, unlocked.output
        freed = datetime.now(UTC)
        with laptop_a.member_store() as store:
            taken = store.acquire_lease(
                persona_id, member="bbbbbbbbbbbbbbbb", host="laptop-b", ttl=timedelta(minutes=5)
            )
        gone = holder.wait_gone(browsers, 60)
        a_err = holder.finish()
    finally:
        holder.stop()
    assert (gone - freed).total_seconds() < BOUND_SECONDS
    assert holder.proc.returncode == 0, a_err
    assert f"persona {persona_id} is closing: the lease on persona {persona_id} was lost" in a_err
    assert (
        f"persona {persona_id} closed (another laptop of the team has this persona now; this "
        "session's work is kept sealed on this laptop)"
    ) in a_err
    # A's work is on this laptop, sealed, never over what the new holder has.
    with laptop_a.member_store() as store:
        assert store.current_generation(persona_id) is None
        assert store.lease(persona_id) == taken
    waiting = sync.pending(paths.current())
    assert [(p.persona_id, p.token) for p in waiting] == [(persona_id, held.token)], a_err
