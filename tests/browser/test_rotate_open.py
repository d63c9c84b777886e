"""`station rotate` while the blocked persona is open in another terminal."""

from __future__ import annotations

from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.workspace import sealed_file, workspace_dir
from tests.browser.test_open import browser_cmdlines, start_station, wait_open

pytestmark = [pytest.mark.browser, pytest.mark.keyring]

ROTATED = "station rotate replaced this persona, from another terminal"


def test_rotate_closes_and_seals_the_open_persona_then_activates_a_fresh_one(
    runner: Any,
) -> None:
    proc = start_station("open", "demo", "--headless")
    try:
        wait_open(proc)
        (blocked,) = api.list_personas(platform_id="demo")
        assert browser_cmdlines(blocked.id)
        result = runner.invoke(["rotate", "demo", "--yes", "--reason", "login refused"])
    finally:
        # rotate returns once the persona is sealed; the process then exits by itself.
        try:
            _out, err = proc.communicate(timeout=60)
        except Exception:
            proc.kill()
            raise
    assert result.exit_code == 0, result.stderr
    assert f"closed the open session of persona {blocked.id}" in result.stderr
    assert f"demo: persona {blocked.id} marked blocked" in result.stdout
    assert "is now active (created)" in result.stdout
    # The open session ended the way a person closing it would: sealed, nothing left.
    assert proc.returncode == 0, err
    assert f"persona {blocked.id} closed ({ROTATED}); saved at " in err
    station = paths.current()
    assert sealed_file(station, blocked.id).exists()
    assert not workspace_dir(station, blocked.id).exists()
    assert browser_cmdlines(blocked.id) == []
    personas = {p.id: p for p in api.list_personas(platform_id="demo")}
    assert personas[blocked.id].status == "blocked"
    assert personas[blocked.id].status_reason == "login refused"
    (fresh,) = [p for p in personas.values() if p.status == "active"]
    assert fresh.id != blocked.id
    assert not sealed_file(station, fresh.id).exists()
