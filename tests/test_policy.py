from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from outreach_station import audit
from outreach_station.errors import ConfigError, NotFoundError, SecurityError
from outreach_station.policy import (
    MAX_MINUTES,
    AuditRules,
    BrowserRules,
    EffectivePolicy,
    IgnoreReason,
    PlatformRules,
    PlatformsRules,
    Policy,
    RetentionRules,
    RotationRules,
    SessionRules,
    SourceKind,
    TeamRules,
    VaultRules,
    check_trusted,
    host_matches,
    known_keys,
    load_policy,
    validate_policy_file,
)

STAFF_UID = 1000
DOCS = Path(__file__).resolve().parent.parent / "docs" / "policy.md"

# Ownership tests chown files and rely on root-owned temporary directories.
needs_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root, as CI runs"
)

FULL_POLICY = """\
[platforms]
allowed = ["demo", "facebook"]
profiles_dir = "/etc/outreach-station/profiles"

[platform.facebook]
require_proxy = true
allowlist = ["facebook.com", "*.facebook.com", "*.FBCDN.net"]

[browser]
executable = "/usr/bin/chromium"
downloads = true
devtools = true
extensions = true
printing = false
file_urls = true

[session]
max_minutes = 240
idle_minutes = 0

[audit]
path = "/var/log/outreach-station/audit.log"

[retention]
blocked_days = 30

[rotation]
undo_minutes = 10

[vault]
allow_passphrase = true

[team]
url = "postgresql://station@db.clinic.example:5432/station?sslmode=verify-full"
lease_minutes = 15
allow_join = true
"""


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STATION_POLICY", str(tmp_path / "etc" / "no-policy.toml"))


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def user(tmp_path: Path) -> Path:
    return tmp_path / "home" / "config.toml"


def load(system_policy: Path, user: Path, warnings: list[str] | None = None) -> EffectivePolicy:
    return load_policy(
        system_path=system_policy,
        user_path=user,
        warn=None if warnings is None else warnings.append,
    )


# --- defaults and parsing ---------------------------------------------------


def test_no_files_gives_the_secure_defaults(system_policy: Path, user: Path) -> None:
    effective = load(system_policy, user)

    assert effective.policy == Policy()
    assert not effective.system_loaded
    assert not effective.user_loaded
    assert effective.ignored == ()
    assert {str(s.source) for s in effective.settings} == {"default"}
    browser = effective.policy.browser
    assert (browser.downloads, browser.devtools, browser.extensions, browser.file_urls) == (
        False,
        False,
        False,
        False,
    )
    assert browser.printing is True
    assert effective.policy.vault.allow_passphrase is False
    assert effective.policy.session == SessionRules(max_minutes=480, idle_minutes=30)
    assert effective.policy.retention.blocked_days == 90
    assert effective.policy.platforms.allowed is None
    assert effective.policy.platform_allowed("anything")
    assert effective.policy.rules_for("anything") == PlatformRules(False, None)


def test_defaults_come_from_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_policy = write(tmp_path / "etc" / "site.toml", "[vault]\nallow_passphrase = true\n")
    write(tmp_path / "home" / "config.toml", "[browser]\nprinting = false\n")
    monkeypatch.setenv("STATION_POLICY", str(system_policy))

    effective = load_policy()

    assert effective.system_path == system_policy
    assert effective.user_path == tmp_path / "home" / "config.toml"
    assert effective.policy.vault.allow_passphrase is True
    assert effective.policy.browser.printing is False


