"""`station doctor` and `station policy apply-browser` from the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outreach_station.audit import AuditLog, default_path
from outreach_station.errors import ExitCode
from tests.fixtures import station_argv
from tests.keyrings import run_code_in_private_keyring


def test_doctor_json_and_table(runner: Any) -> None:
    result = runner.invoke(["doctor", "--json", "--quick"])
    findings = json.loads(result.stdout)
    assert {f["check"] for f in findings} >= {"browser", "keyring", "audit log", "clock"}
    assert all(f["verdict"] in ("ok", "warn", "fail") for f in findings)
    assert result.exit_code == (
        ExitCode.CHECK_FAILED if any(f["verdict"] == "fail" for f in findings) else 0
    )
    table = runner.invoke(["doctor", "--quick"])
    lines = table.stdout.splitlines()
    assert lines[0].startswith("OK    python           Python ")
    # Fits an 80-column terminal, every check named, a count at the end.
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    for f in findings:
        assert any(line[6:].startswith(f["check"]) for line in lines), f["check"]
    counts = [sum(f["verdict"] == v for f in findings) for v in ("ok", "warn", "fail")]
    assert lines[-1] == f"{counts[0]} ok, {counts[1]} warnings, {counts[2]} failed"
    assert "\x1b[" not in table.stdout  # no colour codes when not a terminal


def test_rendering_wraps_details_and_puts_the_fix_on_its_own_line() -> None:
    from outreach_station.cli.doctor import render
    from outreach_station.doctor import Finding

    long = Finding(
        "keyring",
        "fail",
        "no usable OS keyring was found because " + "the session bus has no Secret Service " * 4,
        "sudo apt-get install gnome-keyring libpam-gnome-keyring dbus-x11 "
        "(station docs it-deployment, section 5)",
    )
    ok = Finding("disk", "ok", "70 GiB free", "never shown for ok")
    lines = render((long, ok), width=80, colour=False)
    assert all(len(line) <= 80 for line in lines), lines
    fix_line = next(i for i, line in enumerate(lines) if "fix:" in line)
    assert lines[fix_line].strip().startswith("fix: sudo apt-get install gnome-keyring")
    assert lines[fix_line - 1].strip().endswith("Secret Service")  # the detail ends before it
    assert lines[-1] == "OK    disk             70 GiB free"
    assert "never shown" not in "\n".join(lines)
    coloured = render((long,), width=80, colour=True)
    assert coloured[0].startswith("\x1b[31m\x1b[1mFAIL")


def test_doctor_reports_the_running_python(runner: Any) -> None:
    result = runner.invoke(["doctor", "--json", "--quick"])
    (row,) = [f for f in json.loads(result.stdout) if f["check"] == "python"]
    running = ".".join(str(part) for part in sys.version_info[:3])
    assert row["verdict"] == "ok"
    assert row["detail"].startswith(f"Python {running} (CPython, {sys.executable})")
    assert json.loads(result.stdout)[0]["check"] == "python"  # checked first


@pytest.mark.keyring  # doctor's keyring row fails without one
def test_doctor_fails_on_a_tampered_audit_log(runner: Any) -> None:
    AuditLog(default_path()).append("vault.initialised", detail={"mode": "keyring"})
    default_path().write_text(default_path().read_text().replace("keyring", "kEyring"))
    result = runner.invoke(["doctor", "--quick"])
    assert result.exit_code == ExitCode.CHECK_FAILED
    assert "check(s) failed: audit log" in result.stderr
    assert "FAIL" in result.stdout


def _doctor_on_the_null_keyring(**env_changes: str) -> dict[str, str]:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", **env_changes)
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        env.pop(name, None)
    proc = subprocess.run(
        station_argv("doctor", "--json", "--quick"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == ExitCode.CHECK_FAILED, proc.stderr
    keyring: dict[str, str] = next(f for f in json.loads(proc.stdout) if f["check"] == "keyring")
    assert keyring["verdict"] == "fail"
    return keyring


def test_doctor_refuses_an_insecure_keyring_for_real() -> None:
    keyring = _doctor_on_the_null_keyring()
    assert "null keyring" in keyring["detail"]
    # The long install hint is for a person at a command; doctor's fix says what applies,
    # and never a passphrase mode that the (default) policy forbids.
    assert "apt install" not in keyring["detail"]
    assert "passphrase" not in keyring["fix"]
    assert "station docs it-deployment" in keyring["fix"]


def test_doctor_leaves_the_install_hint_out_in_swedish_too() -> None:
    from outreach_station import i18n, secret_store

    catalogue = i18n.parse_po(i18n.catalogue_path("sv").read_text(encoding="utf-8"))
    keyring = _doctor_on_the_null_keyring(LANG="sv_SE.UTF-8")
    assert "null-nyckelringen" in keyring["detail"]
    assert catalogue.messages[secret_store.INSTALL_HINT] not in keyring["detail"]


def test_apply_browser_dry_run_and_install(runner: Any, tmp_path: Path) -> None:
    target = tmp_path / "managed"
    dry = runner.invoke(["policy", "apply-browser", "--dry-run", "--dir", str(target)])
    assert dry.exit_code == 0
    assert json.loads(dry.stdout) == {
        # Station's own switch keeps navigator.webdriver false; without this
        # every window showed Chromium's "unsupported command-line flag" bar.
        "CommandLineFlagSecurityWarningsEnabled": False,
        "DownloadRestrictions": 3,
        "ExtensionInstallBlocklist": ["*"],
        "URLBlocklist": ["file://*"],
    }
    assert not target.exists()
    done = runner.invoke(["policy", "apply-browser", "--dir", str(target)])
    assert done.exit_code == 0
    assert json.loads((target / "outreach-station.json").read_text()) == json.loads(dry.stdout)


LOCKED_DOCTOR = r"""
import json, secretstorage
from outreach_station.doctor import check_keyring

