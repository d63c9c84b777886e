"""`station persona kit`: in-process through the root app, real SQLite, keyring and clipboard."""

from __future__ import annotations

import json
import shutil
from typing import Any

import keyring
import keyring.core
import keyring.errors
import pytest

from outreach_station import api, clipboard, kit, paths
from outreach_station.errors import ExitCode
from outreach_station.events import EventName
from outreach_station.storage.sqlite import SqliteStore as Registry

FP = {"version": 1}
PASSWORD = "Cli-secret-Probe-73q"


def _new_persona(platform: str = "demo") -> str:
    with Registry(paths.current().registry) as reg:
        return reg.create(platform, fingerprint=FP).id


def _kit_row(persona_id: str) -> dict[str, str] | None:
    with Registry(paths.current().registry) as reg:
        return reg.kit_row(persona_id)


def _events() -> list[tuple[EventName, str | None, dict[str, object]]]:
    return [(r.event, r.persona, dict(r.detail)) for r in api.audit_log().records()]


def _all_output(result: Any) -> str:
    return str(result.stdout) + str(result.stderr)


@pytest.fixture
def test_set_and_show(runner: Any, no_keyring: None) -> None:
    persona_id = _new_persona()
    result = runner.invoke(
        [
            "persona", "kit", persona_id,
            "--set", "username=outreach_k7",
            "--set", "email=K7@Example.org",
            "--set", "phone=+46 70-123 45 67",
            "--set", "card-label=Org debit B",
            "--set", "card-last4=0042",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "updated: username, email, phone, card-label, card-last4" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        f"persona:     {persona_id}",
        "username:    outreach_k7",
        "email:       k7@example.org",
        "phone:       +46701234567",
        "card-label:  Org debit B",
        "card-last4:  0042",
    ]
    assert lines[6:8] == [
        "password:    unknown (keyring unavailable)",
        "totp-seed:   unknown (keyring unavailable)",
    ]
    shown = json.loads(runner.invoke(["persona", "kit", persona_id, "--json"]).stdout)
    assert shown["email"] == "k7@example.org"
    assert shown["phone"] == "+46701234567"
    assert shown["secrets"] == {"password": "unknown", "totp-seed": "unknown"}
    assert _events() == [
        (
            EventName.KIT_UPDATED,
            persona_id,
            {"fields": "card-label,card-last4,email,phone,username"},
        )
    ]


@pytest.mark.parametrize("field", kit.DETAIL_FIELDS)
def test_card_number_refused_and_nothing_written(runner: Any, field: str) -> None:
    persona_id = _new_persona()
    result = runner.invoke(
        [
            "persona",
            "kit",
            persona_id,
            "--set",
            "phone=+46 70 123 45 67" if field != "phone" else "username=ok_name",
            "--set",
            f"{field}=4111-1111-1111-1111",
        ]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "looks like a full payment card number" in result.stderr
    assert "Nothing was written" in result.stderr
    assert "4111" not in _all_output(result)
    assert _kit_row(persona_id) is None
    assert _events() == []


def test_secrets_are_never_taken_from_argv(runner: Any) -> None:
    persona_id = _new_persona()
    result = runner.invoke(["persona", "kit", persona_id, "--set", f"password={PASSWORD}"])
    assert result.exit_code == ExitCode.USAGE
    assert "use --set-secret password" in result.stderr
    assert PASSWORD not in _all_output(result)


def test_usage_errors(runner: Any) -> None:
    persona_id = _new_persona()
    cases = [
        (["--print"], ExitCode.USAGE, "--print only works together with --reveal"),
        (["--reveal", "pin"], ExitCode.USAGE, "unknown kit secret 'pin'"),
        (["--set-secret", "iban"], ExitCode.USAGE, "unknown kit secret 'iban'"),
        (["--set", "email"], ExitCode.USAGE, "FIELD=VALUE"),
        (["--set", "card-last4=12345"], ExitCode.USAGE, "exactly the last 4 digits"),
    ]
    for extra, code, message in cases:
        result = runner.invoke(["persona", "kit", persona_id, *extra])
        assert result.exit_code == code, extra
        assert message in result.stderr, extra
    missing = runner.invoke(["persona", "kit", "aaaaaaaaaaaa"])
    assert missing.exit_code == ExitCode.NOT_FOUND


def test_shared_details_refused_between_personas(runner: Any) -> None:
    first, second = _new_persona("demo"), _new_persona("other")
    assert runner.invoke(["persona", "kit", first, "--set", "email=a@example.org"]).exit_code == 0
    result = runner.invoke(["persona", "kit", second, "--set", "email=A@example.org"])
    assert result.exit_code == ExitCode.STATE
    assert "another persona already uses this email" in result.stderr
    assert _kit_row(second) is None


@pytest.mark.keyring
def test_secret_from_stdin_then_print_reveal(runner: Any, secret_service: None) -> None:
    persona_id = _new_persona()

    stored = runner.invoke(
        ["persona", "kit", persona_id, "--set-secret", "password", "--set-secret", "totp-seed"],
        input=f"{PASSWORD}\njbsw y3dp ehpk 3pxp\n",
    )
    assert stored.exit_code == 0, stored.stderr
    assert PASSWORD not in _all_output(stored)
    assert "password:    set" in stored.stdout
    assert "totp-seed:   set" in stored.stdout
    assert keyring.get_password("outreach-station", f"kit:{persona_id}:password") == PASSWORD

    shown = runner.invoke(["persona", "kit", persona_id, "--json"])
    assert json.loads(shown.stdout)["secrets"] == {"password": "set", "totp-seed": "set"}
    assert PASSWORD not in _all_output(shown)

    printed = runner.invoke(["persona", "kit", persona_id, "--reveal", "password", "--print"])
    assert printed.exit_code == 0
    assert printed.stdout == f"{PASSWORD}\n"
    assert PASSWORD not in printed.stderr
    assert _events()[-1] == (
        EventName.KIT_SECRET_REVEALED,
        persona_id,
        {"field": "password", "how": "print"},
    )
    assert PASSWORD not in api.audit_log().path.read_text()


@pytest.mark.keyring
def test_empty_stdin_stores_nothing(runner: Any, secret_service: None) -> None:
    persona_id = _new_persona()
    result = runner.invoke(
        ["persona", "kit", persona_id, "--set", "username=x_user", "--set-secret", "password"],
        input="",
    )
    assert result.exit_code == ExitCode.USAGE
    assert "no password on stdin" in result.stderr
    # Inputs are all read before anything is written.
    assert _kit_row(persona_id) is None
    assert keyring.get_password("outreach-station", f"kit:{persona_id}:password") is None


@pytest.mark.keyring
@pytest.mark.usefixtures("no_display")
def test_clipboard_reveal_without_clipboard_suggests_print(
    runner: Any, secret_service: None
) -> None:
    persona_id = _new_persona()
    runner.invoke(["persona", "kit", persona_id, "--set-secret", "password"], input=PASSWORD)
    result = runner.invoke(["persona", "kit", persona_id, "--reveal", "password"])
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert "no clipboard tool found" in result.stderr
    assert "--print" in result.stderr
    assert PASSWORD not in _all_output(result)
    assert [e for e, _, _ in _events()] == [EventName.KIT_UPDATED]


@pytest.mark.keyring
@pytest.mark.headed
def test_clipboard_reveal_for_real(runner: Any, secret_service: None, display: str) -> None:
    if shutil.which("xclip") is None:
        pytest.skip("xclip is not installed (apt-get install xclip)")
    persona_id = _new_persona()
    runner.invoke(["persona", "kit", persona_id, "--set-secret", "password"], input=PASSWORD)

    result = runner.invoke(["persona", "kit", persona_id, "--reveal", "password"])

    assert result.exit_code == 0, result.stderr
    assert PASSWORD not in _all_output(result)
    assert result.stdout == ""
    assert "copied to the clipboard (xclip); it is cleared in 30 seconds" in result.stderr
    tool = clipboard.find_clipboard({"DISPLAY": display})
    assert tool is not None
    assert clipboard.read_clipboard(tool) == PASSWORD.encode()
    assert _events()[-1] == (
        EventName.KIT_SECRET_REVEALED,
        persona_id,
        {"field": "password", "how": "clipboard"},
    )
    # Leave no secret behind; the clearer will then find other content and leave it.
    clipboard.copy_to_clipboard(tool, b"test over")


def test_help_names_exactly_the_kit_fields() -> None:
    from outreach_station.cli import kit as cli_kit

    assert ", ".join(kit.DETAIL_FIELDS) == cli_kit._FIELDS
    assert ", ".join(kit.SECRET_FIELDS) == cli_kit._SECRETS
