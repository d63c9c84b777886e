"""Values a person types, and values read back from storage: checked in, escaped out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, clipboard, kit, paths
from outreach_station.errors import ExitCode, UsageError
from outreach_station.storage.sqlite import SqliteStore as Registry

FP = {"version": 1}
ESC = "\x1b"


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def _new_persona(platform: str = "demo") -> str:
    with Registry(paths.current().registry) as reg:
        return reg.create(platform, fingerprint=FP).id


def _edit_by_hand(sql: str, *args: object) -> None:
    """What someone with sqlite3 and the registry file can do behind station's back."""
    conn = sqlite3.connect(paths.current().registry)
    with conn:
        conn.execute(sql, args)
    conn.close()


def _persona_rows() -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(paths.current().registry)
    rows = conn.execute(
        "SELECT id, label, status, status_reason FROM personas ORDER BY id"
    ).fetchall()
    conn.close()
    return rows


# --- labels -------------------------------------------------------------------

BAD_LABELS = {
    "clear-screen": (f"{ESC}[2J{ESC}[H", "contains control characters"),
    "newline": ("first\nsecond", "contains control characters"),
    "bidi-override": ("abc\u202edcba", "contains invisible or direction-changing characters"),
    "nul": ("a\x00b", "contains control characters"),
    "long": ("x" * 100_000, "longer than 64 characters"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_label_refused_and_nothing_written(runner: Any, isolation: Path, kind: str) -> None:
    label, why = BAD_LABELS[kind]
    result = runner.invoke(["persona", "new", "demo", "--label", label])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        f"station: error: --label {why}; use at most 64 printable characters\n"
    )
    assert ESC not in result.stderr
    assert files_under(isolation) == []


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_label_refused_by_the_core(kind: str) -> None:
    label, _ = BAD_LABELS[kind]
    with pytest.raises(UsageError), Registry(paths.current().registry) as reg:
        reg.create("demo", fingerprint=FP, label=label)
    with pytest.raises(UsageError):
        api.create_persona("demo", label=label)
    assert _persona_rows() == []


def test_printable_label_with_letters_and_emoji_accepted(runner: Any) -> None:
    label = "Malmö, Annas telefon 🙂"
    result = runner.invoke(["persona", "new", "demo", "--label", label])
    assert result.exit_code == 0, result.stderr
    assert [row[1] for row in _persona_rows()] == [label]


# --- what station prints from storage ----------------------------------------

HOSTILE = f"{ESC}[2J{ESC}]0;owned\x07\u202eevil\r"
HOSTILE_SHOWN = "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\x0d"


def test_hand_edited_registry_is_printed_escaped(runner: Any) -> None:
    persona_id = _new_persona()
    _edit_by_hand(
        "UPDATE personas SET label = ?, platform = ? WHERE id = ?", HOSTILE, HOSTILE, persona_id
    )

    for command in (["persona", "list"], ["persona", "show", persona_id]):
        result = runner.invoke(command)
        assert result.exit_code == 0, result.stderr
        assert ESC not in result.stdout and "\x07" not in result.stdout
        assert "\u202e" not in result.stdout and "\r" not in result.stdout
        assert HOSTILE_SHOWN in result.stdout

    # JSON stays exact for scripts, with what a terminal acts on as \u escapes.
    listed = runner.invoke(["persona", "list", "--json"])
    assert "\u202e" not in listed.stdout and ESC not in listed.stdout
    assert json.loads(listed.stdout)[0]["label"] == HOSTILE


def test_hand_edited_kit_is_printed_escaped(runner: Any, no_keyring: None) -> None:
    persona_id = _new_persona()
    assert runner.invoke(["persona", "kit", persona_id, "--set", "username=k7"]).exit_code == 0
    _edit_by_hand("UPDATE kits SET username = ? WHERE persona_id = ?", HOSTILE, persona_id)

    result = runner.invoke(["persona", "kit", persona_id])
    assert result.exit_code == 0, result.stderr
    assert ESC not in result.stdout
    assert f"username:    {HOSTILE_SHOWN}" in result.stdout.splitlines()


def test_error_messages_escape_what_they_quote(runner: Any) -> None:
    persona_id = _new_persona()
    _edit_by_hand("UPDATE personas SET platform = ? WHERE id = ?", f"x{ESC}[2J", persona_id)
    result = runner.invoke(["open", "demo", "--headless", "--persona", persona_id])
    assert result.exit_code == ExitCode.USAGE
    assert ESC not in result.stderr
    assert "\\x1b[2J" in result.stderr


# --- reasons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        (f"suspended{ESC}[2J", "contains control characters"),
        ("line one\nline two", "contains control characters"),
        ("r" * 501, "longer than 500 characters"),
    ],
)
def test_bad_rotate_reason_refused_and_nothing_changed(runner: Any, reason: str, why: str) -> None:
    persona_id = _new_persona()
    before = _persona_rows()
    result = runner.invoke(["rotate", "demo", "--reason", reason])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        f"station: error: --reason {why}; describe it in one line of at most 500 "
        "printable characters\n"
    )
    assert _persona_rows() == before
    assert [row[0] for row in before] == [persona_id]


