"""`station doctor` in a team: the server answers, this laptop's member is approved.

Laptop A is this process (the suite's Secret Service), B a child process with
its own keyring (`tests.team.test_team_cli.LaptopB`); one private PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode
from tests.fixtures import install_policy
from tests.team import test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.keyring]


def _team_finding(output: str) -> dict[str, str]:
    (row,) = [f for f in json.loads(output) if f["check"] == "team"]
    return row


def test_doctor_names_the_team_and_fails_when_its_server_does_not_answer(
    runner: Any, laptop_a: TeamDb, *, laptop_b: LaptopB, system_policy: Path
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    alone = runner.invoke(["doctor", "--json", "--quick"])
    assert _team_finding(alone.stdout) == {
        "check": "team",
        "verdict": "ok",
        "detail": "not in a team: personas are kept on this laptop only",
        "fix": "",
    }

    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    founder = json.loads(founded.stdout)
    joined = runner.invoke(["doctor", "--json", "--quick"])
    assert _team_finding(joined.stdout) == {
        "check": "team",
        "verdict": "ok",
        "detail": f"team {founder['team_id']}, member {founder['member_id']} (approved); "
        "the server answers",
        "fix": "",
    }

    # B joined and waits: a warning that says who can let it in, and how.
    b = laptop_b.run("team", "join", laptop_a.url(), "--name", "Bo", "--json", store_password=True)
    assert b.returncode == 0, b.stderr
    member_b = json.loads(b.stdout)["member_id"]
    waiting = laptop_b.run("doctor", "--json", "--quick")
    assert _team_finding(waiting.stdout) == {
        "check": "team",
        "verdict": "warn",
        "detail": f"member {member_b} of team {founder['team_id']} is waiting for approval",
        "fix": f"ask an approved member to run: station team approve {member_b}",
    }

    # The server stopped: doctor fails (exit code and the table), saying what to check.
    with laptop_a.server.stopped():
        down = runner.invoke(["doctor", "--json", "--quick"])
        table = runner.invoke(["doctor", "--quick"])
    finding = _team_finding(down.stdout)
    assert finding["verdict"] == "fail"
    assert finding["detail"].startswith("the team server does not answer: ")
    assert finding["fix"] == "check the network and that the team server runs; station docs team"
    assert down.exit_code == ExitCode.CHECK_FAILED
    assert any(line.startswith("FAIL  team ") for line in table.stdout.splitlines()), table.stdout
    assert table.exit_code == ExitCode.CHECK_FAILED
