"""`station doctor`'s checks, each failure made to happen for real."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach_station import api, doctor, paths
from outreach_station.audit import AuditLog, default_path
from outreach_station.lockdown import install_managed_policy, managed_policy_file
from outreach_station.policy import Policy
from outreach_station.workspace import workspace_dir

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def finding(report: doctor.DoctorReport, name: str) -> doctor.Finding:
    return next(f for f in report.findings if f.name == name)


def run(tmp_path: Path, **kwargs: object) -> doctor.DoctorReport:
    kwargs.setdefault("clock", lambda: NOW)
    kwargs.setdefault("managed_dir", tmp_path / "managed")
    return doctor.run_doctor(**kwargs)  # type: ignore[arg-type]


def test_missing_browser_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(empty))
    result = doctor.check_browser()
    assert result.verdict == "fail"
    assert "no Chromium found" in result.detail
    assert "apt-get install chromium" in result.fix


def test_browser_found() -> None:
    result = doctor.check_browser()
    assert result.verdict == "ok"
    assert "Chromium 1" in result.detail


def test_tampered_audit_log_fails(tmp_path: Path) -> None:
    log = AuditLog(default_path())
    log.append("vault.initialised", detail={"mode": "keyring"})
    log.append("vault.initialised", detail={"mode": "keyring"})
    assert doctor.check_audit(default_path()).verdict == "ok"
    text = default_path().read_text()
    default_path().write_text(text.replace('"keyring"', '"passphrase"', 1))
    result = run(tmp_path)
    audit = finding(result, "audit log")
    assert audit.verdict == "fail"
    assert "chain broken at line 1" in audit.detail
    assert not result.ok


def test_blocked_audit_path_fails(tmp_path: Path) -> None:
    logs = paths.current().logs
    logs.parent.mkdir(parents=True, exist_ok=True)
    logs.write_text("not a directory")  # where the log's directory should be
    audit = finding(run(tmp_path), "audit log")
    assert audit.verdict == "fail"
    assert "is not a directory" in audit.detail


def test_untrusted_policy_fails(tmp_path: Path, system_policy: Path) -> None:
    policy_file = system_policy
    policy_file.write_text("[browser]\ndownloads = false\n")
    policy_file.chmod(0o666)
    result = finding(run(tmp_path), "policy")
    assert result.verdict == "fail"
    assert "world-writable" in result.detail
    policy_file.chmod(0o644)
    assert finding(run(tmp_path), "policy").verdict == "ok"


def test_missing_system_policy_only_warns(tmp_path: Path) -> None:
    assert finding(run(tmp_path), "policy").verdict == "warn"


def test_disk_thresholds(tmp_path: Path) -> None:
    low = run(tmp_path, free_bytes=lambda _p: 100 * doctor.MIB)
    assert finding(low, "disk").verdict == "fail"
    assert not low.ok
    assert finding(run(tmp_path, free_bytes=lambda _p: doctor.GIB), "disk").verdict == "warn"
    assert finding(run(tmp_path, free_bytes=lambda _p: 50 * doctor.GIB), "disk").verdict == "ok"


def test_clock_before_release_or_last_record_fails(tmp_path: Path) -> None:
    past = finding(run(tmp_path, clock=lambda: datetime(2020, 1, 1, tzinfo=UTC)), "clock")
    assert past.verdict == "fail"
    assert "before this release" in past.detail
    # An audit record written "now" by the real clock; the machine then claims
    # an earlier time (after the release date) than that record.
    AuditLog(default_path()).append("vault.initialised", detail={"mode": "keyring"})
    behind = finding(run(tmp_path, clock=lambda: datetime(2026, 11, 2, tzinfo=UTC)), "clock")
    assert behind.verdict == "fail"
    assert "newest audit record" in behind.detail
    now = finding(run(tmp_path, clock=lambda: datetime.now(UTC)), "clock")
    assert now.verdict == "ok"


def test_leftover_workspace_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "site-one.toml").write_text('name = "S"\nstart_url = "http://127.0.0.1/"\n')
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    persona = api.create_persona("site-one")
    assert finding(run(tmp_path), "personas").verdict == "ok"
    left = workspace_dir(paths.current(), persona.id)
    (left / "profile").mkdir(parents=True)
    (left / "profile" / "Cookies").write_bytes(b"plaintext")
    result = finding(run(tmp_path), "personas")
    assert result.verdict == "fail"
    assert persona.id in result.detail
    assert f"station open site-one --persona {persona.id}" in result.fix


def test_managed_policy_missing_matching_and_changed(tmp_path: Path) -> None:
    managed = tmp_path / "managed"
    missing = finding(run(tmp_path), "browser policy")
    assert missing.verdict == "warn"
    # What staff see without it, so that IT knows why it matters.
    assert "'unsupported command-line flag' bar" in missing.detail
    assert missing.fix.startswith("sudo station policy apply-browser")
    written = install_managed_policy(Policy(), managed)
    assert written == managed_policy_file(managed)
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    assert json.loads(written.read_text())["DownloadRestrictions"] == 3
    assert finding(run(tmp_path), "browser policy").verdict == "ok"
    written.write_text(json.dumps({"DownloadRestrictions": 0}))
    changed = finding(run(tmp_path), "browser policy")
    assert changed.verdict == "warn"
    assert "differs" in changed.detail


def test_healthy_machine_passes(tmp_path: Path) -> None:
    report = run(tmp_path, free_bytes=lambda _p: 50 * doctor.GIB, clock=lambda: datetime.now(UTC))
    assert report.ok, [f for f in report.findings if f.verdict == "fail"]
    assert [f.name for f in report.findings] == [
        "python",
        "browser",
        "keyring",
        "workspace",
        "policy",
        "audit log",
        "disk",
        "clock",
        "personas",
        "sealed profiles",
        "permissions",
        "persona variety",
        "platforms",
        "browser policy",
        "team",
    ]
    assert os.environ["STATION_HOME"] in finding(report, "audit log").detail
    assert finding(report, "team").detail == "not in a team: personas are kept on this laptop only"
    assert finding(report, "platforms").verdict == "ok"
    assert "demo" in finding(report, "platforms").detail


def test_a_broken_platform_profile_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "chatsite.toml").write_text('name = "Chat"\nstart_url = "ftp://chat.example"\n')
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    found = doctor.check_platforms(None)
    assert found.verdict == "fail"
    assert "chatsite.toml" in found.detail and "start_url" in found.detail
    assert "Platform profiles" in found.fix


def test_persona_variety_warns_when_personas_could_only_differ_by_screen() -> None:
    from outreach_station.doctor import check_variety
    from outreach_station.fonts import FontInventory

    dejavu = ("DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif")
    only_dejavu = FontInventory(dejavu, dejavu, dejavu)
    found = check_variety(only_dejavu, 2)
    assert found.verdict == "warn"
    assert "1 default-font sets x 1 processor counts x 6 font renderings" in found.detail
    assert found.detail.startswith("6 distinct devices")
    assert "fonts-liberation" in found.fix
    liberation = FontInventory(
        (*dejavu, "Liberation Sans", "Liberation Serif"),
        dejavu,
        (*dejavu, "Liberation Sans", "Liberation Serif"),
    )
    enough = check_variety(liberation, 2)
    assert enough.verdict == "ok" and enough.detail.startswith("24 distinct devices"), enough
    eight = check_variety(only_dejavu, 8)  # 2 to 8 processors
    assert eight.verdict == "ok" and "1 default-font sets x 7 processor counts" in eight.detail
    # With croscore beside liberation, Arial draws with Arimo, Liberation Sans or
    # neither (the default serif), Times New Roman with Tinos, Liberation Serif or neither.
    laptop = FontInventory(
        (*dejavu, "Arimo", "Liberation Sans", "Liberation Serif", "Tinos"),
        dejavu,
        (*dejavu, "Arimo", "Tinos"),
        stand_ins=(
            ("Arial", ("Arimo", "Liberation Sans")),
            ("Times New Roman", ("Tinos", "Liberation Serif")),
        ),
    )
    croscore = check_variety(laptop, 2)
    assert croscore.verdict == "ok"
    assert croscore.detail.startswith("54 distinct devices: 9 default-font sets x 1"), croscore
    bare = check_variety(FontInventory((), ()), 8)
    assert bare.verdict == "warn" and "fontconfig" in bare.fix
