"""The team's one audit trail and report on the server, with two simulated laptops.

Laptop A is this process; laptop B a child process with its own home and
keyring (`tests.team.test_team_cli`). Records of both go to the server,
chained; either laptop lists and verifies the whole trail; a row changed or
deleted by whoever owns the database (triggers off) is named by `verify`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import LaptopB, laptop_a, laptop_b  # noqa: F401 - fixtures


def _two_laptops(runner: Any, laptop_a: TeamDb, laptop_b: LaptopB) -> tuple[str, str]:  # noqa: F811
    """A founds the team, B joins and A approves it; the two member ids."""
    url = laptop_a.url()
    founded = runner.invoke(["team", "init", url, "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    a = json.loads(founded.stdout)["member_id"]
    joined = laptop_b.run("team", "join", url, "--name", "Bo", "--json", store_password=True)
    assert joined.returncode == 0, joined.stderr
    b = json.loads(joined.stdout)["member_id"]
    approved = runner.invoke(["team", "approve", b, "--yes"])
    assert approved.exit_code == 0, approved.output
    return a, b


def _admin_sql(team_db: TeamDb, sql: str, *args: object) -> None:
    """Change the trail as the database's owner would: in SQL, triggers off."""
    with team_db.server.admin(team_db.name) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql, args)