def test_bad_retire_reason_refused_before_asking(runner: Any) -> None:
    persona_id = _new_persona()
    before = _persona_rows()
    result = runner.invoke(["persona", "retire", persona_id, "--reason", f"gone{ESC}[2J"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "station: error: --reason contains control characters; describe it in one line "
        "of at most 500 printable characters\n"
    )
    assert "Destroy persona" not in result.output
    assert _persona_rows() == before


def test_core_refuses_bad_reason_on_transition() -> None:
    persona_id = _new_persona()
    with pytest.raises(UsageError), Registry(paths.current().registry) as reg:
        reg.transition(persona_id, "blocked", reason=f"x{ESC}[2J")
    assert _persona_rows()[0][2] == "active"


# --- ids and urls on open -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--persona", "../../etc"],
            "malformed persona '../../etc': give its id, the first letters of it, or its "
            "label, as printed by 'station persona list'",
        ),
        (
            ["--url", f"https://example.org/{ESC}[2J"],
            "--url must be an http:// or https:// address of at most 2048 printable "
            "characters without spaces",
        ),
        (
            ["--url", "https://example.org/" + "a" * 3000],
            "--url must be an http:// or https:// address of at most 2048 printable "
            "characters without spaces",
        ),
    ],
)
def test_open_refuses_bad_ids_and_urls_before_writing(
    runner: Any, isolation: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(["open", "demo", "--headless", *args])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == f"station: error: {message}\n"
    assert files_under(isolation) == []


def test_audit_persona_filter_is_checked(runner: Any) -> None:
    result = runner.invoke(["audit", "--persona", f"x{ESC}[2J"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "station: error: --persona contains control characters; give a persona id as "
        "printed by 'station persona list'\n"
    )


# --- proxy: the URL is judged before any prompt ----------------------------------


@pytest.mark.parametrize(
    ("persona", "url", "code", "message"),
    [
        (
            None,
            "http://outreach:hunter2@proxy.example:3128",
            ExitCode.USAGE,
            "proxy: put no password in the URL; passwords go only to the OS keyring, "
            "through the hidden prompt: give 'http://user@host:port' and type the "
            "password when asked",
        ),
        (None, "ftp://outreach@proxy.example:21", ExitCode.USAGE, None),
        (None, "http://outreach@proxy.example", ExitCode.USAGE, None),
        ("../x", "http://outreach@proxy.example:3128", ExitCode.USAGE, None),
        ("aaaaaaaaaaaa", "http://outreach@proxy.example:3128", ExitCode.NOT_FOUND, None),
        (None, f"http://out{ESC}[2Jreach@proxy.example:3128", ExitCode.USAGE, None),
    ],
)
def test_proxy_url_and_persona_checked_before_the_password_prompt(
    runner: Any, persona: str | None, url: str, code: ExitCode, message: str | None
) -> None:
    persona_id = persona or _new_persona()
    result = runner.invoke(["persona", "proxy", persona_id, url], input="typed-password\n")
    assert result.exit_code == code, result.output
    assert "proxy password" not in result.output
    assert "hunter2" not in result.output and "typed-password" not in result.output
    assert ESC not in result.output
    assert len(result.stderr.splitlines()) == 1
    if message is not None:
        assert result.stderr == f"station: error: {message}\n"


def test_proxy_of_a_retired_persona_refused_before_the_prompt(runner: Any) -> None:
    persona_id = _new_persona()
    with Registry(paths.current().registry) as reg:
        reg.transition(persona_id, "retired", reason="test")
    result = runner.invoke(
        ["persona", "proxy", persona_id, "http://outreach@proxy.example:3128"],
        input="typed-password\n",
    )
    assert result.exit_code == ExitCode.STATE
    assert "proxy password" not in result.output
    assert result.stderr == (
        f"station: error: persona {persona_id} is retired; its proxy cannot change\n"
    )


# --- kit: revealing a secret that is not there ------------------------------------


@pytest.mark.keyring
@pytest.mark.usefixtures("no_display")
@pytest.mark.parametrize("field", kit.SECRET_FIELDS)
def test_reveal_of_unset_secret_says_so(runner: Any, secret_service: None, field: str) -> None:
    persona_id = _new_persona()
    for extra in ([], ["--print"]):
        result = runner.invoke(["persona", "kit", persona_id, "--reveal", field, *extra])
        assert result.exit_code == ExitCode.NOT_FOUND
        assert result.stderr == (
            f"station: error: no {field} is stored for persona {persona_id}; set one with "
            f"'station persona kit {persona_id} --set-secret {field}'\n"
        )
        assert result.stdout == ""
    assert list(api.audit_log().records()) == []


@pytest.mark.keyring
@pytest.mark.headed
def test_reveal_of_unset_secret_leaves_the_clipboard_alone(
    runner: Any, secret_service: None, display: str
) -> None:
    persona_id = _new_persona()
    tool = clipboard.find_clipboard({"DISPLAY": display})
    assert tool is not None
    clipboard.copy_to_clipboard(tool, b"what the person copied")
    result = runner.invoke(["persona", "kit", persona_id, "--reveal", "password"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert clipboard.read_clipboard(tool) == b"what the person copied"


def test_what_a_page_reports_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from outreach_station.cli.open import print_findings

    report = {"scopes": {"main": {"user_agent": f"Mozilla{ESC}[2J", "languages": ["sv\u202e"]}}}
    print_findings(report, [])
    shown = capsys.readouterr().out
    assert ESC not in shown and "\u202e" not in shown
    assert "Mozilla\\x1b[2J" in shown and "sv\\u202e" in shown
