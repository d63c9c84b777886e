"""`station team ...` end to end against a private PostgreSQL, with two simulated laptops.

Laptop A is this process (the suite's Secret Service, `runner`); laptop B is
another station home whose commands run in a child process with its own
D-Bus session and gnome-keyring (`tests.keyrings`), so the two never share
a key or a password entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyring
import keyring.errors
import pytest

from outreach_station import paths, secret_store
from outreach_station.errors import ExitCode
from outreach_station.storage.postgres import (
    PostgresStore,
    TeamConnection,
    WrappedKeyRecord,
    password_entry,
)
from outreach_station.team.keys import forget_member_key
from outreach_station.team.membership import join_team
from tests.fixtures import install_policy
from tests.keyrings import run_in_private_keyring
from tests.team.conftest import TeamDb

ALLOW_JOIN = "[team]\nallow_join = true\n"


@pytest.fixture
def laptop_a(
    isolation: Path, secret_service: None, team_db: TeamDb, system_policy: Path
) -> Iterator[TeamDb]:
    """Laptop A: this process's home, a policy letting staff join, passwords in its keyring."""
    install_policy(system_policy, ALLOW_JOIN)
    entries = {
        password_entry(TeamConnection(team_db.url(role="station_owner"))): (
            team_db.server.owner_password
        ),
        password_entry(TeamConnection(team_db.url())): team_db.server.member_password,
    }
    for entry, password in entries.items():
        secret_store.write(entry, password, what="test password")
    yield team_db
    with contextlib.suppress(Exception):
        from outreach_station.team.config import read_team_file

        joined = read_team_file(paths.current())
        if joined is not None:
            forget_member_key(paths.current(), joined.team_id)
    for entry in [*entries, password_entry(TeamConnection(team_db.url()))]:
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(secret_store.SERVICE, entry)


# Laptop B's child: stores the DB password (from the environment, never argv)
# in its own keyring on its first run, then runs one station command.
_LAPTOP_B = """
import os, sys
from pathlib import Path
from outreach_station import paths, secret_store
from outreach_station.storage.postgres import TeamConnection, password_entry
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
password = os.environ.pop("T_PASSWORD", "")
if password:
    entry = password_entry(TeamConnection(os.environ["T_URL"]))
    secret_store.write(entry, password, what="team database password")
from typer.testing import CliRunner
from outreach_station.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
sys.stdout.write(result.stdout)
sys.stderr.write(result.stderr)
sys.exit(result.exit_code)
"""


