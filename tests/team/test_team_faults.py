"""Faults of a team session, end to end: the server lost mid-session, a suspended laptop, races.

Laptop A is this process (the suite's Secret Service); laptop B is another
station home in a child process with its own keyring (`test_team_open`).
The server is the suite's real PostgreSQL, stopped and started again with
`pg_ctl` (`PgServer.stopped`); the browser is real headless Chromium on the
loopback test site. A lease "expiring" is the server's own row moved past
its expiry (as the server's clock would after `lease_minutes`): the
shortest lease the policy allows is a minute, and these tests do not sleep
for minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.team import sync
from tests.fixtures import install_policy
from tests.keyrings import run_in_private_keyring
from tests.site import TestSite
from tests.team import test_sync, test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB
from tests.team.test_team_open import _B_OPEN, _join_b, _run_b

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.browser, pytest.mark.keyring]


def _expire_lease(team_db: TeamDb, persona_id: str) -> None:
    """As the server's clock would after the lease's time: it expired a second ago."""
    with team_db.server.admin(team_db.name) as admin:
        admin.execute(
            "UPDATE leases SET expires = now() - interval '1 second' WHERE persona_id = %s",
            (persona_id,),
        )


def _generations(team_db: TeamDb, persona_id: str) -> list[tuple[int, int, str]]:
    """(generation, token, member) of every generation the server ever committed."""
    with team_db.server.admin(team_db.name) as admin:
        rows = admin.execute(
            "SELECT generation, token, member FROM generations WHERE persona_id = %s "
            "ORDER BY generation",
            (persona_id,),
        ).fetchall()
    return [(int(g), int(t), str(m)) for g, t, m in rows]


def _status(runner: Any) -> dict[str, Any]:
    result = runner.invoke(["team", "status", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _lose_server_during_session(
    laptop_a: TeamDb, site: TestSite, persona_id: str | None, value: str, stack: Any
) -> tuple[Any, list[str], dict[str, Any]]:
    """Open A's persona, stop the server while it is open, set a cookie, close.

    The server stays stopped until `stack` closes.
    """
    said: list[str] = []
    seen: dict[str, Any] = {}

    async def lose_it(_context: Any, page: Any) -> None:
        with laptop_a.member_store() as store:
            (persona,) = store.list(platform="site-one")
            seen["lease"] = store.lease(persona.id)
        stack.enter_context(laptop_a.server.stopped())
        # The session goes on without the server: the page loads, the cookie is set.
        await page.goto(f"{site.url}set-cookie?v={value}")
        seen["cookie"] = await page.evaluate("document.cookie")

    opened = api.open_platform(
        "site-one",
        persona_id=persona_id,
        headless=True,
        hook=lose_it,
        close_after_hook=True,
        notify=said.append,
    )
    return opened, said, seen


def test_server_lost_mid_session_keeps_the_reseal_pending_and_sends_it_when_back(
    runner: Any, laptop_a: TeamDb, *, platform_dir: Path, site: TestSite, system_policy: Path
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    value = f"v{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        opened, said, seen = _lose_server_during_session(laptop_a, site, None, value, stack)
        persona_id = opened.persona.id
        assert f"station_flush={value}" in seen["cookie"]
        token = seen["lease"].token
        # Closed without the server: sealed here, pending, and the person is told.
        assert opened.outcome.ended_by == "hook-done"
        warned = [m for m in said if "is sealed on this laptop but not on the team server" in m]
        assert len(warned) == 1, said
        assert "station team status lists it" in warned[0]
        status = _status(runner)
        assert status["reachable"] is False
        assert [(p["persona"], p["generation"], p["token"]) for p in status["pending"]] == [
            (persona_id, 1, token)
        ]
        assert status["pending"][0]["problem"]
    # The server is back (the stack started it); nothing of the generation reached it.
    with laptop_a.member_store() as store:
        assert store.current_generation(persona_id) is None
    during: dict[str, Any] = {}

    async def look(_context: Any, page: Any) -> None:
        during["cookie"] = await page.evaluate("document.cookie")
        with laptop_a.member_store() as store:
            during["lease"] = store.lease(persona_id)
            during["current"] = store.current_generation(persona_id)

    api.open_platform(
        "site-one", persona_id=persona_id, headless=True, hook=look, close_after_hook=True
    )
    # Sent at the next open, before the browser started, with the new lease's token.
    current, lease = during["current"], during["lease"]
    assert current is not None and current.generation == 1
    assert current.token == lease.token > token
    assert f"station_flush={value}" in during["cookie"]
    assert _status(runner)["pending"] == []
    assert [g for g, _t, _m in _generations(laptop_a, persona_id)] == [1, 2]


def test_lease_expired_while_the_server_was_lost_and_b_committed_a_newer_generation(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    a, b = _join_b(runner, laptop_a, laptop_b)
    first = f"v{secrets.token_hex(6)}"

    async def nothing(_context: Any, _page: Any) -> None:
        return None

    opened = api.open_platform(
        "site-one",
        url=f"{site.url}set-cookie?v={first}",
        headless=True,
        hook=nothing,
        close_after_hook=True,
    )
    persona_id = opened.persona.id
    assert [g for g, _t, _m in _generations(laptop_a, persona_id)] == [1]

    # A's second session loses the server; its work (cookie `mine`) stays pending here.
    mine = f"v{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        _opened, _said, seen = _lose_server_during_session(laptop_a, site, persona_id, mine, stack)
        stale = seen["lease"].token
    assert [p.generation for p in sync.pending(paths.current())] == [2]

    # The server is back, A's lease expired meanwhile, and B opened and committed.
    _expire_lease(laptop_a, persona_id)
    b_saw = _run_b(laptop_b, _B_OPEN)
    assert b_saw.returncode == 0, b_saw.stderr
    assert f"station_flush={first}" in b_saw.stdout.strip().splitlines()[-1]
    assert _generations(laptop_a, persona_id)[-1][::2] == (2, b)

    # A still lists its generation as pending (it has not talked to the server).
    assert [p["generation"] for p in _status(runner)["pending"]] == [2]

    said: list[str] = []
    during: dict[str, Any] = {}

    async def look(_context: Any, page: Any) -> None:
        during["cookie"] = await page.evaluate("document.cookie")

    api.open_platform(
        "site-one",
        persona_id=persona_id,
        headless=True,
        hook=look,
        close_after_hook=True,
        notify=said.append,
    )
    # Fencing: A's pending generation never overwrote B's, and no generation ever
    # carries A's old token.
    committed = _generations(laptop_a, persona_id)
    assert [(g, m) for g, _t, m in committed] == [(1, a), (2, b), (3, a)]
    assert stale not in {t for _g, t, _m in committed[1:]}
    # A sees B's session (which started from A's first), not its own lost work.
    assert f"station_flush={first}" in during["cookie"]
    assert mine not in during["cookie"]
    # Not lost silently: kept aside, sealed, named in the warning and in status.
    aside = sync.set_aside(paths.current(), persona_id)
    assert len(aside) == 1 and aside[0].name.startswith("2-")
    warned = [m for m in said if "was not sent" in m]
    assert len(warned) == 1, said
    assert str(aside[0]) in warned[0] and "generation 2 (from " + b + ")" in warned[0]
    status = _status(runner)
    assert status["pending"] == []
    assert status["set_aside"] == [{"persona": persona_id, "generation": 2, "path": str(aside[0])}]
    shown = runner.invoke(["team", "status"])
    assert f"kept aside: persona {persona_id} generation 2 in {aside[0]}" in shown.output


# A station open that holds its persona until a file appears (laptop A or B as a child).
_OPEN_UNTIL = """
import os, sys, time
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from outreach_station import api
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
async def hold_it(_context, page):
    ready.write_text("open")
    while not go.exists():
        time.sleep(0.1)