@needs_root
def test_every_setting_is_parsed(system_policy: Path, user: Path) -> None:
    write(system_policy, FULL_POLICY)

    effective = load(system_policy, user)

    assert effective.policy == Policy(
        platforms=PlatformsRules(
            allowed=("demo", "facebook"), profiles_dir=Path("/etc/outreach-station/profiles")
        ),
        platform={
            "facebook": PlatformRules(
                require_proxy=True,
                allowlist=("facebook.com", "*.facebook.com", "*.fbcdn.net"),
            )
        },
        browser=BrowserRules(
            executable=Path("/usr/bin/chromium"),
            downloads=True,
            devtools=True,
            extensions=True,
            printing=False,
            file_urls=True,
        ),
        session=SessionRules(max_minutes=240, idle_minutes=0),
        audit=AuditRules(path=Path("/var/log/outreach-station/audit.log")),
        retention=RetentionRules(blocked_days=30),
        rotation=RotationRules(undo_minutes=10),
        vault=VaultRules(allow_passphrase=True),
        team=TeamRules(
            url="postgresql://station@db.clinic.example:5432/station?sslmode=verify-full",
            lease_minutes=15,
            allow_join=True,
        ),
    )
    assert effective.system_loaded
    # Every key the file sets is attributed to it, and nothing else is.
    assert {s.key for s in effective.settings if s.source.kind is SourceKind.SYSTEM} == {
        *(k for k in known_keys() if not k.startswith("platform.")),
        "platform.facebook.require_proxy",
        "platform.facebook.allowlist",
    }
    assert str(effective.source_of("browser.downloads")) == f"system policy {system_policy}"
    assert not effective.policy.platform_allowed("instagram")
    assert effective.policy.rules_for("instagram") == PlatformRules()


def test_as_json_has_value_and_source_for_every_key(system_policy: Path, user: Path) -> None:
    write(user, '[platform.demo]\nallowlist = ["demo.test"]\n')

    data = load(system_policy, user).as_json()

    assert data["browser.printing"] == {"value": True, "source": "default"}
    assert data["platforms.allowed"] == {"value": None, "source": "default"}
    assert data["platform.demo.allowlist"] == {
        "value": ["demo.test"],
        "source": f"user config {user}",
    }
    assert set(data) >= {k for k in known_keys() if not k.startswith("platform.")}


def test_host_patterns_match_subdomains_but_not_the_apex_or_lookalikes() -> None:
    assert host_matches("example.se", "example.se")
    assert host_matches("EXAMPLE.se.", "example.se")
    assert not host_matches("www.example.se", "example.se")
    assert host_matches("www.example.se", "*.example.se")
    assert host_matches("a.b.example.se", "*.example.se")
    assert not host_matches("example.se", "*.example.se")
    assert not host_matches("badexample.se", "*.example.se")
    rules = PlatformRules(allowlist=("example.se", "*.example.se"))
    assert rules.allows_host("cdn.example.se")
    assert not rules.allows_host("example.com")
    assert not PlatformRules(allowlist=()).allows_host("example.se")
    assert PlatformRules().allows_host("anything.example")