@dataclass
class LaptopB:
    root: Path
    url: str
    password: str

    def run(self, *args: str, store_password: bool = False) -> Any:
        for name in ("h", "run", "data", "home"):
            (self.root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "h"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "STATION_HOME": str(self.root / "home"),
            "STATION_POLICY": os.environ["STATION_POLICY"],
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "T_ROOT": str(self.root / "system-root"),
            "T_URL": self.url,
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        if store_password:
            env["T_PASSWORD"] = self.password
        done = run_in_private_keyring(
            [sys.executable, "-c", _LAPTOP_B, *args],
            password="laptop-b-keyring",
            env=env,
            data_home=self.root / "data",
            timeout=120,
        )
        # The private D-Bus daemon's own complaints are not station's output.
        done.stderr = "".join(
            line for line in done.stderr.splitlines(keepends=True) if "dbus-daemon[" not in line
        )
        return done


@pytest.fixture
def laptop_b(laptop_a: TeamDb, tmp_path: Path) -> LaptopB:
    if shutil.which("dbus-run-session") is None:
        pytest.skip("needs dbus-run-session and gnome-keyring-daemon")
    return LaptopB(tmp_path / "laptop-b", laptop_a.url(), laptop_a.server.member_password)


def _members(runner: Any) -> dict[str, dict[str, Any]]:
    result = runner.invoke(["team", "members", "--json"])
    assert result.exit_code == 0, result.output
    return {m["id"]: m for m in json.loads(result.stdout)}


def _all_files_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_two_laptops_init_join_approve_and_remove(
    runner: Any, laptop_a: TeamDb, laptop_b: LaptopB, isolation: Path
) -> None:
    url = laptop_a.url()
    passwords = (laptop_a.server.owner_password, laptop_a.server.member_password)

    founded = runner.invoke(["team", "init", url, "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    a = json.loads(founded.stdout)
    assert a["status"] == "approved"
    assert a["team_id"].startswith("team-")
    team_file = paths.current().team_file
    assert oct(team_file.stat().st_mode & 0o777) == "0o600"
    pinned = json.loads(team_file.read_text())
    assert pinned == {
        "team_id": a["team_id"],
        "url": url,
        "member_id": a["member_id"],
        # The founder, pinned: every approval this laptop trusts leads back to it.
        "founder_id": a["member_id"],
        "founder_signing_key": pinned["founder_signing_key"],
        "audit_signed": True,  # a new team's every record is signed
    }

    joined = laptop_b.run("team", "join", url, "--name", "Bo", "--json", store_password=True)
    assert joined.returncode == 0, joined.stderr
    b = json.loads(joined.stdout)
    assert b["status"] == "pending"
    assert b["team_id"] == a["team_id"]
    assert b["member_id"] != a["member_id"]

    # B cannot approve itself: refused, and B stays pending.
    own = laptop_b.run("team", "approve", b["member_id"], "--yes")
    assert own.returncode == ExitCode.SECURITY
    assert own.stderr.strip() == (
        f"station: error: member {b['member_id']} cannot approve itself; another approved "
        "member must compare the safety code and approve it"
    )
    members = _members(runner)
    assert members[b["member_id"]]["status"] == "pending"
    assert members[a["member_id"]] == {
        "id": a["member_id"],
        "name": "Anna",
        "host": members[a["member_id"]]["host"],
        "status": "approved",
        "verified": True,
        "you": True,
    }

    # No terminal and no --yes: refused, nothing changed.
    unconfirmed = runner.invoke(["team", "approve", b["member_id"]])
    assert unconfirmed.exit_code == ExitCode.USAGE
    assert "no terminal to compare the safety code on" in unconfirmed.stderr
    assert _members(runner)[b["member_id"]]["status"] == "pending"

    approved = runner.invoke(["team", "approve", b["member_id"].upper(), "--yes"])
    assert approved.exit_code == 0, approved.output
    assert approved.stdout == f"approved {b['member_id']} (Bo)\n"

    seen_by_b = laptop_b.run("team", "members", "--json")
    assert seen_by_b.returncode == 0, seen_by_b.stderr
    listed = {m["id"]: m for m in json.loads(seen_by_b.stdout)}
    # B checks A's signed approval of it back to the founder it pinned at join.
    assert {k: (v["status"], v["verified"], v["you"]) for k, v in listed.items()} == {
        a["member_id"]: ("approved", True, False),
        b["member_id"]: ("approved", True, True),
    }
    status_b = laptop_b.run("team", "status", "--json")
    assert json.loads(status_b.stdout) | {"problem": None} == {
        "url": url,
        "team_id": a["team_id"],
        "member_id": b["member_id"],
        "status": "approved",
        "reachable": True,
        "problem": None,
        "pending": [],
        "set_aside": [],
        "leases": [],
        "rekey_due": [],
    }

    # A persona key wrapped for B; removing B deletes it and marks the persona for re-key.
    with laptop_a.member_store() as store:
        persona = store.create("demo", fingerprint={})
        store.put_wrapped_keys(
            [
                WrappedKeyRecord(persona.id, m, 1, b"x" * 88)
                for m in (a["member_id"], b["member_id"])
            ]
        )
    removed = runner.invoke(["team", "remove", b["member_id"]])
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == (
        f"removed {b['member_id']}; 1 persona(s) get a new key at next seal\n"
    )
    with laptop_a.member_store() as store:
        assert [w.member_id for w in store.wrapped_keys(persona.id)] == [a["member_id"]]
        assert store.rekey_due() == [persona.id]
    assert _members(runner)[b["member_id"]]["status"] == "removed"
    again = runner.invoke(["team", "remove", b["member_id"]])
    assert again.exit_code == ExitCode.STATE

    # The last approved member cannot be removed.
    last = runner.invoke(["team", "remove", a["member_id"]])
    assert last.exit_code == ExitCode.STATE
    assert "last approved member" in last.stderr

    # The passwords were never on a command line, in a file of either laptop, or printed.
    outputs = [founded, approved, removed, unconfirmed]
    for pw in passwords:
        for r in outputs:
            assert pw not in r.output
        for done in (joined, own, seen_by_b, status_b):
            assert pw not in done.stdout + done.stderr
            assert all(pw not in arg for arg in done.args)
        assert pw.encode() not in _all_files_text(isolation)
        assert pw.encode() not in _all_files_text(laptop_b.root / "home")
    audit = (isolation / "logs" / "audit.jsonl").read_text()
    for event in ("team.initialised", "team.member_approved", "team.member_removed"):
        assert event in audit
    assert b["member_id"] in audit


def test_a_team_that_has_members_cannot_be_founded_again(
    runner: Any, laptop_a: TeamDb, laptop_b: LaptopB
) -> None:
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    second = laptop_b.run("team", "init", laptop_a.url(), store_password=True)
    assert second.returncode == ExitCode.USAGE  # B has no owner password and no terminal
    assert "no password for station_owner" in second.stderr
    assert not (laptop_b.root / "home" / "team.json").exists()


def _nothing_written(home: Path, entry: str) -> None:
    assert not (home / "team.json").exists()
    assert secret_store.read(entry, what="test") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "the team server URL is malformed"),
        ("postgresql://station:hunter2@127.0.0.1/x", "must not contain a password"),
    ],
)
def test_a_bad_url_is_one_line_and_writes_nothing(
    runner: Any, laptop_a: TeamDb, isolation: Path, url: str, message: str
) -> None:
    result = runner.invoke(["team", "join", url])
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert "hunter2" not in result.stderr
    assert not (isolation / "team.json").exists()