api.open_platform("site-one", persona_id=sys.argv[3], headless=True, hook=hold_it,
                  close_after_hook=True, notify=lambda m: print(m, file=sys.stderr, flush=True))
print("closed", flush=True)
"""


def _wait_for(path: Path, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds} s"
        time.sleep(0.1)


def test_a_suspended_laptop_loses_its_lease_and_its_stale_upload_is_refused_and_kept(
    runner: Any,
    laptop_a: TeamDb,
    isolation: Path,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
    tmp_path: Path,
) -> None:
    # The shortest lease the policy allows: renewals every 20 s.
    install_policy(system_policy, ALLOW_JOIN + "lease_minutes = 1\n")
    _a, b = _join_b(runner, laptop_a, laptop_b)

    async def nothing(_context: Any, _page: Any) -> None:
        return None

    persona_id = api.open_platform(
        "site-one", headless=True, hook=nothing, close_after_hook=True
    ).persona.id
    sync_dir = tmp_path / "signals"
    sync_dir.mkdir()
    a_ready, a_go = sync_dir / "a-ready", sync_dir / "a-go"
    b_ready, b_go = sync_dir / "b-ready", sync_dir / "b-go"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "T_ROOT": str(isolation.parent / "system-root"),
    }
    # Laptop A: its own process group, so that it can be suspended whole.
    a_proc = subprocess.Popen(
        [sys.executable, "-c", _OPEN_UNTIL, str(a_ready), str(a_go), persona_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    a_lines: list[str] = []
    a_reader = threading.Thread(target=lambda: a_lines.extend(iter(a_proc.stderr.readline, "")))
    a_reader.start()
    b_done: dict[str, Any] = {}
    b_thread: threading.Thread | None = None
    try:
        _wait_for(a_ready, "A's open")
        with laptop_a.member_store() as store:
            held = store.lease(persona_id)
        assert held is not None
        os.killpg(a_proc.pid, signal.SIGSTOP)  # the lid is closed
        _expire_lease(laptop_a, persona_id)  # ... for longer than the lease
        # After expiry B can open.
        b_thread = threading.Thread(
            target=lambda: b_done.update(
                run=_run_b(laptop_b, _OPEN_UNTIL, str(b_ready), str(b_go), persona_id)
            )
        )
        b_thread.start()
        _wait_for(b_ready, "B's open")
        with laptop_a.member_store() as store:
            taken = store.lease(persona_id)
        assert taken is not None and taken.member == b and taken.token > held.token
        os.killpg(a_proc.pid, signal.SIGCONT)  # the lid opens
        # A hears at once (its renewal, woken by the lease's NOTIFY, or its next one
        # every 20 s) that the lease was lost and tells the person; it then closes
        # the session itself, once the hook that holds this test's page returns.
        deadline = time.monotonic() + 60
        while not any("was lost" in line for line in a_lines):
            assert time.monotonic() < deadline, "".join(a_lines)
            time.sleep(0.2)
        assert a_proc.poll() is None and not a_go.exists()
        a_go.write_text("close")  # A's person closes the window
        a_proc.wait(timeout=120)
        a_reader.join(timeout=10)
        a_out = a_proc.stdout.read() if a_proc.stdout else ""
        a_err = "".join(a_lines)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(a_proc.pid, signal.SIGCONT)
        b_go.write_text("close")
        if a_proc.poll() is None:
            a_proc.kill()
        if b_thread is not None:
            b_thread.join(timeout=180)
    assert a_proc.returncode == 0, a_err
    assert "closed" in a_out
    # A's renewal reported the lease lost, naming who has the persona now.
    assert "lease on persona" in a_err and "was lost" in a_err, a_err
    assert f"is now open by Bo ({b}) on " in a_err  # by the name B joined with
    # A's upload with the old token was refused: nothing of A's on the server ...
    committed = _generations(laptop_a, persona_id)
    assert held.token not in {t for _g, t, _m in committed}
    # ... and A's session is kept here, pending, sealed.
    waiting = sync.pending(paths.current())
    assert [(p.generation, p.token) for p in waiting] == [(2, held.token)], a_err
    # A gave nothing back that was B's: B held the persona until B closed, then committed.
    b_run = b_done["run"]
    assert b_run.returncode == 0, b_run.stderr
    assert [(g, m) for g, _t, m in _generations(laptop_a, persona_id)][-1] == (2, b)


# One laptop's side of the races: in each round, as soon as `go-N` appears, the
# steps of `station open` up to the browser's launch (Station, lease, key, fetch,
# unseal); the winner changes the profile, waits until the other laptop has
# tried, and closes (reseal, upload with its token). Results go to files.
_CONTEND = """
import os, sys, time
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from outreach_station.context import using
from outreach_station.errors import BusyError
from outreach_station.team.opening import team_session, team_store
from outreach_station.workspace import open_workspace
me, other, where, persona, rounds = sys.argv[1:6]
where = Path(where)
def wait(path):
    while not path.exists():
        time.sleep(0.005)
