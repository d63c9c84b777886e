"""The identity kit: details in SQLite, secrets in the real OS keyring, the clipboard for real."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest

from outreach_station import api, clipboard, kit, paths
from outreach_station.errors import (
    EnvironmentProblem,
    IntegrityError,
    NotFoundError,
    StateError,
    UsageError,
)
from outreach_station.events import EventName
from outreach_station.personas import Persona
from outreach_station.storage.sqlite import SqliteStore as Registry

FP = {"version": 1}

CARD_NUMBERS = [
    "4111111111111111",  # Visa test number, Luhn-valid
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500 0000 0000 0004",  # Mastercard, Luhn-valid
    "378282246310005",  # Amex, 15 digits
    "3782 822463 10005",
    "6011000990139424",
    "123456789012",  # 12 digits, not Luhn-valid: refused all the same
    "4111111111111111111",  # 19 digits
    "Org Visa 4111 1111 1111 1111 (finance)",  # hidden inside other text
    "4111.1111.1111.1111",
]


@pytest.fixture
def reg() -> Iterator[Registry]:
    with Registry(paths.current().registry) as registry:
        yield registry


def _persona(reg: Registry, platform: str = "demo", label: str = "") -> Persona:
    return reg.create(platform, fingerprint=FP, label=label)


def _audit_records() -> list[tuple[EventName, str | None, dict[str, object]]]:
    return [(r.event, r.persona, dict(r.detail)) for r in api.audit_log().records()]


def _audit_text() -> str:
    path = api.audit_log().path
    return path.read_text(encoding="utf-8") if path.exists() else ""


# ---------------------------------------------------------------- details


@pytest.mark.parametrize("field", kit.DETAIL_FIELDS)
@pytest.mark.parametrize("number", CARD_NUMBERS)
def test_card_numbers_refused_in_every_field_and_nothing_written(
    reg: Registry, field: str, number: str
) -> None:
    persona = _persona(reg)
    kit.update_kit(persona.id, {"username": "keep-me"}, registry=reg)
    before_row = reg.kit_row(persona.id)
    before_audit = _audit_text()

    with pytest.raises(UsageError, match="looks like a full payment card number") as caught:
        # A valid change alongside must not go through either.
        fine = ("email", "ok@example.org") if field != "email" else ("phone", "+46 70 123 45 67")
        kit.update_kit(persona.id, {fine[0]: fine[1], field: number}, registry=reg)

    assert "Nothing was written" in str(caught.value)
    digits = "".join(c for c in number if c.isdigit())
    assert digits[:8] not in str(caught.value)  # the number is never echoed
    assert reg.kit_row(persona.id) == before_row
    assert _audit_text() == before_audit


@pytest.mark.parametrize("number", CARD_NUMBERS)
def test_card_numbers_refused_as_secrets_too(number: str) -> None:
    for field in kit.SECRET_FIELDS:
        with pytest.raises(UsageError) as caught:
            kit.normalise_secret(field, number)
        assert number not in str(caught.value)


def test_phone_numbers_and_short_digit_runs_are_not_card_numbers() -> None:
    for harmless in ("+46 70-123 45 67", "08-123 456 78", "Visa 4821", "team 2026 budget"):
        assert not kit.looks_like_card_number(harmless)
    assert kit.looks_like_card_number("4111 1111 1111 1111")


@pytest.mark.parametrize("bad", ["123", "12345", "12a4", "", " 1234 5"])
def test_card_last4_must_be_exactly_four_digits(reg: Registry, bad: str) -> None:
    persona = _persona(reg)
    if bad == "":
        # Empty clears the field; that is allowed.
        kit.update_kit(persona.id, {"card-last4": "0042"}, registry=reg)
        assert kit.update_kit(persona.id, {"card-last4": ""}, registry=reg).card_last4 == ""
        return
    with pytest.raises(UsageError, match="exactly the last 4 digits"):
        kit.update_kit(persona.id, {"card-last4": bad}, registry=reg)
    assert reg.kit_row(persona.id) is None


def test_the_database_itself_refuses_a_bad_last4(reg: Registry) -> None:
    persona = _persona(reg)
    conn = sqlite3.connect(reg.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO kits (persona_id, card_last4, updated) VALUES (?, '41111', 'x')",
            (persona.id,),
        )
    conn.close()


def test_update_show_and_normalise(reg: Registry) -> None:
    persona = _persona(reg)
    updated = kit.update_kit(
        persona.id,
        {
            "username": "outreach_k7",
            "email": "Outreach.K7@Example.org",
            "phone": "+46 70-123 45 67",
            "card-label": "Org debit card B",
            "card-last4": "0042",
        },
        registry=reg,
    )
    assert updated.email == "outreach.k7@example.org"
    assert updated.phone == "+46701234567"
    assert updated.card_last4 == "0042"
    assert kit.get_kit(persona.id, registry=reg) == updated
    # Clearing one field leaves the others.
    cleared = kit.update_kit(persona.id, {"phone": ""}, registry=reg)
    assert (cleared.phone, cleared.username) == ("", "outreach_k7")


def test_update_is_all_or_nothing(reg: Registry) -> None:
    persona = _persona(reg)
    with pytest.raises(UsageError, match="not an email address"):
        kit.update_kit(persona.id, {"username": "fine", "email": "not-an-address"}, registry=reg)
    assert reg.kit_row(persona.id) is None
    assert _audit_records() == []


def test_unknown_and_secret_fields_are_refused(reg: Registry) -> None:
    persona = _persona(reg)
    with pytest.raises(UsageError, match="unknown kit field 'iban'"):
        kit.update_kit(persona.id, {"iban": "x"}, registry=reg)
    with pytest.raises(UsageError, match="never taken from the command line") as caught:
        kit.parse_assignments(["password=hunter2-very-secret"])
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UsageError, match="FIELD=VALUE"):
        kit.parse_assignments(["email"])
    assert kit.parse_assignments(["email=a@b.org", "phone="]) == {"email": "a@b.org", "phone": ""}


def test_unknown_persona(reg: Registry) -> None:
    with pytest.raises(NotFoundError):
        kit.get_kit("aaaaaaaaaaaa", registry=reg)
    with pytest.raises(UsageError, match="malformed persona id"):
        kit.update_kit("../etc", {"username": "x"}, registry=reg)


def test_two_personas_never_share_details_across_platforms_and_statuses(reg: Registry) -> None:
    first = _persona(reg, "demo")
    other = _persona(reg, "other")
    kit.update_kit(
        first.id,
        {"username": "Outreach_A", "email": "a@example.org", "phone": "+46 70 111 22 33"},
        registry=reg,
    )
    reg.transition(first.id, "blocked", reason="blocked by the platform")

    assert kit.kit_in_use_elsewhere(reg, other.id, "email", "A@EXAMPLE.ORG")
    assert kit.kit_in_use_elsewhere(reg, other.id, "phone", "+46701112233")
    assert kit.kit_in_use_elsewhere(reg, other.id, "username", "outreach_a")
    assert not kit.kit_in_use_elsewhere(reg, first.id, "email", "a@example.org")
    assert not kit.kit_in_use_elsewhere(reg, other.id, "email", "b@example.org")

    for field, value in (
        ("email", "A@example.org"),
        ("phone", "+46-70-111 22 33"),
        ("username", "OUTREACH_A"),
    ):
        with pytest.raises(StateError, match="already uses this"):
            kit.update_kit(other.id, {field: value}, registry=reg)
    assert reg.kit_row(other.id) is None
    # The shared payment reference is allowed: one organisation card is common.
    kit.update_kit(other.id, {"card-label": "Org card", "card-last4": "0042"}, registry=reg)


def test_database_unique_indexes_back_the_check(reg: Registry) -> None:
    a, b = _persona(reg), _persona(reg)
    kit.update_kit(a.id, {"email": "x@example.org"}, registry=reg)
    conn = sqlite3.connect(reg.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO kits (persona_id, email, updated) VALUES (?, 'X@example.org', 'x')",
            (b.id,),
        )
    conn.close()


def test_kit_of_blocked_or_retired_persona_is_frozen(reg: Registry) -> None:
    persona = _persona(reg)
    kit.update_kit(persona.id, {"email": "frozen@example.org"}, registry=reg)
    reg.transition(persona.id, "blocked")
    with pytest.raises(StateError, match="kit is kept as it was"):
        kit.update_kit(persona.id, {"email": ""}, registry=reg)
    with pytest.raises(StateError, match="kit is kept as it was"):
        kit.set_secret(persona.id, "password", "new-password-123", registry=reg)
    assert kit.get_kit(persona.id, registry=reg).email == "frozen@example.org"


def test_changes_are_audited_with_field_names_only(reg: Registry) -> None:
    persona = _persona(reg)
    kit.update_kit(
        persona.id,
        {"email": "zq-audit-probe@example.org", "card-label": "Probe label 77", "phone": ""},
        registry=reg,
    )
    # Setting the same values again changes nothing and records nothing.
    kit.update_kit(persona.id, {"email": "zq-audit-probe@example.org"}, registry=reg)
    assert _audit_records() == [
        (EventName.KIT_UPDATED, persona.id, {"fields": "card-label,email"}),
    ]
    text = _audit_text()
    assert "zq-audit-probe" not in text
    assert "Probe label" not in text


def test_a_change_the_audit_trail_cannot_record_is_not_made(reg: Registry) -> None:
    persona = _persona(reg)
    log_path = api.audit_log().path
    log_path.parent.mkdir(parents=True)
    log_path.write_text('{"seq":1,"edited":true}\n', encoding="utf-8")
    with pytest.raises(IntegrityError, match="refusing to chain"):
        kit.update_kit(persona.id, {"email": "unaudited@example.org"}, registry=reg)
    assert reg.kit_row(persona.id) is None


# ---------------------------------------------------------------- secrets (real keyring)


@pytest.mark.keyring
def test_secrets_live_only_in_the_keyring(reg: Registry, secret_service: None) -> None:
    persona = _persona(reg)
    password = "Zq7-only-in-keyring-9x"
    seed = "jbsw y3dp ehpk 3pxp"

    assert dict(kit.show_kit(persona.id, registry=reg).secrets) == {
        "password": False,
        "totp-seed": False,
    }
    kit.set_secret(persona.id, "password", password + "\n", registry=reg)
    kit.set_secret(persona.id, "totp-seed", seed, registry=reg)

    assert keyring.get_password("outreach-station", f"kit:{persona.id}:password") == password
    assert keyring.get_password("outreach-station", f"kit:{persona.id}:totp-seed") == (
        "JBSWY3DPEHPK3PXP"
    )
    assert dict(kit.show_kit(persona.id, registry=reg).secrets) == {
        "password": True,
        "totp-seed": True,
    }
    # Not in SQLite (database, WAL and all), not in the audit trail.
    home = paths.current().home
    for stored in home.rglob("*"):
        if stored.is_file():
            data = stored.read_bytes()
            assert password.encode() not in data, stored
            assert b"JBSWY3DPEHPK3PXP" not in data, stored
    assert _audit_records() == [
        (EventName.KIT_UPDATED, persona.id, {"fields": "password"}),
        (EventName.KIT_UPDATED, persona.id, {"fields": "totp-seed"}),
    ]


@pytest.mark.keyring
def test_bad_secrets_store_nothing(reg: Registry, secret_service: None) -> None:
    persona = _persona(reg)
    with pytest.raises(UsageError, match="card number"):
        kit.set_secret(persona.id, "password", "4111 1111 1111 1111", registry=reg)
    with pytest.raises(UsageError, match="base32"):
        kit.set_secret(persona.id, "totp-seed", "not a seed!", registry=reg)
    with pytest.raises(UsageError, match="empty"):
        kit.set_secret(persona.id, "password", "\n", registry=reg)
    assert keyring.get_password("outreach-station", f"kit:{persona.id}:password") is None
    assert keyring.get_password("outreach-station", f"kit:{persona.id}:totp-seed") is None
    assert _audit_records() == []


@pytest.mark.keyring
def test_print_reveal_is_audited_without_the_value(reg: Registry, secret_service: None) -> None:
    persona = _persona(reg)
    with pytest.raises(NotFoundError, match="no password is stored for persona"):
        kit.reveal_for_print(persona.id, "password", registry=reg)
    kit.set_secret(persona.id, "password", "Reveal-me-41x", registry=reg)

    assert kit.reveal_for_print(persona.id, "password", registry=reg) == "Reveal-me-41x"

    assert _audit_records()[-1] == (
        EventName.KIT_SECRET_REVEALED,
        persona.id,
        {"field": "password", "how": "print"},
    )
    assert "Reveal-me" not in _audit_text()


@pytest.mark.keyring
def test_delete_kit_secrets(reg: Registry, secret_service: None) -> None:
    keep, shred = _persona(reg), _persona(reg)
    for persona in (keep, shred):
        kit.set_secret(persona.id, "password", f"pw-{persona.id}", registry=reg)
    kit.set_secret(shred.id, "totp-seed", "JBSWY3DPEHPK3PXP", registry=reg)

    assert kit.delete_kit_secrets(shred.id) == ["password", "totp-seed"]
    assert keyring.get_password("outreach-station", f"kit:{shred.id}:password") is None
    assert keyring.get_password("outreach-station", f"kit:{shred.id}:totp-seed") is None
    # Only that persona's secrets go; a second call is harmless.
    assert keyring.get_password("outreach-station", f"kit:{keep.id}:password") == f"pw-{keep.id}"
    assert kit.delete_kit_secrets(shred.id) == []


# ---------------------------------------------------------------- clipboard


def test_clipboard_tool_choice() -> None:
    assert clipboard.find_clipboard({}) is None
    if shutil.which("xclip"):
        tool = clipboard.find_clipboard({"DISPLAY": ":99"})
        assert tool is not None
        assert tool.name == "xclip"


@pytest.mark.keyring
@pytest.mark.usefixtures("no_display")
def test_reveal_without_clipboard_refuses_and_suggests_print(
    reg: Registry, secret_service: None
) -> None:
    persona = _persona(reg)
    kit.set_secret(persona.id, "password", "Reveal-me-41x", registry=reg)
    with pytest.raises(EnvironmentProblem, match="--print"):
        kit.reveal_to_clipboard(persona.id, "password", registry=reg)
    # Refused before the secret was shown, so no reveal is recorded.
    assert [event for event, _, _ in _audit_records()] == [EventName.KIT_UPDATED]


@pytest.mark.keyring
@pytest.mark.usefixtures("no_display")
@pytest.mark.parametrize("field", kit.SECRET_FIELDS)
def test_reveal_of_an_unset_secret_says_so_before_looking_for_a_clipboard(
    reg: Registry, secret_service: None, field: str
) -> None:
    persona = _persona(reg)
    with pytest.raises(NotFoundError) as caught:
        kit.reveal_to_clipboard(persona.id, field, registry=reg)
    assert caught.value.message == (
        f"no {field} is stored for persona {persona.id}; set one with "
        f"'station persona kit {persona.id} --set-secret {field}'"
    )
    assert _audit_records() == []


def _xclip(display: str) -> clipboard.ClipboardTool:
    if shutil.which("xclip") is None:
        pytest.skip("xclip is not installed (apt-get install xclip)")
    tool = clipboard.find_clipboard({"DISPLAY": display})
    assert tool is not None
    return tool


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.headed
def test_clear_if_unchanged_for_real(display: str) -> None:
    tool = _xclip(display)
    salt = os.urandom(32)
    clipboard.copy_to_clipboard(tool, b"s3cret-value")
    assert clipboard.read_clipboard(tool) == b"s3cret-value"

    digest = clipboard.keyed_digest(salt, b"s3cret-value")
    # Something else copied since: left alone.
    clipboard.copy_to_clipboard(tool, b"the person's own text")
    assert clipboard.clear_if_unchanged(tool, salt, digest) is False
    assert clipboard.read_clipboard(tool) == b"the person's own text"
    # Still the secret: cleared.
    clipboard.copy_to_clipboard(tool, b"s3cret-value")
    assert clipboard.clear_if_unchanged(tool, salt, digest) is True
    assert clipboard.read_clipboard(tool) in (b"", None)


@pytest.mark.headed
def test_detached_clearer_clears_after_delay_and_never_sees_the_secret(display: str) -> None:
    tool = _xclip(display)
    secret = b"Detached-clearer-probe-5k"
    clipboard.copy_to_clipboard(tool, secret)
    salt = os.urandom(32)
    pid = clipboard.start_clearer(tool, salt, clipboard.keyed_digest(salt, secret), 1.5)

    # The starter has already returned; the clearer runs on its own, in its own session.
    assert _process_exists(pid)
    assert os.getsid(pid) == pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"clear-clipboard" in cmdline
    for blob in (cmdline, environ):
        assert secret not in blob
        assert salt.hex().encode() not in blob
    assert clipboard.read_clipboard(tool) == secret

    assert _wait_for(lambda: clipboard.read_clipboard(tool) in (b"", None), 6)
    assert _wait_for(lambda: not _process_exists(pid), 5)


@pytest.mark.headed
def test_detached_clearer_leaves_newer_content_alone(display: str) -> None:
    tool = _xclip(display)
    secret = b"Old-secret-value-3q"
    clipboard.copy_to_clipboard(tool, secret)
    salt = os.urandom(32)
    pid = clipboard.start_clearer(tool, salt, clipboard.keyed_digest(salt, secret), 1.0)
    clipboard.copy_to_clipboard(tool, b"copied later by the person")
    assert _wait_for(lambda: not _process_exists(pid), 8)
    assert clipboard.read_clipboard(tool) == b"copied later by the person"


@pytest.mark.keyring
@pytest.mark.headed
def test_reveal_to_clipboard_end_to_end(reg: Registry, secret_service: None, display: str) -> None:
    tool = _xclip(display)
    persona = _persona(reg)
    kit.set_secret(persona.id, "password", "Clipboard-probe-8w", registry=reg)

    copied = kit.reveal_to_clipboard(persona.id, "password", clear_after=1.0, registry=reg)

    assert copied.tool == "xclip"
    assert clipboard.read_clipboard(tool) == b"Clipboard-probe-8w"
    assert _audit_records()[-1] == (
        EventName.KIT_SECRET_REVEALED,
        persona.id,
        {"field": "password", "how": "clipboard"},
    )
    assert _wait_for(lambda: clipboard.read_clipboard(tool) in (b"", None), 6)
    assert _wait_for(lambda: not _process_exists(copied.clearer_pid), 5)


def test_clearer_refuses_a_tool_that_is_not_there(tmp_path: Path) -> None:
    # Run as the real helper would be, without a display: it must fail, not fork.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(paths.PACKAGE_DIR.parent)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach_station.clipboard",
            "clear-clipboard",
            "--tool",
            "xclip",
            "--after",
            "0",
        ],
        input=b"00 " + b"0" * 64 + b"\n",
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert b"not available" in done.stderr
    assert done.stdout == b""