def test_an_unreachable_server_is_one_line_and_keeps_no_password(
    laptop_a: TeamDb, isolation: Path, runner: Any
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://station@127.0.0.1:{port}/station?connect_timeout=3"
    entry = password_entry(TeamConnection(url))
    from outreach_station.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem) as caught:
        join_team(url, ask_password=lambda prompt: "typed-password")
    assert caught.value.message.startswith("cannot reach the team server at 127.0.0.1:")
    _nothing_written(isolation, entry)
    assert not (isolation / "logs").exists()
    # Through the CLI: no password stored and no terminal: one line, exit 2, nothing written.
    result = runner.invoke(["team", "join", url])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("station: error: no password for station on 127.0.0.1:")
    _nothing_written(isolation, entry)


def test_joining_is_refused_unless_the_policy_allows_it(
    runner: Any, laptop_a: TeamDb, isolation: Path, system_policy: Path
) -> None:
    install_policy(system_policy, "")
    result = runner.invoke(["team", "join", laptop_a.url()])
    assert result.exit_code == ExitCode.SECURITY
    assert "team.allow_join is false" in result.stderr
    assert not (isolation / "team.json").exists()
    # A home that joined earlier is refused, not silently given the local store.
    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    install_policy(system_policy, "")
    listed = runner.invoke(["persona", "list"])
    assert listed.exit_code == ExitCode.SECURITY
    assert "joined a team server the system policy does not allow" in listed.stderr