def tell(name, text):
    (where / (name + ".tmp")).write_text(text)
    (where / (name + ".tmp")).rename(where / name)
said = lambda m: print(m, file=sys.stderr, flush=True)
for n in range(int(rounds)):
    wait(where / f"go-{n}")
    with using(None) as st:
        store = team_store(st)
        started = time.monotonic()
        try:
            with team_session(st, store, persona, notify=said) as joined:
                with open_workspace(st.paths, persona, joined.keys, notify=said,
                                    store=joined.registry) as ws:
                    (ws.profile / "round.txt").write_text(f"{n} {me}")
                    tell(f"{me}-{n}", f"won {joined.lease.token}")
                    wait(where / f"{other}-{n}")
        except BusyError as exc:
            tell(f"{me}-{n}", f"busy {time.monotonic() - started:.3f} {exc}")
    tell(f"done-{me}-{n}", "")
"""


def test_fifty_races_of_two_laptops_opening_one_persona_have_one_winner_each(
    runner: Any,
    laptop_a: TeamDb,
    isolation: Path,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
    tmp_path: Path,
) -> None:
    rounds = 50
    install_policy(system_policy, ALLOW_JOIN)
    a, b = _join_b(runner, laptop_a, laptop_b)
    created = runner.invoke(["persona", "new", "site-one"])
    assert created.exit_code == 0, created.output
    persona_id = created.stdout.split()[0]
    where = tmp_path / "race"
    where.mkdir()
    argv = [sys.executable, "-c", _CONTEND]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "T_ROOT": str(isolation.parent / "system-root"),
    }
    a_proc = subprocess.Popen(
        [*argv, "a", "b", str(where), persona_id, str(rounds)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    b_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(laptop_b.root / "h"),
        "XDG_RUNTIME_DIR": str(laptop_b.root / "run"),
        "STATION_HOME": str(laptop_b.root / "home"),
        "STATION_POLICY": os.environ["STATION_POLICY"],
        "PYTHONPATH": env["PYTHONPATH"],
        "T_ROOT": str(laptop_b.root / "system-root"),
    }
    b_done: dict[str, Any] = {}
    b_thread = threading.Thread(
        target=lambda: b_done.update(
            run=run_in_private_keyring(
                [*argv, "b", "a", str(where), persona_id, str(rounds)],
                password="laptop-b-keyring",
                env=b_env,
                data_home=laptop_b.root / "data",
                timeout=900,
            )
        )
    )
    b_thread.start()
    ids = {"a": a, "b": b}
    named = {"a": f"Anna ({a})", "b": f"Bo ({b})"}  # in messages, as they joined
    won: list[tuple[int, str, int]] = []
    try:
        for n in range(rounds):
            (where / f"go-{n}").write_text("")
            for side in "ab":
                _wait_for(where / f"done-{side}-{n}", f"round {n} of laptop {side}", 120)
            said = {side: (where / f"{side}-{n}").read_text() for side in "ab"}
            winners = [side for side in "ab" if said[side].startswith("won ")]
            assert len(winners) == 1, (n, said)  # exactly one wins each round
            winner = winners[0]
            loser = "b" if winner == "a" else "a"
            _busy, seconds, message = said[loser].split(" ", 2)
            # Refused at once, naming the holder: the winner closes only after the
            # loser's answer, so a loser that waited for the lease would never answer.
            # The bound is loose: the keyring and a loaded machine take seconds at times.
            assert float(seconds) < 10, (n, said)
            assert f"persona {persona_id} is open by {named[winner]} on " in message, (n, said)
            won.append((n, ids[winner], int(said[winner].split()[1])))
    finally:
        for n in range(rounds):  # let both sides run out if a round failed
            (where / f"go-{n}").touch()
            for side in "ab":
                (where / f"{side}-{n}").touch()
        a_err = a_proc.communicate(timeout=300)[1]
        b_thread.join(timeout=300)
    assert a_proc.returncode == 0, a_err
    assert b_done["run"].returncode == 0, b_done["run"].stderr

    print("winners:", "".join("a" if m == a else "b" for _n, m, _t in won))
    # Each round's winner committed one generation, with its own round's token:
    # never one with a stale token, never a lost or doubled round.
    committed = _generations(laptop_a, persona_id)
    assert [(t, m) for _g, t, m in committed] == [(t, m) for _n, m, t in won]
    assert [g for g, _t, _m in committed] == sorted({g for g, _t, _m in committed})
    tokens = [t for _n, _m, t in won]
    assert tokens == sorted(set(tokens))
    assert sync.pending(paths.current()) == []
    with laptop_a.member_store() as store:
        assert store.lease(persona_id) is None


laptops = test_sync.laptops


def test_server_stopped_mid_upload_shows_nothing_partial_and_the_upload_resumes(
    laptops: tuple[test_sync.Laptop, test_sync.Laptop], team_db: TeamDb, tmp_path: Path
) -> None:
    a, b = laptops
    files = test_sync._profile("mid-upload")
    stopped: list[bool] = []
    with contextlib.ExitStack() as stack:

        def stop_after_the_first_blob(_done: int, _total: int) -> None:
            if not stopped:
                stopped.append(True)
                stack.enter_context(team_db.server.stopped())

        with a.hold(team_db) as session:
            sealed = a.seal(files, tmp_path)
            done = a.upload(sealed, session.token, progress=stop_after_the_first_blob)
            token = session.token
        assert done.status == "pending" and done.blobs_sent == 1, done
    # The server is back: the old generation (none) is current, one blob is there, whole.
    with team_db.member_store() as look:
        assert look.current_generation(a.persona) is None
        assert len(look.missing_blobs(a.persona, sealed[2])) == len(sealed[2]) - 1
    assert [(p.generation, p.token) for p in sync.pending(a.paths)] == [(1, token)]
    a.server = team_db.member_store()
    with a.hold(team_db) as session:
        sent = sync.flush_pending(a.server, a.copy, token=session.token)
    assert sent is not None and sent.status == "uploaded"
    assert sent.blobs_sent == len(sealed[2]) - 1
    b.server = team_db.member_store()
    assert sync.fetch(b.server, b.copy, b.keys).status == "fetched"
    assert b.unseal(tmp_path) == files