# --- malformed files ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[browser]\ndownloads = false\ndevtools = \n",
            "{path}:3: TOML syntax error: Invalid value (at line 3, column 12)",
            id="syntax-error",
        ),
        pytest.param(
            "[browser]\nprinting = true\ndownlods = false\n",
            "{path}:3: unknown key 'browser.downlods'; did you mean 'browser.downloads'?",
            id="unknown-key",
        ),
        pytest.param(
            "# IT policy\n[sesion]\nmax_minutes = 5\n",
            "{path}:2: unknown key 'sesion'; did you mean 'session'?",
            id="unknown-section",
        ),
        pytest.param(
            "[platform.demo]\nallowlist = []\nproxy = true\n",
            "{path}:3: unknown key 'platform.demo.proxy'; "
            "expected one of: require_proxy, allowlist",
            id="unknown-platform-key",
        ),
        pytest.param(
            '[browser]\n\nprinting = "no"\n',
            '{path}:3: browser.printing: expected true or false, got "no"',
            id="wrong-type-bool",
        ),
        pytest.param(
            "session.idle_minutes = 1.5\n",
            "{path}:1: session.idle_minutes: expected an integer from 0 to "
            f"{MAX_MINUTES} (minutes, 0 = off), got 1.5",
            id="wrong-type-int",
        ),
        pytest.param(
            "[session]\nmax_minutes = true\n",
            "{path}:2: session.max_minutes: expected an integer from 0 to "
            f"{MAX_MINUTES} (minutes, 0 = off), got true",
            id="bool-is-not-int",
        ),
        pytest.param(
            "[session]\nmax_minutes = -5\n",
            "{path}:2: session.max_minutes: expected an integer from 0 to "
            f"{MAX_MINUTES} (minutes, 0 = off), got -5",
            id="negative-minutes",
        ),
        pytest.param(
            "[retention]\nblocked_days = 100000\n",
            "{path}:2: retention.blocked_days: expected an integer from 0 to 3650 "
            "(days, 0 = keep until removed by hand), got 100000",
            id="out-of-range-days",
        ),
        pytest.param(
            '[platforms]\nallowed = "demo"\n',
            "{path}:2: platforms.allowed: expected a list of platform ids "
            "(lower case, digits, '-'), got \"demo\"",
            id="list-expected",
        ),
        pytest.param(
            '[platform.demo]\nrequire_proxy = false\nallowlist = ["ok.se", "*.se"]\n',
            "{path}:3: platform.demo.allowlist: expected a list of host patterns such as "
            'example.se or *.example.se, got "*.se" in the list',
            id="too-broad-wildcard",
        ),
        pytest.param(
            '[platform.demo]\nallowlist = ["https://ok.se/"]\n',
            "{path}:2: platform.demo.allowlist: expected a list of host patterns such as "
            'example.se or *.example.se, got "https://ok.se/" in the list',
            id="url-is-not-a-host",
        ),
        pytest.param(
            "[platform.Face_Book]\nrequire_proxy = true\n",
            "{path}:1: platform.Face_Book: expected a platform id "
            "(lower case letters, digits, '-')",
            id="bad-platform-id",
        ),
        pytest.param(
            '[browser]\nexecutable = "bin/chromium"\n',
            "{path}:2: browser.executable: expected an absolute path as a string, "
            'got "bin/chromium"',
            id="relative-path",
        ),
        pytest.param(
            "browser = true\n",
            "{path}:1: browser: expected a table, got true",
            id="section-not-a-table",
        ),
        pytest.param(
            "browser = { downloads = 1 }\n",
            "{path}:1: browser.downloads: expected true or false, got 1",
            id="inline-table",
        ),
    ],
)
def test_malformed_policy_names_file_line_field_and_expectation(
    system_policy: Path, text: str, expected: str
) -> None:
    write(system_policy, text)

    with pytest.raises(ConfigError) as caught:
        validate_policy_file(system_policy)

    assert str(caught.value) == expected.format(path=system_policy)
    assert "\n" not in str(caught.value)


def test_all_invalid_fields_reported_one_per_line_first_leading(system_policy: Path) -> None:
    write(
        system_policy,
        "[vault]\nallow_passphrase = 1\n\n[browser]\nextensions = 'yes'\nprint = true\n",
    )

    with pytest.raises(ConfigError) as caught:
        validate_policy_file(system_policy)

    assert str(caught.value).splitlines() == [
        f"{system_policy}:2: vault.allow_passphrase: expected true or false, got 1",
        f'{system_policy}:5: browser.extensions: expected true or false, got "yes"',
        f"{system_policy}:6: unknown key 'browser.print'; did you mean 'browser.printing'?",
    ]


def test_not_utf8_is_a_config_error(system_policy: Path) -> None:
    system_policy.write_bytes(b'[browser]\nexecutable = "/usr/bin/chr\xf6mium"\n')

    with pytest.raises(ConfigError, match=r"not UTF-8 text"):
        validate_policy_file(system_policy)


def test_unknown_platform_is_refused_when_the_catalogue_is_given(system_policy: Path) -> None:
    write(system_policy, '[platforms]\nallowed = ["demo", "facebok"]\n')

    assert validate_policy_file(system_policy).platforms.allowed == ("demo", "facebok")
    with pytest.raises(ConfigError) as caught:
        validate_policy_file(system_policy, known_platforms={"demo", "facebook"})
    assert str(caught.value) == (
        f"{system_policy}:2: unknown platform 'facebok'; known: demo, facebook"
    )


