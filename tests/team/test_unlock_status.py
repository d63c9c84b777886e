"""`station team unlock` and `station team status` against a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths
from outreach_station.errors import ExitCode, StateError
from outreach_station.team import sync
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import laptop_a  # noqa: F401 - the fixture

CRASHED = "zzzzzzzzzzzzzzzz"  # the member id of the laptop that crashed holding the persona


@pytest.fixture
def held(runner: Any, laptop_a: TeamDb) -> tuple[str, str, int]:  # noqa: F811 - the fixture
    """A team founded by this laptop, and a persona another (crashed) laptop holds."""
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    me = json.loads(founded.stdout)["member_id"]
    with laptop_a.member_store() as store:
        persona = store.create("demo", fingerprint={}).id
        lease = store.acquire_lease(
            persona, member=CRASHED, host="laptop-4", ttl=timedelta(hours=2)
        )
    return persona, me, lease.token


def _still_held(team_db: TeamDb, persona: str, token: int) -> None:
    with team_db.member_store() as store:
        lease = store.lease(persona)
        assert lease is not None and (lease.member, lease.token) == (CRASHED, token)


def test_unlock_frees_the_lease_audited_and_fences_the_holder_off(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    held: tuple[str, str, int],
) -> None:
    persona, me, token = held

    no_reason = runner.invoke(["team", "unlock", persona, "--yes"])
    assert no_reason.exit_code == ExitCode.USAGE
    assert no_reason.stderr == (
        "station: error: station team unlock needs --reason TEXT: why the lease is freed "
        "(it goes into the audit trail)\n"
    )
    _still_held(laptop_a, persona, token)
    no_terminal = runner.invoke(["team", "unlock", persona, "--reason", "laptop 4 crashed"])
    assert no_terminal.exit_code == ExitCode.USAGE
    assert no_terminal.stderr == (
        "station: error: no terminal to confirm on; run this on a terminal, or pass --yes\n"
    )
    _still_held(laptop_a, persona, token)
    with laptop_a.member_store() as store:
        audited_before = len(store.audit_records())

    done = runner.invoke(["team", "unlock", persona, "--reason", "laptop 4 crashed", "--yes"])

    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(
        f"unlocked persona {persona}: it was open by {CRASHED} on laptop-4 since "
    )
    with laptop_a.member_store() as store:
        assert store.lease(persona) is None
        records = store.audit_records()
        assert len(records) == audited_before + 1
        record = json.loads(records[-1].record)
        assert records[-1].member == me
        assert (record["event"], record["persona"], record["user"]) == (
            "team.lease_unlocked",
            persona,
            me,
        )
        assert record["detail"] | {"team": None} == {
            "team": None,
            "member": me,
            "reason": "laptop 4 crashed",
            "holder": CRASHED,
            "holder_host": "laptop-4",
            "fencing": token,
        }
        # The crashed laptop comes back and uploads what it sealed under the old lease: refused.
        with pytest.raises(StateError, match="was lost"):
            store.commit_generation(persona, 1, b"manifest", token=token, blob_names=())
        assert store.current_generation(persona) is None

    again = runner.invoke(["team", "unlock", persona, "--reason", "again", "--yes"])
    assert again.exit_code == ExitCode.STATE
    assert again.stderr == (
        f"station: error: persona {persona} is not open on any laptop; nothing to unlock\n"
    )


def test_status_lists_pending_uploads_and_who_holds_which_persona(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    held: tuple[str, str, int],
    isolation: Path,
) -> None:
    persona, me, _token = held
    # A generation sealed here that the server has not taken yet, as sync keeps it.
    home = paths.current()
    sync._write_state(
        home.persona_dir(persona) / sync.STATE_FILE,
        {
            "pending": {
                "generation": 3,
                "base": 2,
                "sha256": "0" * 64,
                "token": 41,
                "member": me,
                "host": "this-laptop",
                "recorded": "2026-12-01T10:00:00Z",
                "blob_names": ["a"],
                "problem": "the team server was unreachable",
            }
        },
    )

    as_json = runner.invoke(["team", "status", "--json"])
    text = runner.invoke(["team", "status"])

    assert as_json.exit_code == 0, as_json.output
    status = json.loads(as_json.stdout)
    assert status["pending"] == [
        {
            "persona": persona,
            "generation": 3,
            "token": 41,
            "recorded": "2026-12-01T10:00:00Z",
            "problem": "the team server was unreachable",
        }
    ]
    assert [(x["persona"], x["member"], x["host"], x["expired"]) for x in status["leases"]] == [
        (persona, CRASHED, "laptop-4", False)
    ]
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert (
        f"waiting for the server: persona {persona} generation 3 (sealed 2026-12-01T10:00:00Z)"
        in lines
    )
    assert any(
        line.startswith(f"open: persona {persona} by {CRASHED} on laptop-4 since ")
        for line in lines
    )


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "sv_SE.UTF-8",
            "station team unlock behöver --reason TEXT: varför reservationen frigörs "
            "(det skrivs i granskningsloggen)",
        ),
        (
            "C.UTF-8",
            "station team unlock needs --reason TEXT: why the lease is freed "
            "(it goes into the audit trail)",
        ),
    ],
)
def test_unlock_speaks_the_persons_language(
    runner: Any, isolation: Path, monkeypatch: pytest.MonkeyPatch, lang: str, expected: str
) -> None:
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("LANG", lang)

    result = runner.invoke(["team", "unlock", "abcdefghijk2", "--yes"])

    assert result.exit_code == ExitCode.USAGE
    assert expected in result.stderr