connection = secretstorage.dbus_init()
collection = secretstorage.get_default_collection(connection)
collection.lock()
assert collection.is_locked()
finding = check_keyring()
print(json.dumps({"verdict": finding.verdict, "detail": finding.detail, "fix": finding.fix}))
"""


def test_doctor_fails_on_a_locked_keyring(tmp_path: Path) -> None:
    # A private D-Bus session with its own keyring: locking the shared one
    # could not be undone without a prompt.
    done = run_code_in_private_keyring(tmp_path, LOCKED_DOCTOR)
    assert done.returncode == 0, done.stderr
    finding = json.loads(done.stdout.strip().splitlines()[-1])
    assert finding["verdict"] == "fail"
    assert "could not be read" in finding["detail"]
    assert "unlocked" in finding["fix"]


def test_doctor_fails_on_a_malformed_policy(runner: Any, system_policy: Path) -> None:
    policy = system_policy
    policy.write_text("[browser]\ndownloads = maybe\n")
    policy.chmod(0o644)
    result = runner.invoke(["doctor", "--json", "--quick"])
    assert result.exit_code == ExitCode.CHECK_FAILED
    (finding,) = [f for f in json.loads(result.stdout) if f["check"] == "policy"]
    assert finding["verdict"] == "fail"
    assert str(policy) in finding["detail"]
    assert "station policy check --installed" in finding["fix"]


def test_doctor_runs_every_check_on_a_fresh_sample_persona(runner: Any) -> None:
    """Without --quick, a persona drawn now (never stored) is checked in a real headless
    Chromium: what a new persona on this laptop would present, fonts included."""
    result = runner.invoke(["doctor", "--json"])
    findings = json.loads(result.stdout)
    assert findings[-1]["check"] == "sample persona"
    assert findings[-1]["verdict"] == "ok", findings[-1]
    assert re.fullmatch(r"a new persona passes (\d+) of \1 checks", findings[-1]["detail"])
    # Nothing of the sample is kept: no persona, no registry row.
    assert runner.invoke(["persona", "list", "--json"]).stdout.strip() in ("", "[]")


def test_a_sample_persona_that_fails_its_checks_fails_doctor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A laptop on which a new persona would present fonts it does not have (here a drawn
    fingerprint naming a family that is not installed) fails, naming the check."""
    from dataclasses import replace

    from outreach_station import doctor, fingerprint

    real = fingerprint.generate

    def lying(*args: Any, **kwargs: Any) -> fingerprint.Fingerprint:
        drawn = real(*args, **kwargs)
        return replace(drawn, fonts=(*drawn.fonts, "Nonexistent Sans"))

    monkeypatch.setattr(fingerprint, "generate", lying)
    found = doctor.check_sample_persona(doctor.Finding("browser", "ok", ""))
    assert found.verdict == "fail", found
    assert "fonts are the persona's: main: missing: Nonexistent Sans" in found.detail
    skipped = doctor.check_sample_persona(doctor.Finding("browser", "fail", "no chromium"))
    assert (skipped.verdict, skipped.detail) == ("fail", "not run: no browser")