@needs_root
def test_malformed_system_policy_never_falls_back_to_defaults(
    system_policy: Path, user: Path
) -> None:
    write(system_policy, "[browser]\ndownloads = false\ndevtools = maybe\n")

    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(system_policy))}:3: TOML syntax error"
    ):
        load(system_policy, user)


def test_malformed_user_config_is_an_error_too(system_policy: Path, user: Path) -> None:
    write(user, "[browser]\ndownloads = 0\n")

    with pytest.raises(ConfigError) as caught:
        load(system_policy, user)
    assert str(caught.value) == f"{user}:2: browser.downloads: expected true or false, got 0"


def test_check_on_missing_file_is_not_found(system_policy: Path) -> None:
    with pytest.raises(NotFoundError):
        validate_policy_file(system_policy)


# --- trust --------------------------------------------------------------------


@needs_root
def test_root_owned_0644_policy_is_trusted_even_for_a_staff_user(system_policy: Path) -> None:
    write(system_policy, "[browser]\ndownloads = true\n", mode=0o644)

    check_trusted(system_policy)
    check_trusted(system_policy, uid=STAFF_UID)
    effective = load_policy(
        system_path=system_policy, user_path=system_policy.parent / "none.toml", uid=1000
    )
    assert effective.policy.browser.downloads is True


@needs_root
@pytest.mark.parametrize(
    ("mode", "problem"),
    [(0o666, "world-writable"), (0o646, "world-writable"), (0o664, "group-writable")],
)
def test_writable_policy_file_is_refused(
    system_policy: Path, user: Path, mode: int, problem: str
) -> None:
    write(system_policy, "[browser]\ndownloads = true\n", mode=mode)

    with pytest.raises(SecurityError) as caught:
        check_trusted(system_policy)
    assert str(caught.value).startswith(
        f"{system_policy}: refusing untrusted system policy: it ({system_policy}) is {problem}"
    )
    # Loading refuses too, rather than quietly using defaults.
    with pytest.raises(SecurityError):
        load(system_policy, user)


@needs_root
def test_policy_owned_by_the_staff_user_is_refused(system_policy: Path, user: Path) -> None:
    write(system_policy, "[vault]\nallow_passphrase = true\n")
    os.chown(system_policy, STAFF_UID, STAFF_UID)

    with pytest.raises(SecurityError) as caught:
        load_policy(system_path=system_policy, user_path=user, uid=STAFF_UID)
    assert f"it ({system_policy}) is owned by you, not root" in str(caught.value)
    # Another non-root owner is no better: only root may own the policy.
    with pytest.raises(SecurityError, match=r"is owned by uid 1000, not root"):
        check_trusted(system_policy, uid=2000)


@needs_root
def test_policy_in_world_writable_directory_needs_the_sticky_bit(system_policy: Path) -> None:
    write(system_policy, "")
    system_policy.parent.chmod(0o777)

    with pytest.raises(SecurityError) as caught:
        check_trusted(system_policy)
    assert f"its directory ({system_policy.parent}) is world-writable" in str(caught.value)

    system_policy.parent.chmod(0o1777)
    check_trusted(system_policy)


@needs_root
def test_directory_owned_by_staff_is_refused(system_policy: Path) -> None:
    write(system_policy, "")
    os.chown(system_policy.parent, STAFF_UID, STAFF_UID)

    with pytest.raises(SecurityError, match=r"its directory .* is owned by you, not root"):
        check_trusted(system_policy, uid=STAFF_UID)


@needs_root
def test_symlink_to_a_file_in_an_untrusted_directory_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "staff" / "policy.toml", "")
    os.chown(target.parent, STAFF_UID, STAFF_UID)
    link = tmp_path / "etc" / "policy.toml"
    link.parent.mkdir()
    link.symlink_to(target)

    with pytest.raises(SecurityError, match=r"its directory .*staff\) is owned by uid 1000"):
        check_trusted(link)


@needs_root
def test_directory_as_policy_is_refused(system_policy: Path, user: Path) -> None:
    system_policy.mkdir()

    with pytest.raises(ConfigError, match=r"not a regular file"):
        load(system_policy, user)


