# ruff: noqa: E501 - the setting-to-test table below reads best one row per line
"""Every IT-lockdown setting, proved enforced through station, and not loosenable.

Where each setting is proved (E = enforced end to end, L = a user config cannot
loosen it; "here" is this file, "browser" is tests/browser/test_policy_enforced_browser.py):

| Setting | Enforced (E) | User config cannot loosen (L) |
| --- | --- | --- |
| platforms.allowed | here: test_allowed_platforms_hide_and_refuse_the_others | here: same test (user list adding a platform) + test_open_audits_every_ignored_loosening |
| platforms.profiles_dir | here: test_profiles_dir_adds_it_platforms_and_overrides_the_user_profile | here: test_user_config_cannot_set_a_profiles_dir |
| platform.<id>.require_proxy | here: test_require_proxy_from_the_policy_refuses_open_before_anything_is_created | here: same test (user `require_proxy = false`) |
| platform.<id>.allowlist | browser: test_system_policy_lockdown_holds_in_real_chromium; tests/browser/test_lockdown.py::test_open_url_off_the_allowlist_is_refused_before_launch | browser: same test (user list adding the blocked host) |
| browser.executable | here: test_system_browser_executable_beats_station_browser_and_the_user_config | here: same test |
| browser.downloads | browser: test_system_policy_lockdown_holds_in_real_chromium | browser: same test (user `downloads = true`) |
| browser.devtools | browser: test_system_policy_closes_devtools_in_real_chromium | browser: same test (user `devtools = true`) |
| browser.extensions | browser: test_system_policy_lockdown_holds_in_real_chromium (`--disable-extensions` in the real browser's command line) | browser: same test |
| browser.printing | browser: test_system_policy_lockdown_holds_in_real_chromium | browser: same test (system sets false; user `printing = true`) |
| browser.file_urls | browser: test_system_policy_lockdown_holds_in_real_chromium | browser: same test (user `file_urls = true`) |
| session.max_minutes | browser: test_system_policy_lockdown_holds_in_real_chromium (ended_by time-limit) | browser: same test (user `max_minutes = 0`) |
| session.idle_minutes | browser: test_system_idle_limit_closes_an_untouched_session | browser: same test (user `idle_minutes = 0`) |
| audit.path | here: test_audit_path_moves_what_rotate_and_open_write; browser: test_system_policy_lockdown_holds_in_real_chromium (persona.opened/closed land there) | here: test_open_audits_every_ignored_loosening (user `audit.path` ignored, default log stays empty) |
| retention.blocked_days | here: test_retention_follows_the_system_policy_days | here: same test (user `blocked_days = 1`) |
| rotation.undo_minutes | here: test_undo_window_follows_the_system_policy; tests/cli/test_rotate_cli.py::test_undo_outside_the_window_is_refused_and_changes_nothing | here: same test (user `undo_minutes = 60`) |
| team.url | tests/team/test_team_cli.py::test_the_policy_team_url_puts_the_home_in_the_team | tests/team/test_team_cli.py::test_a_user_config_cannot_join_a_team_or_name_one |
| team.allow_join | tests/team/test_team_cli.py::test_joining_is_refused_unless_the_policy_allows_it | tests/team/test_team_cli.py::test_a_user_config_cannot_join_a_team_or_name_one |
| team.lease_minutes | parsed only here (tests/test_policy.py); the leases of a session are the team sync's | system-only: a user config's is ignored (tests/test_policy.py) |
| vault.allow_passphrase | tests/cli/test_init.py::test_passphrase_mode_is_refused_unless_policy_allows_it, ::test_passphrase_vault_opens_and_reseals_without_the_keyring | here: test_user_config_cannot_allow_a_passphrase |

Parsing, precedence and the warning text of every key are in tests/test_policy.py;
this file drives the real CLI and core against a trusted system policy (root-owned,
0644, in root-only directories) and checks what station actually does.
Bad policies through `station open`/`station status` are at the end.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.audit import AuditLog, default_path
from outreach_station.errors import ExitCode
from tests.fixtures import install_policy, needs_root

pytestmark = needs_root


# --- helpers ----------------------------------------------------------------


def user_config(text: str) -> Path:
    target = paths.current().user_config
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, "utf-8")
    return target


def fake_browser(directory: Path, name: str) -> Path:
    """A stand-in Chromium that reports a version and records every launch attempt."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    marker = directory / f"{name}.launched"
    exe.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Chromium 156.0.8078.79"; exit 0; fi\n'
        f'echo launched >> "{marker}"\n'
        "exit 1\n"
    )
    exe.chmod(0o755)
    return exe


