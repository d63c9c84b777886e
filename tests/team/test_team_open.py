"""`station open` in a team: a persona whole on any laptop, one laptop at a time.

Laptop A is this process (the suite's Secret Service); laptop B is another
station home whose commands run in a child process with its own D-Bus
session and gnome-keyring (`tests.keyrings`): its own master key, member key
and database password. One private PostgreSQL (`tests.pg`), real Chromium
(headless) and the loopback test site.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths, secret_store
from outreach_station.errors import ExitCode
from outreach_station.storage.postgres import TeamConnection, password_entry
from outreach_station.team.config import read_team_file
from tests.fixtures import install_policy
from tests.keyrings import run_in_private_keyring
from tests.site import TestSite
from tests.team import test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB

# The two laptops of test_team_cli, shared as fixtures here.
laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.browser, pytest.mark.keyring]

# Laptop B opens the platform and prints what the page saw of its cookies.
_B_OPEN = """
import os, sys
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from outreach_station import api
seen = {}
async def hook(_context, page):
    seen["cookie"] = await page.evaluate("document.cookie")
api.open_platform("site-one", headless=True, hook=hook, close_after_hook=True,
                  notify=lambda m: print(m, file=sys.stderr))
print(seen.get("cookie", ""))
"""

# Laptop B runs one station command.
_B_CLI = """
import os, sys
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from typer.testing import CliRunner
from outreach_station.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
sys.stdout.write(result.stdout)
sys.stderr.write(result.stderr)
sys.exit(result.exit_code)
"""


def _run_b(laptop: LaptopB, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script` as laptop B, with A's platform profiles (the test site) and policy."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(laptop.root / "h"),
        "XDG_RUNTIME_DIR": str(laptop.root / "run"),
        "STATION_HOME": str(laptop.root / "home"),
        "STATION_POLICY": os.environ["STATION_POLICY"],
        "STATION_PROFILES": os.environ["STATION_PROFILES"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "T_ROOT": str(laptop.root / "system-root"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    done = run_in_private_keyring(
        [sys.executable, "-c", script, *args],
        password="laptop-b-keyring",
        env=env,
        data_home=laptop.root / "data",
        timeout=180,
    )
    done.stderr = "".join(
        line for line in done.stderr.splitlines(keepends=True) if "dbus-daemon[" not in line
    )
    return done


def leave_crashed_session(persona_id: str) -> None:
    """What a killed station leaves: the open profile in RAM, the marker beside the sealed one."""
    from outreach_station.workspace import workspace_dir

    left = workspace_dir(paths.current(), persona_id)
    (left / "profile").mkdir(parents=True)
    (left / "profile" / "left-behind.txt").write_text("work of the crashed session")
    (paths.current().persona_dir(persona_id) / "open.json").write_text(
        json.dumps({"opened": "2026-12-01T10:00:00Z", "workspace": str(left)})
    )


def _join_b(runner: Any, laptop_a: TeamDb, laptop_b: LaptopB) -> tuple[str, str]:
    """A founds the team, B joins, A approves B: the two member ids."""
    url = laptop_a.url()
    founded = runner.invoke(["team", "init", url, "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    joined = laptop_b.run("team", "join", url, "--name", "Bo", "--json", store_password=True)
    assert joined.returncode == 0, joined.stderr
    a, b = json.loads(founded.stdout)["member_id"], json.loads(joined.stdout)["member_id"]
    approved = runner.invoke(["team", "approve", b, "--yes"])
    assert approved.exit_code == 0, approved.output
    return a, b


def test_the_team_bar_what_a_left_b_opens_one_laptop_at_a_time_one_trail_no_plaintext(
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
    value = f"v{secrets.token_hex(8)}"
    during: dict[str, Any] = {}

    async def while_a_holds_it(_context: Any, page: Any) -> None:
        # The cookie is in the page before the second laptop tries.
        during["cookie"] = await page.evaluate("document.cookie")
        with laptop_a.member_store() as store:
            (persona,) = store.list(platform="site-one")
            during["lease"] = store.lease(persona.id)
        during["b"] = _run_b(laptop_b, _B_CLI, "open", "site-one", "--headless")

    opened = api.open_platform(
        "site-one",
        url=f"{site.url}set-cookie?v={value}",
        headless=True,
        hook=while_a_holds_it,
        close_after_hook=True,
    )
    persona = opened.persona
    assert f"station_flush={value}" in during["cookie"]
    lease = during["lease"]
    assert (lease.member, lease.host) == (a, socket.gethostname())

    # B was refused at once, told who holds it (the name A joined with, and A's id),
    # on which laptop, since when.
    refused = during["b"]
    assert refused.returncode == ExitCode.BUSY, refused.stderr
    since = lease.since.astimezone().strftime("%Y-%m-%d %H:%M")
    assert refused.stderr.strip().splitlines()[-1] == (
        f"station: error: persona {persona.id} is open by Anna ({a}) on {lease.host} since "
        f"{since}; "
        "try again when they close it, or free it with station team unlock if that laptop "
        "is lost"
    )

    with laptop_a.owner_store() as store:
        # A's reseal is the server's current generation, committed with A's token.
        current = store.current_generation(persona.id)
        assert current is not None
        assert (current.generation, current.token, current.member) == (1, lease.token, a)
        assert store.lease(persona.id) is None  # given back at close
        # The persona's key is on the server only wrapped, for both members.
        wraps = store.wrapped_keys(persona.id)
        assert sorted(w.member_id for w in wraps) == sorted([a, b])
        # The server holds no plaintext cookie, and no laptop's cache record.
        chunks = b"".join(
            bytes(r[0]) for r in store._conn.execute("SELECT data FROM blob_chunks").fetchall()
        )
        assert chunks
        assert value.encode() not in chunks
        assert store._conn.execute("SELECT count(*) FROM sealed_generations").fetchone() == (0,)
    # A's own cache record is in A's SQLite registry.
    from outreach_station.storage import open_store

    with open_store(paths.current()) as local:
        assert local.sealed_generation(persona.id) == (1, None)

    # B opens: the current generation is fetched, unsealed with B's own
    # unwrapped key, and the page sees A's cookie.
    seen = _run_b(laptop_b, _B_OPEN)
    assert seen.returncode == 0, seen.stderr
    assert f"station_flush={value}" in seen.stdout.strip().splitlines()[-1]
    b_state = laptop_b.root / "home" / "personas" / persona.id / "team-sync.json"
    assert json.loads(b_state.read_text())["synced"]["generation"] == 2, seen.stderr
    with laptop_a.owner_store() as store:
        current = store.current_generation(persona.id)
        assert current is not None
        assert (current.generation, current.member) == (2, b)
        assert store.lease(persona.id) is None

    # A backup of the server (pg_dump, as docs/team.md tells IT) holds no plaintext cookie.
    dumped = laptop_a.server.dump(laptop_a.name)
    assert b"COPY public.blob_chunks" in dumped
    for form in (value.encode(), value.encode().hex().encode()):
        assert form not in dumped

    # B verifies one audit trail for the clinic, and it holds A's records of its session.
    trail = _run_b(laptop_b, _B_CLI, "audit", "--json")
    assert trail.returncode == 0, trail.stderr
    sessions = [
        (r["event"], r["member"])
        for r in json.loads(trail.stdout)
        if r["event"] in ("persona.opened", "persona.closed") and r["persona"] == persona.id
    ]
    assert sessions == [
        ("persona.opened", a),
        ("persona.closed", a),
        ("persona.opened", b),
        ("persona.closed", b),
    ]
    verified = _run_b(laptop_b, _B_CLI, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def test_an_unreachable_server_refuses_the_open_naming_it(
    runner: Any, laptop_a: TeamDb, *, platform_dir: Path, system_policy: Path, isolation: Path
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    joined = read_team_file(paths.current())
    assert joined is not None
    dead = f"postgresql://station@127.0.0.1:{port}/x?connect_timeout=3"
    secret_store.write(password_entry(TeamConnection(dead)), "irrelevant", what="test password")
    paths.current().team_file.write_text(
        json.dumps({"team_id": joined.team_id, "url": dead, "member_id": joined.member_id})
    )
    before = sorted(p.relative_to(isolation) for p in isolation.rglob("*"))

    result = runner.invoke(["open", "site-one", "--headless"])
    assert result.exit_code == ExitCode.ENVIRONMENT, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"station: error: cannot reach the team server at 127.0.0.1:{port}; check the "
        "network (VPN) and that the server is running, then try again (a persona cannot "
        "be opened without it)"
    )
    # Nothing was created, unsealed or recorded on this laptop.
    assert sorted(p.relative_to(isolation) for p in isolation.rglob("*")) == before


def test_a_persona_held_elsewhere_is_refused_before_anything_is_unsealed(
    runner: Any, laptop_a: TeamDb, platform_dir: Path, system_policy: Path
) -> None:
    from datetime import timedelta

    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    created = runner.invoke(["persona", "new", "site-one"])
    assert created.exit_code == 0, created.output
    persona_id = created.stdout.split()[0]
    with laptop_a.member_store() as store:
        held = store.acquire_lease(
            persona_id, member="bbbbbbbbbbbbbbbb", host="laptop-b", ttl=timedelta(minutes=5)
        )

    result = runner.invoke(["open", "site-one", "--persona", persona_id, "--headless"])
    assert result.exit_code == ExitCode.BUSY, result.output
    since = held.since.astimezone().strftime("%Y-%m-%d %H:%M")
    assert result.stderr.strip().splitlines()[-1] == (
        f"station: error: persona {persona_id} is open by bbbbbbbbbbbbbbbb on laptop-b since "
        f"{since}; try again when they close it, or free it with station team unlock if that "
        "laptop is lost"
    )
    with laptop_a.member_store() as store:
        assert store.lease(persona_id) == held  # untouched
        assert store.wrapped_keys(persona_id) == []  # no key was made without the lease
    assert not (paths.current().persona_dir(persona_id) / "profile.sealed").exists()


def test_a_crashed_sessions_profile_is_sealed_and_sent_before_the_next_fetch(
    runner: Any, laptop_a: TeamDb, *, platform_dir: Path, site: TestSite, system_policy: Path
) -> None:

    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0

    async def nothing(_context: Any, _page: Any) -> None:
        return None

    first = api.open_platform("site-one", headless=True, hook=nothing, close_after_hook=True)
    persona_id = first.persona.id
    leave_crashed_session(persona_id)
    seen: dict[str, Any] = {}

    async def look(_context: Any, _page: Any) -> None:
        with laptop_a.member_store() as store:
            seen["current"] = store.current_generation(persona_id)

    api.open_platform(
        "site-one", persona_id=persona_id, headless=True, hook=look, close_after_hook=True
    )
    # The recovered generation was on the server before the browser started.
    assert seen["current"] is not None
    assert seen["current"].generation == 2
    with laptop_a.member_store() as store:
        now = store.current_generation(persona_id)
        assert now is not None
        assert now.generation == 3
    # The laptop's status reads its own cache record: no false "older copy" warning.
    status = runner.invoke(["status"])
    assert status.exit_code == 0, status.output
    assert "on record" not in status.output