def test_missing_policy_is_not_found_for_check_trusted(system_policy: Path) -> None:
    with pytest.raises(NotFoundError):
        check_trusted(system_policy)


# --- precedence: the user config may only tighten -------------------------------

LOOSENING = [
    # key, system policy text (or "" for defaults), user config text, kept value, reason
    (
        "platforms.allowed",
        '[platforms]\nallowed = ["demo", "facebook"]\n',
        '[platforms]\nallowed = ["demo", "tiktok"]\n',
        ("demo", "facebook"),
        IgnoreReason.LOOSENS,
    ),
    (
        "platforms.profiles_dir",
        '[platforms]\nprofiles_dir = "/etc/os/profiles"\n',
        '[platforms]\nprofiles_dir = "/home/staff/profiles"\n',
        Path("/etc/os/profiles"),
        IgnoreReason.SYSTEM_ONLY,
    ),
    (
        "browser.executable",
        '[browser]\nexecutable = "/usr/bin/chromium"\n',
        '[browser]\nexecutable = "/home/staff/chrome"\n',
        Path("/usr/bin/chromium"),
        IgnoreReason.LOCKED,
    ),
    *(
        (
            f"browser.{name}",
            f"[browser]\n{name} = false\n",
            f"[browser]\n{name} = true\n",
            False,
            IgnoreReason.LOOSENS,
        )
        for name in ("downloads", "devtools", "extensions", "printing", "file_urls")
    ),
    (
        "session.max_minutes",
        "[session]\nmax_minutes = 60\n",
        "[session]\nmax_minutes = 120\n",
        60,
        IgnoreReason.LOOSENS,
    ),
    (
        "session.max_minutes",
        "[session]\nmax_minutes = 60\n",
        "[session]\nmax_minutes = 0\n",
        60,
        IgnoreReason.LOOSENS,
    ),
    (
        "session.idle_minutes",
        "[session]\nidle_minutes = 10\n",
        "[session]\nidle_minutes = 0\n",
        10,
        IgnoreReason.LOOSENS,
    ),
    (
        "audit.path",
        '[audit]\npath = "/var/log/os/audit.log"\n',
        '[audit]\npath = "/tmp/audit.log"\n',
        Path("/var/log/os/audit.log"),
        IgnoreReason.SYSTEM_ONLY,
    ),
    (
        "retention.blocked_days",
        "[retention]\nblocked_days = 30\n",
        "[retention]\nblocked_days = 365\n",
        30,
        IgnoreReason.SYSTEM_ONLY,
    ),
    (
        "rotation.undo_minutes",
        "[rotation]\nundo_minutes = 10\n",
        "[rotation]\nundo_minutes = 60\n",
        10,
        IgnoreReason.LOOSENS,
    ),
    (
        "vault.allow_passphrase",
        "[vault]\nallow_passphrase = false\n",
        "[vault]\nallow_passphrase = true\n",
        False,
        IgnoreReason.LOOSENS,
    ),
    (
        "platform.facebook.require_proxy",
        "[platform.facebook]\nrequire_proxy = true\n",
        "[platform.facebook]\nrequire_proxy = false\n",
        True,
        IgnoreReason.LOOSENS,
    ),
    (
        "platform.facebook.allowlist",
        '[platform.facebook]\nallowlist = ["facebook.com", "*.facebook.com"]\n',
        '[platform.facebook]\nallowlist = ["facebook.com", "*.facebook.com", "evil.example"]\n',
        ("facebook.com", "*.facebook.com"),
        IgnoreReason.LOOSENS,
    ),
    (
        "platform.facebook.allowlist",
        '[platform.facebook]\nallowlist = ["*.facebook.com"]\n',
        '[platform.facebook]\nallowlist = ["facebook.com"]\n',
        ("*.facebook.com",),
        IgnoreReason.LOOSENS,
    ),
]