def test_both_laptops_records_are_one_trail_that_either_verifies(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    laptop_b: LaptopB,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    a, b = _two_laptops(runner, laptop_a, laptop_b)
    created = runner.invoke(["persona", "new", "demo"])
    assert created.exit_code == 0, created.output
    rotated = laptop_b.run("rotate", "demo", "--yes", "--reason", "login refused")
    assert rotated.returncode == 0, rotated.stderr

    listed_b = laptop_b.run("audit", "--json")
    assert listed_b.returncode == 0, listed_b.stderr
    listed_a = runner.invoke(["audit", "--json"])
    assert listed_a.exit_code == 0, listed_a.output
    trail = json.loads(listed_a.stdout)
    assert json.loads(listed_b.stdout) == trail
    seen = [(r["event"], r["member"]) for r in trail]
    # Every event of both laptops, in the order they happened, each with who and where.
    assert seen == [
        ("team.initialised", a),
        ("team.joined", b),
        ("team.member_approved", a),
        ("persona.created", a),
        ("persona.blocked", b),
        ("persona.created", b),
        ("persona.rotated", b),
    ]
    assert [r["seq"] for r in trail] == list(range(1, len(trail) + 1))
    assert all(r["host"] for r in trail)
    assert {r["user"] for r in trail} == {a, b}

    verified = laptop_b.run("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    assert json.loads(verified.stdout)["count"] == len(trail)

    # B's report covers the block that happened on B and A's creation: the team's figures.
    report_a = runner.invoke(["report", "--json"])
    assert report_a.exit_code == 0, report_a.output
    total = json.loads(report_a.stdout)["total"]
    assert total["blocks"] == 1
    assert total["personas_created"] == 2  # A's demo and the one the rotation drew on B


def test_a_block_on_one_laptop_is_in_the_other_laptops_report(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    laptop_b: LaptopB,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    _two_laptops(runner, laptop_a, laptop_b)
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0
    rotated = runner.invoke(["rotate", "demo", "--yes", "--reason", "login refused"])
    assert rotated.exit_code == 0, rotated.output

    report_b = laptop_b.run("report", "--json")
    assert report_b.returncode == 0, report_b.stderr
    figures = json.loads(report_b.stdout)
    assert figures["total"]["blocks"] == 1
    assert figures["block_time_sources"] == {"audit": 1, "registry": 0}


@pytest.mark.parametrize("change", ["edit", "delete", "member"])
def test_verify_names_a_record_the_database_owner_changed_or_deleted(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    laptop_b: LaptopB,  # noqa: F811 - the fixture
    isolation: Path,
    change: str,
) -> None:
    _two_laptops(runner, laptop_a, laptop_b)
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0
    trail = json.loads(runner.invoke(["audit", "--json"]).stdout)
    victim = next(r for r in trail if r["event"] == "team.joined")
    with laptop_a.member_store() as store:
        row = next(r for r in store.audit_records() if json.loads(r.record)["seq"] == victim["seq"])
    if change == "edit":
        edited = row.record.replace('"host":"', '"host":"x', 1)
        _admin_sql(laptop_a, "UPDATE audit_records SET record = %s WHERE seq = %s", edited, row.seq)
    elif change == "member":
        # Blame another member in the row, leaving the chained record as it was.
        _admin_sql(laptop_a, "UPDATE audit_records SET member = 'x' WHERE seq = %s", row.seq)
    else:
        _admin_sql(laptop_a, "DELETE FROM audit_records WHERE seq = %s", row.seq)

    for result in (runner.invoke(["audit", "verify"]), laptop_b.run("audit", "verify")):
        code = getattr(result, "exit_code", None)
        code = result.returncode if code is None else code
        assert code == ExitCode.INTEGRITY
        assert f"record {victim['seq']}" in result.stderr, result.stderr
        assert "team's audit trail" in result.stderr


def test_the_laptop_that_sent_the_last_record_sees_it_deleted(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    """A clean cut at the end leaves a valid chain; the laptop that sent the last record knows."""
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0
    trail = json.loads(runner.invoke(["audit", "--json"]).stdout)
    assert [r["event"] for r in trail] == ["team.initialised", "persona.created"]
    _admin_sql(
        laptop_a, "DELETE FROM audit_records WHERE seq = (SELECT max(seq) FROM audit_records)"
    )

    result = runner.invoke(["audit", "verify"])
    assert result.exit_code == ExitCode.INTEGRITY
    assert result.stderr == (
        f"station: error: the team's audit trail on {_where(laptop_a)} is damaged at record 2: "
        "record 2, which this laptop sent, is missing or changed (the trail was cut or "
        "rewritten) (1 record before it intact); report it to IT\n"
    )


def test_a_chain_rewritten_to_its_end_fails_on_a_laptop_that_sent_none_of_it(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    laptop_b: LaptopB,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    """Every hash recomputed from a block to the end: the chain holds, the signatures do not."""
    from outreach_station.audit import record_hash

    _two_laptops(runner, laptop_a, laptop_b)  # B's last record sent: its join (record 2)
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0
    rotated = runner.invoke(["rotate", "demo", "--yes", "--reason", "login refused"])
    assert rotated.exit_code == 0, rotated.output
    with laptop_a.member_store() as store:
        rows = store.audit_records()
    blocked = next(i for i, r in enumerate(rows) if '"event":"persona.blocked"' in r.record)
    assert blocked >= 3  # after B's last record: B's own mark cannot see the rewrite
    # The database's owner hides the block's reason and re-chains every record after it.
    prev = json.loads(rows[blocked - 1].record)["hash"]
    for row in rows[blocked:]:
        body = json.loads(row.record)
        if body["event"] == "persona.blocked":
            body["detail"]["reason"] = "routine"
        body["prev"] = prev
        body["hash"] = record_hash(body)
        prev = body["hash"]
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        _admin_sql(
            laptop_a,
            "UPDATE audit_records SET record = %s, hash = %s WHERE seq = %s",
            text,
            body["hash"],
            row.seq,
        )

    verified = laptop_b.run("audit", "verify")
    assert verified.returncode == ExitCode.INTEGRITY, verified.stdout
    assert f"damaged at record {blocked + 1}: " in verified.stderr
    assert "signature by " in verified.stderr and "does not verify" in verified.stderr


def test_an_unsigned_record_or_one_signed_by_no_member_is_named(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    """Inserted with station's own database login and chained right, but not by a member."""
    from datetime import UTC, datetime

    from outreach_station import paths
    from outreach_station.audit import AuditEvent
    from outreach_station.events import EventName
    from outreach_station.team.audit import _copy
    from outreach_station.team.keys import MemberKey

    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    count = len(json.loads(runner.invoke(["audit", "--json"]).stdout))
    team_id = json.loads(paths.current().team_file.read_text())["team_id"]
    stranger = MemberKey.generate(team_id)
    forged = AuditEvent(
        seq=1,
        time=datetime.now(UTC),
        user=stranger.member_id,
        host="somewhere",
        event=EventName.PERSONA_RETIRED,
        persona=None,
        platform=None,
        detail={},
        prev="",
        hash="",
    )
    make = _copy(forged, stranger.member_id, stranger.sign, team_id)

    def unsigned(last: Any) -> tuple[str, str, None]:
        text, digest, _signature = make(last)
        return text, digest, None

    for how, said in (
        (unsigned, "the record is not signed by a member"),
        (make, f"the record is signed as {stranger.member_id}, who is not a member"),
    ):
        with laptop_a.member_store() as store:
            store.append_audit_record(member=stranger.member_id, host="somewhere", make=how)
        result = runner.invoke(["audit", "verify"])
        assert result.exit_code == ExitCode.INTEGRITY
        assert f"damaged at record {count + 1}: {said}" in result.stderr, result.stderr
        _admin_sql(laptop_a, "DELETE FROM audit_records WHERE member = %s", stranger.member_id)
    assert runner.invoke(["audit", "verify"]).exit_code == 0


def _where(team_db: TeamDb) -> str:
    from outreach_station.storage.postgres import TeamConnection

    return TeamConnection(team_db.url()).where


def test_records_wait_on_the_laptop_while_the_server_is_away_and_go_in_order(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    from dataclasses import replace

    from outreach_station import paths, secret_store
    from outreach_station.audit import AuditLog
    from outreach_station.context import Station
    from outreach_station.events import EventName
    from outreach_station.storage.postgres import TeamConnection, password_entry
    from outreach_station.team.config import read_team_file, write_team_file

    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    home = paths.current()
    joined = read_team_file(home)
    assert joined is not None
    # Nothing listens on port 1: the server is away (its password is at hand, so
    # only the connection fails).
    away = joined.url.replace(f":{laptop_a.server.port}/", ":1/")
    entry = password_entry(TeamConnection(away))
    secret_store.write(entry, laptop_a.server.member_password, what="test password")
    with laptop_a.member_store() as store:
        before = len(store.audit_records())
    try:
        write_team_file(home, replace(joined, url=away))
        said: list[str] = []
        with Station.load(said.append) as st:
            st.record(EventName.VAULT_INITIALISED, mode="keyring")
            # Said once per command: the next record waits without another try.
            st.record(EventName.VAULT_INITIALISED, mode="second")
        assert len(said) == 1
        assert said[0].startswith("warning: the team's audit trail on 127.0.0.1:1/")
        assert "did not take 1 record: " in said[0]
        assert said[0].endswith("they are kept on this laptop and sent with the next record")
        with laptop_a.member_store() as store:
            assert len(store.audit_records()) == before
        kept = AuditLog.records(Station.load().audit)[-2]
        assert kept.event is EventName.VAULT_INITIALISED
    finally:
        write_team_file(home, joined)
        secret_store.delete(entry, what="test password")

    with Station.load() as st:
        assert st.audit.waiting() == 2  # type: ignore[attr-defined]
        mark = home.team_audit_sent.read_bytes()
        st.record(EventName.VAULT_INITIALISED, mode="passphrase")
        assert st.audit.waiting() == 0  # type: ignore[attr-defined]
    # A reply lost after the server took the records: the laptop offers them again.
    home.team_audit_sent.write_bytes(mark)
    with Station.load() as st:
        assert st.audit.send() == 0  # type: ignore[attr-defined]
    with laptop_a.member_store() as store:
        rows = store.audit_records()[before:]
    copied = [json.loads(r.record) for r in rows]
    assert [(c["event"], c["detail"]) for c in copied] == [
        ("vault.initialised", {"mode": "keyring"}),
        ("vault.initialised", {"mode": "second"}),
        ("vault.initialised", {"mode": "passphrase"}),
    ]
    assert copied[0]["time"] == kept.to_record()["time"]  # when it happened, not when it was sent
    assert runner.invoke(["audit", "verify"]).exit_code == 0


def test_a_command_keeps_one_audit_connection_and_a_new_one_after_a_server_restart(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    from outreach_station.context import Station
    from outreach_station.events import EventName

    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0

    def audit_connections() -> int:
        with laptop_a.server.admin(laptop_a.name) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = 'station'",
                (laptop_a.name,),
            ).fetchone()
        return int(row[0])

    said: list[str] = []
    with Station.load(said.append) as st:
        for mode in ("one", "two", "three"):
            st.record(EventName.VAULT_INITIALISED, mode=mode)
        assert audit_connections() == 1  # one kept for the command's records, not one each
        with laptop_a.server.stopped():
            pass  # the kept connection is cut
        st.record(EventName.VAULT_INITIALISED, mode="after the restart")
        assert st.audit.waiting() == 0  # type: ignore[attr-defined]
    assert said == []  # a new connection took it: no warning, nothing left waiting
    assert audit_connections() == 0  # closed with the command
    with laptop_a.member_store() as store:
        modes = [json.loads(r.record)["detail"].get("mode") for r in store.audit_records()]
    assert modes[-4:] == ["one", "two", "three", "after the restart"]


def test_the_team_trail_holds_kit_field_names_never_the_secret(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    isolation: Path,
) -> None:
    password = "Hemligt-Lösen-9317"
    assert runner.invoke(["team", "init", laptop_a.url()]).exit_code == 0
    created = runner.invoke(["persona", "new", "demo", "--json"])
    assert created.exit_code == 0, created.output
    persona = json.loads(created.stdout)["id"]
    stored = runner.invoke(
        ["persona", "kit", persona, "--set", "username=anna.k", "--set-secret", "password"],
        input=f"{password}\n",
    )
    assert stored.exit_code == 0, stored.output
    shown = runner.invoke(["persona", "kit", persona, "--reveal", "password", "--print"])
    assert shown.stdout == f"{password}\n"

    with laptop_a.member_store() as store:
        rows = store.audit_records()
    text = "\n".join(f"{r.member} {r.host} {r.record} {r.origin}" for r in rows)
    assert password not in text
    assert "anna.k" not in text  # a kit value is personal data: the field's name only
    events = [(json.loads(r.record)["event"], json.loads(r.record)["detail"]) for r in rows]
    assert ("kit.secret_revealed", {"field": "password", "how": "print"}) in events
    assert [e for e, _d in events].count("kit.updated") == 2  # the detail, then the secret
    listed = runner.invoke(["audit", "--json"])
    assert password not in listed.stdout and "anna.k" not in listed.stdout