def launched(exe: Path) -> bool:
    return exe.with_name(exe.name + ".launched").exists()


def write_profile(directory: Path, platform_id: str, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{platform_id}.toml").write_text(
        f'name = "{name}"\nstart_url = "http://127.0.0.1:9/"\n'
    )


def events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [r.to_record() for r in AuditLog(log).records()]


def platform_ids(runner: Any) -> list[str]:
    result = runner.invoke(["platforms", "--json"])
    assert result.exit_code == 0, result.stderr
    return [p["id"] for p in json.loads(result.stdout)]


def registry_rows() -> int:
    import sqlite3

    db = paths.current().registry
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM personas").fetchone()[0])
    finally:
        conn.close()


# --- platforms.allowed --------------------------------------------------------


def test_allowed_platforms_hide_and_refuse_the_others(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "profiles"
    write_profile(extra, "site-one", "Site one")
    monkeypatch.setenv("STATION_PROFILES", str(extra))
    assert {"demo", "site-one"} <= set(platform_ids(runner))  # without a policy, both exist

    install_policy(system_policy, '[platforms]\nallowed = ["demo"]\n')
    # A user config trying to add the platform back is ignored.
    user_config('[platforms]\nallowed = ["demo", "site-one"]\n')
    exe = fake_browser(tmp_path / "bin", "chromium")
    monkeypatch.setenv("STATION_BROWSER", str(exe))

    assert platform_ids(runner) == ["demo"]
    for args in (["open", "site-one", "--headless"], ["persona", "new", "site-one"]):
        result = runner.invoke(args)
        assert result.exit_code == ExitCode.NOT_FOUND, (args, result.stderr)
        # Staff are told it is IT's choice, not that the platform does not exist.
        assert result.stderr.splitlines()[-1] == (
            "station: error: platform 'site-one' is not allowed by IT's policy on this computer "
            "(allowed: demo); ask IT if you need it"
        )
    assert "ignoring platforms.allowed" in runner.invoke(["open", "site-one"]).stderr
    assert registry_rows() == 0
    assert not launched(exe)


def test_an_allowed_platform_without_a_profile_is_named_as_such(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_policy(system_policy, '[platforms]\nallowed = ["demo", "facebook"]\n')
    exe = fake_browser(tmp_path / "bin", "chromium")
    monkeypatch.setenv("STATION_BROWSER", str(exe))
    result = runner.invoke(["open", "facebook", "--headless"])
    assert result.exit_code == ExitCode.NOT_FOUND, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "station: error: platform 'facebook' is allowed by IT's policy but has no profile on "
        "this computer; ask IT to install one (docs/it-deployment.md, Platform profiles)"
    )
    assert registry_rows() == 0
    assert not launched(exe)
    # doctor fails the same gap, with where to read how to fix it.
    from outreach_station.doctor import check_platforms
    from outreach_station.policy import load_policy

    finding = check_platforms(load_policy().policy)
    assert (finding.verdict, finding.detail) == (
        "fail",
        "allowed by the policy but no profile: facebook",
    )
    assert "Platform profiles" in finding.fix


# --- platforms.profiles_dir -------------------------------------------------


def test_profiles_dir_adds_it_platforms_and_overrides_the_user_profile(
    runner: Any, system_policy: Path, tmp_path: Path
) -> None:
    it_dir = tmp_path / "it-profiles"
    write_profile(it_dir, "intranet", "IT's intranet")
    write_profile(it_dir, "shared", "IT's shared")
    write_profile(paths.current().user_profiles, "shared", "Mine")
    install_policy(system_policy, f'[platforms]\nprofiles_dir = "{it_dir}"\n')

    result = runner.invoke(["platforms", "--json"])
    assert result.exit_code == 0, result.stderr
    found = {p["id"]: p["name"] for p in json.loads(result.stdout)}
    assert {"demo", "intranet", "shared"} <= set(found)
    assert found["intranet"] == "IT's intranet"
    assert found["shared"] == "IT's shared"
    # And what `persona new` creates is for IT's profile of that id.
    created = runner.invoke(["persona", "new", "intranet"])
    assert created.exit_code == 0, created.stderr


def test_user_config_cannot_set_a_profiles_dir(
    runner: Any, system_policy: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "my-profiles"
    write_profile(mine, "sneaky", "Not approved")
    install_policy(system_policy, "[browser]\ndownloads = false\n")
    config = user_config(f'[platforms]\nprofiles_dir = "{mine}"\n')

    assert "sneaky" not in platform_ids(runner)
    result = runner.invoke(["open", "sneaky", "--headless"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert f"user config {config}:2: ignoring platforms.profiles_dir" in result.stderr
    assert "only the system policy may set it" in result.stderr


# --- platform.<id>.require_proxy ------------------------------------------------


def test_require_proxy_from_the_policy_refuses_open_before_anything_is_created(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_policy(system_policy, "[platform.demo]\nrequire_proxy = true\n")
    user_config("[platform.demo]\nrequire_proxy = false\n")
    exe = fake_browser(tmp_path / "bin", "chromium")
    monkeypatch.setenv("STATION_BROWSER", str(exe))

    result = runner.invoke(["open", "demo", "--headless"])

    assert result.exit_code == ExitCode.STATE, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("station: error: platform demo requires a proxy")
    assert "ignoring platform.demo.require_proxy = false" in result.stderr
    assert registry_rows() == 0
    assert not launched(exe)
    assert not [
        r for r in events(default_path()) if r["event"] in ("persona.created", "persona.opened")
    ]


# --- browser.executable ---------------------------------------------------------


def test_system_browser_executable_beats_station_browser_and_the_user_config(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    it_choice = fake_browser(bin_dir, "it-chromium")
    env_choice = fake_browser(bin_dir, "env-chromium")
    user_choice = fake_browser(bin_dir, "user-chromium")
    install_policy(system_policy, f'[browser]\nexecutable = "{it_choice}"\n')
    user_config(f'[browser]\nexecutable = "{user_choice}"\n')
    monkeypatch.setenv("STATION_BROWSER", str(env_choice))

    result = runner.invoke(["open", "demo", "--headless"])

    # The stand-in cannot really run, so the open fails: but only IT's binary was started.
    assert result.exit_code == ExitCode.BROWSER, result.stderr
    assert launched(it_choice)
    assert not launched(env_choice)
    assert not launched(user_choice)
    assert "ignoring browser.executable" in result.stderr
    assert "the system policy locks it" in result.stderr
    doctor = runner.invoke(["doctor", "--json", "--quick"])
    browser = next(f for f in json.loads(doctor.stdout) if f["check"] == "browser")
    assert str(it_choice) in browser["detail"]


# --- audit.path -------------------------------------------------------------------


def test_audit_path_moves_what_rotate_and_open_write(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relocated = tmp_path / "collector" / "audit.jsonl"
    install_policy(system_policy, f'[audit]\npath = "{relocated}"\n')
    user_config("[browser]\ndownloads = true\n")  # open audits the ignored loosening
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    assert runner.invoke(["rotate", "demo", "--yes", "--reason", "test"]).exit_code == 0
    opened = runner.invoke(["open", "demo"])  # no display: stops after the policy audit
    assert opened.exit_code == ExitCode.ENVIRONMENT, opened.stderr

    written = [r["event"] for r in events(relocated)]
    assert "persona.created" in written
    assert "persona.rotated" in written
    assert "policy.loosening_ignored" in written
    assert not default_path().exists()
    assert AuditLog(relocated).verify().ok


# --- loosening attempts are audited when `station open` runs ----------------------

LOOSE_USER_CONFIG = """\
[platforms]
allowed = ["demo", "other"]
profiles_dir = "/home/staff/profiles"

[platform.demo]
require_proxy = false
allowlist = ["127.0.0.1", "localhost"]

[browser]
executable = "/home/staff/chrome"
downloads = true
devtools = true
extensions = true
printing = true
file_urls = true

[session]
max_minutes = 0
idle_minutes = 0

[audit]
path = "/home/staff/audit.jsonl"

[retention]
blocked_days = 1

[vault]
allow_passphrase = true
"""

STRICT_SYSTEM_POLICY = """\
[platforms]
allowed = ["demo"]

[platform.demo]
allowlist = ["127.0.0.1"]

[browser]
executable = "/usr/bin/chromium"
printing = false

[session]
max_minutes = 60
idle_minutes = 10

[retention]
blocked_days = 30
"""


def test_open_audits_every_ignored_loosening(
    runner: Any, system_policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_policy(system_policy, STRICT_SYSTEM_POLICY)
    user_config(LOOSE_USER_CONFIG)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    result = runner.invoke(["open", "demo"])

    assert result.exit_code == ExitCode.ENVIRONMENT, result.stderr
    keys = {
        "platforms.allowed",
        "platforms.profiles_dir",
        "platform.demo.allowlist",
        "browser.executable",
        "browser.downloads",
        "browser.devtools",
        "browser.extensions",
        "browser.printing",
        "browser.file_urls",
        "session.max_minutes",
        "session.idle_minutes",
        "audit.path",
        "retention.blocked_days",
        "vault.allow_passphrase",
    }
    # require_proxy = false equals the default: not a loosening here (see the require_proxy test).
    warned = [line for line in result.stderr.splitlines() if "ignoring" in line]
    assert {line.split("ignoring ")[1].split(" = ")[0] for line in warned} == keys
    # The user's audit.path was ignored too: the records are in the default log.
    records = [r for r in events(default_path()) if r["event"] == "policy.loosening_ignored"]
    assert {r["detail"]["setting"] for r in records} == keys
    assert not Path("/home/staff/audit.jsonl").exists()
    raw = default_path().read_text()
    # Which key and why, never the value.
    assert "localhost" not in raw and "/home/staff" not in raw
    effective = api.effective_policy()
    assert effective.policy.browser.executable == Path("/usr/bin/chromium")
    assert effective.policy.session.max_minutes == 60


# --- retention.blocked_days ---------------------------------------------------------


def test_retention_follows_the_system_policy_days(runner: Any, system_policy: Path) -> None:
    install_policy(system_policy, "[retention]\nblocked_days = 7\n")
    user_config("[retention]\nblocked_days = 1\n")
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0
    blocked = api.rotate("demo", reason="blocked", force=True).blocked
    assert blocked is not None
    changed = blocked.status_changed

    # The user's 1 day is ignored; IT's 7 days apply.
    assert api.enforce_retention(now=changed + timedelta(days=2)) == []
    assert api.enforce_retention(now=changed + timedelta(days=6, hours=23)) == []
    assert api.get_persona(blocked.id).status == "blocked"
    done = api.enforce_retention(now=changed + timedelta(days=7, seconds=1))
    assert [d.persona.id for d in done] == [blocked.id]
    assert api.get_persona(blocked.id).status == "retired"
    assert "persona.shredded" in [r["event"] for r in events(default_path())]


# --- rotation.undo_minutes ----------------------------------------------------------


def test_undo_window_follows_the_system_policy(runner: Any, system_policy: Path) -> None:
    import sqlite3

    from outreach_station.clock import iso, parse_iso

    install_policy(system_policy, "[rotation]\nundo_minutes = 2\n")
    user_config("[rotation]\nundo_minutes = 60\n")
    first = api.create_persona("demo")
    assert runner.invoke(["rotate", "demo", "--yes"]).exit_code == 0
    with sqlite3.connect(paths.current().registry) as conn:  # the rotation, 3 minutes ago
        for persona_id, changed in conn.execute("SELECT id, status_changed FROM personas"):
            earlier = iso(parse_iso(changed) - timedelta(minutes=3))
            conn.execute(
                "UPDATE personas SET status_changed = ? WHERE id = ?", (earlier, persona_id)
            )

    result = runner.invoke(["rotate", "demo", "--undo", "--yes"])

    # The user's 60 minutes are ignored; IT's 2 apply.
    assert result.exit_code == ExitCode.STATE
    assert "it can be undone only within 2 minutes" in result.stderr
    assert api.get_persona(first.id).status == "blocked"


# --- vault.allow_passphrase ----------------------------------------------------------


def test_user_config_cannot_allow_a_passphrase(runner: Any, system_policy: Path) -> None:
    install_policy(system_policy, "[browser]\ndownloads = false\n")
    user_config("[vault]\nallow_passphrase = true\n")
    passphrase = "lantern-orchard-7-quiet"

    result = runner.invoke(["init", "--passphrase"], input=f"{passphrase}\n{passphrase}\n")

    assert result.exit_code == ExitCode.SECURITY
    assert "passphrase mode is not allowed by policy" in result.stderr
    assert passphrase not in result.stdout + result.stderr
    assert not (paths.current().home / "vault.toml").exists()


# --- bad policies through the CLI ---------------------------------------------------

BAD_POLICIES = [
    ("syntax", "[browser]\ndownloads = \n", 0o644, ExitCode.CONFIG, ":2: TOML syntax error"),
    ("unknown key", "[browser]\ndownload = false\n", 0o644, ExitCode.CONFIG,
     ":2: unknown key 'browser.download'; did you mean 'browser.downloads'?"),
    ("wrong type", '[session]\nmax_minutes = 1\nidle_minutes = "10"\n', 0o644, ExitCode.CONFIG,
     ':3: session.idle_minutes: expected'),
    ("world-writable", "[browser]\ndownloads = false\n", 0o666, ExitCode.SECURITY,
     "refusing untrusted system policy: it ("),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "mode", "code", "says"),
    [case[1:] for case in BAD_POLICIES],
    ids=[case[0] for case in BAD_POLICIES],
)
@pytest.mark.parametrize("command", [["open", "demo", "--headless"], ["status"]])
def test_bad_policy_stops_station_with_one_line_and_creates_nothing(
    runner: Any,
    system_policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    text: str,
    mode: int,
    code: ExitCode,
    says: str,
    command: list[str],
) -> None:
    system_policy.write_text(text, "utf-8")
    system_policy.chmod(mode)
    exe = fake_browser(tmp_path / "bin", "chromium")
    monkeypatch.setenv("STATION_BROWSER", str(exe))
    home = paths.current().home

    result = runner.invoke(command)

    assert result.exit_code == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"station: error: {system_policy}")
    assert says in lines[0]
    assert result.stdout == ""
    assert not launched(exe)
    # Nothing created: no registry, no persona, no vault, no audit record.
    assert registry_rows() == 0
    assert not home.exists() or sorted(p.name for p in home.iterdir()) == []


def test_the_installed_policy_cannot_be_moved_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # XDG_CONFIG_DIRS moves platformdirs' site config dir; it must not move the policy.
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path))
    paths.set_test_system_root(None)  # only the path is computed; nothing of /etc is read
    assert paths.installed_policy_file() == Path("/etc/xdg/outreach-station/policy.toml")
    assert paths.managed_browser_policy_dirs()[0] == Path("/etc/chromium/policies/managed")