@needs_root
@pytest.mark.parametrize(
    ("key", "system_text", "user_text", "kept", "reason"),
    LOOSENING,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(LOOSENING)],
)
def test_user_config_cannot_loosen_a_locked_value(
    system_policy: Path,
    user: Path,
    *,
    key: str,
    system_text: str,
    user_text: str,
    kept: object,
    reason: IgnoreReason,
) -> None:
    write(system_policy, system_text)
    write(user, "# mine\n" + user_text)
    warnings: list[str] = []

    effective = load(system_policy, user, warnings)

    setting = effective.setting(key)
    assert setting.value == kept
    assert str(setting.source) == f"system policy {system_policy}"
    assert len(effective.ignored) == 1
    ignored = effective.ignored[0]
    assert (ignored.key, ignored.kept, ignored.reason) == (key, kept, reason)
    assert ignored.kept_source.kind is SourceKind.SYSTEM
    assert warnings == [ignored.message]
    assert warnings[0].startswith(f"user config {user}:3: ignoring {key} = ")
    assert warnings[0].endswith(f"from system policy {system_policy}")
    assert "\n" not in warnings[0]
    # The caller writes this straight into the audit trail; it must pass its rules.
    assert audit.validate_detail(ignored.audit_detail()) == {
        "setting": key,
        "reason": reason.value,
        "kept_from": "system policy",
    }


@pytest.mark.parametrize(
    ("key", "user_text", "kept", "reason"),
    [
        ("browser.downloads", "[browser]\ndownloads = true\n", False, IgnoreReason.LOOSENS),
        ("browser.devtools", "[browser]\ndevtools = true\n", False, IgnoreReason.LOOSENS),
        ("vault.allow_passphrase", "vault.allow_passphrase = true\n", False, IgnoreReason.LOOSENS),
        ("session.max_minutes", "[session]\nmax_minutes = 600\n", 480, IgnoreReason.LOOSENS),
        ("session.idle_minutes", "[session]\nidle_minutes = 0\n", 30, IgnoreReason.LOOSENS),
        ("audit.path", '[audit]\npath = "/tmp/a.log"\n', None, IgnoreReason.SYSTEM_ONLY),
        ("retention.blocked_days", "retention.blocked_days = 1\n", 90, IgnoreReason.SYSTEM_ONLY),
        (
            "platforms.profiles_dir",
            'platforms.profiles_dir = "/home/p"\n',
            None,
            IgnoreReason.SYSTEM_ONLY,
        ),
    ],
)
def test_user_config_cannot_loosen_the_defaults_either(
    system_policy: Path, user: Path, *, key: str, user_text: str, kept: object, reason: IgnoreReason
) -> None:
    write(user, user_text)
    warnings: list[str] = []

    effective = load(system_policy, user, warnings)

    assert effective.setting(key).value == kept
    assert str(effective.source_of(key)) == "default"
    assert [(i.key, i.reason) for i in effective.ignored] == [(key, reason)]
    assert warnings == [effective.ignored[0].message]
    assert warnings[0].endswith("from default")


TIGHTENING = [
    ("platforms.allowed", '[platforms]\nallowed = ["demo", "facebook"]\n',
     '[platforms]\nallowed = ["facebook"]\n', ("facebook",)),
    ("platforms.allowed", "", '[platforms]\nallowed = ["demo"]\n', ("demo",)),
    ("browser.downloads", "[browser]\ndownloads = true\n", "[browser]\ndownloads = false\n", False),
    ("browser.printing", "", "[browser]\nprinting = false\n", False),
    ("session.max_minutes", "[session]\nmax_minutes = 0\n", "[session]\nmax_minutes = 90\n", 90),
    ("session.idle_minutes", "[session]\nidle_minutes = 20\n",
     "[session]\nidle_minutes = 5\n", 5),
    ("vault.allow_passphrase", "vault.allow_passphrase = true\n",
     "vault.allow_passphrase = false\n", False),
    ("platform.demo.require_proxy", "", "[platform.demo]\nrequire_proxy = true\n", True),
    ("platform.demo.allowlist", "", '[platform.demo]\nallowlist = ["demo.test"]\n',
     ("demo.test",)),
    ("platform.demo.allowlist", '[platform.demo]\nallowlist = ["*.demo.test", "demo.test"]\n',
     '[platform.demo]\nallowlist = ["demo.test", "*.cdn.demo.test", "a.demo.test"]\n',
     ("demo.test", "*.cdn.demo.test", "a.demo.test")),
    ("browser.executable", "", '[browser]\nexecutable = "/opt/chromium/chrome"\n',
     Path("/opt/chromium/chrome")),
]  # fmt: skip


