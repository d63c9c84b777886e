"""`station doctor` and `station policy apply-browser` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from outreach_station.audit import AuditLog, default_path
from outreach_station.errors import ExitCode


def test_doctor_json_and_table(runner: Any) -> None:
    result = runner.invoke(["doctor", "--json"])
    findings = json.loads(result.stdout)
    assert {f["check"] for f in findings} >= {"browser", "keyring", "audit log", "clock"}
    assert all(f["verdict"] in ("ok", "warn", "fail") for f in findings)
    assert result.exit_code == (
        ExitCode.CHECK_FAILED if any(f["verdict"] == "fail" for f in findings) else 0
    )
    table = runner.invoke(["doctor"])
    assert table.stdout.splitlines()[0].split() == ["CHECK", "VERDICT", "DETAIL", "FIX"]


def test_doctor_fails_on_a_tampered_audit_log(runner: Any) -> None:
    AuditLog(default_path()).append("vault.initialised", detail={"mode": "keyring"})
    default_path().write_text(default_path().read_text().replace("keyring", "kEyring"))
    result = runner.invoke(["doctor"])
    assert result.exit_code == ExitCode.CHECK_FAILED
    assert "check(s) failed: audit log" in result.stderr
    assert "FAIL" in result.stdout


def test_doctor_refuses_an_insecure_keyring_for_real() -> None:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    proc = subprocess.run(
        [sys.executable, "-m", "outreach_station", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == ExitCode.CHECK_FAILED, proc.stderr
    keyring = next(f for f in json.loads(proc.stdout) if f["check"] == "keyring")
    assert keyring["verdict"] == "fail"
    assert "null keyring" in keyring["detail"]


def test_apply_browser_dry_run_and_install(runner: Any, tmp_path: Path) -> None:
    target = tmp_path / "managed"
    dry = runner.invoke(["policy", "apply-browser", "--dry-run", "--dir", str(target)])
    assert dry.exit_code == 0
    assert json.loads(dry.stdout) == {
        "DownloadRestrictions": 3,
        "ExtensionInstallBlocklist": ["*"],
        "URLBlocklist": ["file://*"],
    }
    assert not target.exists()
    done = runner.invoke(["policy", "apply-browser", "--dir", str(target)])
    assert done.exit_code == 0
    assert json.loads((target / "outreach-station.json").read_text()) == json.loads(dry.stdout)