def test_the_policy_team_url_puts_the_home_in_the_team(
    runner: Any, laptop_a: TeamDb, system_policy: Path
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    install_policy(system_policy, f'[team]\nurl = "{laptop_a.url()}"\n')
    created = runner.invoke(["persona", "new", "demo"])
    assert created.exit_code == 0, created.output
    with laptop_a.member_store() as store:
        assert [p.id for p in store.list()] == created.stdout.split()
    elsewhere = runner.invoke(["team", "join", laptop_a.url(extra="sslmode=disable")])
    assert elsewhere.exit_code == ExitCode.SECURITY
    assert "another team server" in elsewhere.stderr


def test_team_status_outside_a_team(runner: Any, isolation: Path) -> None:
    result = runner.invoke(["team", "status"])
    assert result.exit_code == 0
    assert result.stdout == "not in a team: personas are kept on this laptop only\n"


def test_the_store_is_postgres_in_a_team(laptop_a: TeamDb, runner: Any) -> None:
    from outreach_station.context import Station

    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    with Station.load() as station:
        assert isinstance(station.store, PostgresStore)


def test_a_user_config_cannot_join_a_team_or_name_one(
    runner: Any, laptop_a: TeamDb, isolation: Path, system_policy: Path
) -> None:
    install_policy(system_policy, "")
    isolation.mkdir(parents=True, exist_ok=True)
    paths.current().user_config.write_text(
        f'[team]\nallow_join = true\nurl = "{laptop_a.url()}"\n', "utf-8"
    )
    result = runner.invoke(["team", "join", laptop_a.url()])
    assert result.exit_code == ExitCode.SECURITY
    assert "team.allow_join is false" in result.stderr
    assert not (isolation / "team.json").exists()
    # Nor does the user's team.url move the home's store to the server.
    created = runner.invoke(["persona", "new", "demo"])
    assert created.exit_code == 0, created.output
    with laptop_a.owner_store() as store:
        assert store.list() == []


def test_the_server_refuses_a_self_approval_and_a_pending_approver(pg_store: PostgresStore) -> None:
    from outreach_station.errors import StationError
    from outreach_station.team.keys import MemberKey

    keys = [MemberKey.generate("team-x") for _ in range(2)]
    for key, status in zip(keys, ("pending", "pending"), strict=True):
        assert pg_store.add_member(
            member_id=key.member_id,
            display_name="n",
            host="h",
            public_key=key.public_key,
            status=status,
        )
    a, b = (k.member_id for k in keys)
    assert not pg_store.approve_member(b, approved_by=b)  # itself
    assert not pg_store.approve_member(b, approved_by=a)  # a pending approver
    assert {r.status for r in pg_store.members()} == {"pending"}
    # Even written by hand with station's role, a row cannot say it approved itself.
    with pytest.raises(StationError), pg_store.transaction():
        pg_store._conn.execute(
            "UPDATE members SET status = 'approved', approved_by = member_id WHERE member_id = %s",
            (b,),
        )
    assert {r.status for r in pg_store.members()} == {"pending"}


def test_team_status_says_when_the_server_cannot_be_reached(
    runner: Any, laptop_a: TeamDb, isolation: Path
) -> None:
    import socket

    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    joined = json.loads(paths.current().team_file.read_text())
    dead = f"postgresql://station@127.0.0.1:{port}/x?connect_timeout=3"
    entry = password_entry(TeamConnection(dead))
    paths.current().team_file.write_text(json.dumps({**joined, "url": dead}))

    no_password = runner.invoke(["team", "status", "--json"])
    assert no_password.exit_code == 0
    assert json.loads(no_password.stdout)["reachable"] is None

    secret_store.write(entry, "irrelevant", what="test password")
    try:
        result = runner.invoke(["team", "status"])
    finally:
        keyring.delete_password(secret_store.SERVICE, entry)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"server:    {dead}",
        f"team:      {joined['team_id']}",
        f"member:    {joined['member_id']}",
        "status:    unknown",
        "reachable: no",
    ]
    assert result.stderr.startswith(f"cannot reach the team server at 127.0.0.1:{port}")