@needs_root
@pytest.mark.parametrize(
    ("key", "system_text", "user_text", "value"),
    TIGHTENING,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(TIGHTENING)],
)
def test_user_config_can_tighten(
    system_policy: Path, user: Path, *, key: str, system_text: str, user_text: str, value: object
) -> None:
    if system_text:
        write(system_policy, system_text)
    write(user, user_text)
    warnings: list[str] = []

    effective = load(system_policy, user, warnings)

    assert effective.setting(key).value == value
    assert str(effective.source_of(key)) == f"user config {user}"
    assert effective.ignored == ()
    assert warnings == []


@needs_root
def test_user_value_equal_to_the_system_value_keeps_the_system_as_source(
    system_policy: Path, user: Path
) -> None:
    write(system_policy, "[browser]\ndevtools = true\n[session]\nmax_minutes = 60\n")
    write(user, "[browser]\ndevtools = true\nprinting = false\n[session]\nmax_minutes = 60\n")

    effective = load(system_policy, user)

    assert str(effective.source_of("browser.devtools")) == f"system policy {system_policy}"
    assert str(effective.source_of("session.max_minutes")) == f"system policy {system_policy}"
    assert str(effective.source_of("browser.printing")) == f"user config {user}"
    assert effective.policy.browser == BrowserRules(devtools=True, printing=False)
    assert effective.ignored == ()


@needs_root
def test_mixed_user_config_applies_the_tightening_and_reports_each_loosening(
    system_policy: Path, user: Path
) -> None:
    write(system_policy, FULL_POLICY)
    write(
        user,
        "[browser]\ndownloads = false\nexecutable = '/opt/c'\n"
        "[session]\nidle_minutes = 15\nmax_minutes = 300\n"
        "[platform.facebook]\nrequire_proxy = false\n",
    )
    warnings: list[str] = []

    effective = load(system_policy, user, warnings)

    assert effective.policy.browser.downloads is False
    assert effective.policy.session == SessionRules(max_minutes=240, idle_minutes=15)
    assert effective.policy.browser.executable == Path("/usr/bin/chromium")
    assert effective.policy.rules_for("facebook").require_proxy is True
    assert sorted(i.key for i in effective.ignored) == [
        "browser.executable",
        "platform.facebook.require_proxy",
        "session.max_minutes",
    ]
    assert len(warnings) == 3


# --- documentation --------------------------------------------------------------


def test_docs_describe_every_key_and_the_example_is_valid(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    for key in known_keys():
        assert f"`{key}`" in text, key
    examples = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    assert examples
    for number, example in enumerate(examples):
        path = write(tmp_path / f"example{number}.toml", example)
        validate_policy_file(path)


# --- bounded reads ----------------------------------------------------------


def test_policy_files_are_read_bounded(system_policy: Path, user: Path) -> None:
    huge = write(system_policy, "# padding\n" * 120_000)
    with pytest.raises(ConfigError) as caught:
        validate_policy_file(huge)
    assert str(caught.value) == (
        f"{huge}: larger than 1 MiB, too large for a station settings file"
    )
    user.parent.mkdir(parents=True)
    os.mkfifo(user)
    with pytest.raises(ConfigError) as caught:
        load(system_policy.parent / "absent.toml", user)
    assert str(caught.value) == f"{user}: not a regular file; give the path of a TOML file"
    with pytest.raises(ConfigError) as caught:
        validate_policy_file(Path("/dev/zero"))
    assert str(caught.value) == "/dev/zero: not a regular file; give the path of a TOML file"
