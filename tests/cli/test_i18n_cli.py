"""The command line in Swedish under a Swedish locale, and unchanged in English.

typer builds the help when the command line is built, so these run
`station` in a subprocess with the locale set, as a person's shell does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode, UsageError

LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def station(*args: str, lang: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARIABLES}
    env["LANG"] = lang
    env["COLUMNS"] = "80"
    if home is not None:
        env["STATION_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "outreach_station", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "swedish", "english"),
    [
        (
            ["--help"],
            "Organisationens egna, isolerade webbläsarpersonor för uppsökande arbete.",
            "Organisation-owned, isolated browser personas for outreach work.",
        ),
        (
            ["rotate", "--help"],
            "Byt ut en blockerad persona: markera den som blockerad och aktivera en ny.",
            "Replace a blocked persona: mark it blocked and activate a fresh one.",
        ),
        (
            ["persona", "--help"],
            "Skapa och granska personor",
            "Create and inspect personas",
        ),
    ],
    ids=["station", "rotate", "persona"],
)
def test_help_is_swedish_under_a_swedish_locale_and_english_otherwise(
    args: list[str], swedish: str, english: str
) -> None:
    sv = station(*args, lang="sv_SE.UTF-8")
    assert sv.returncode == 0, sv.stderr
    assert sv.stdout.startswith("Användning: station")
    assert swedish in " ".join(sv.stdout.split())
    assert "Flaggor:" in sv.stdout
    assert "Visa den här hjälpen och avsluta." in sv.stdout
    assert "Usage:" not in sv.stdout
    assert english not in " ".join(sv.stdout.split())

    en = station(*args, lang="C.UTF-8")
    assert en.returncode == 0, en.stderr
    assert en.stdout.startswith("Usage: station")
    assert english in " ".join(en.stdout.split())
    assert "Options:" in en.stdout
    assert "Show this message and exit." in en.stdout
    assert "Användning" not in en.stdout


def test_the_group_lists_its_commands_in_swedish() -> None:
    sv = station("--help", lang="sv_SE.UTF-8")
    assert "Kommandon:" in sv.stdout
    # Each command's summary, in Swedish, never cut.
    assert "Byt ut en blockerad persona" in " ".join(sv.stdout.split())
    sv = station("rotate", "--help", lang="sv_SE.UTF-8")
    assert "Argument:" in sv.stdout
    assert "[obligatoriskt]" in sv.stdout
    # click's own placeholders in the usage line too.
    assert sv.stdout.startswith("Användning: station rotate [FLAGGOR] PLATFORM\n")
    group = station("persona", "--help", lang="sv_SE.UTF-8")
    assert group.stdout.startswith("Användning: station persona [FLAGGOR] KOMMANDO [ARGUMENT]...\n")
    english = station("persona", "--help", lang="C.UTF-8")
    assert english.stdout.startswith("Usage: station persona [OPTIONS] COMMAND [ARGS]...\n")


def test_a_usage_error_is_one_swedish_line_with_the_same_exit_code(tmp_path: Path) -> None:
    sv = station("open", "--nope", lang="sv_SE.UTF-8", home=tmp_path)
    assert sv.returncode == 2
    assert sv.stdout == ""
    assert sv.stderr == "station: fel: okänd flagga --nope; 'station open -h' visar hjälpen\n"

    en = station("open", "--nope", lang="C.UTF-8", home=tmp_path)
    assert en.returncode == 2
    assert en.stderr == (
        "Usage: station open [OPTIONS] [PLATFORM]\n"
        "Try 'station open -h' for help.\n\n"
        "Error: No such option: --nope\n"
    )


@pytest.mark.parametrize(
    ("args", "swedish"),
    [
        (["persona", "new"], "station: fel: argumentet 'PLATFORM' saknas; "),
        (
            ["persona", "new", "demo", "--count", "x"],
            "station: fel: ogiltigt värde för '--count': ",
        ),
        (["opn"], "station: fel: det finns inget kommando som heter 'opn' (menade du 'open'?)"),
        (["open", "a", "b"], "station: fel: oväntade argument: b; "),
        (["rotate", "--reason"], "station: fel: flaggan '--reason' behöver ett värde"),
    ],
    ids=["missing", "invalid", "command", "extra", "needs-value"],
)
def test_every_kind_of_usage_error_is_one_swedish_line(
    tmp_path: Path, args: list[str], swedish: str
) -> None:
    sv = station(*args, lang="sv_SE.UTF-8", home=tmp_path)
    assert sv.returncode == 2
    assert sv.stderr.startswith(swedish)
    assert sv.stderr.count("\n") == 1
    assert station(*args, lang="C.UTF-8", home=tmp_path).returncode == 2


def test_a_station_error_is_one_swedish_line_with_the_same_exit_code(tmp_path: Path) -> None:
    sv = station("persona", "show", "nosuchpersona", lang="sv_SE.UTF-8", home=tmp_path)
    assert sv.returncode == ExitCode.NOT_FOUND
    assert sv.stderr == (
        "station: fel: ingen persona matchar 'nosuchpersona'; ange dess id, början av det, "
        "eller dess namn som 'station persona list' skriver ut dem\n"
    )
    en = station("persona", "show", "nosuchpersona", lang="C.UTF-8", home=tmp_path)
    assert en.returncode == ExitCode.NOT_FOUND
    assert en.stderr == (
        "station: error: no persona matches 'nosuchpersona'; give its id, the first letters "
        "of it, or its label as printed by 'station persona list'\n"
    )


def test_a_command_that_succeeds_in_swedish_exits_zero(tmp_path: Path) -> None:
    sv = station("persona", "list", lang="sv_SE.UTF-8", home=tmp_path)
    assert (sv.returncode, sv.stdout) == (
        0,
        "inga personor ännu; 'station persona new PLATFORM' skapar en\n",
    )
    version = station("--version", lang="sv_SE.UTF-8", home=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("station ")


def test_help_in_english_loads_no_catalogue() -> None:
    # The catalogue is read only for Swedish: English start-up stays as fast as before.
    code = (
        "import sys; sys.argv = ['station', '--help']\n"
        "from outreach_station.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('outreach_station.i18n' in sys.modules, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARIABLES}
    for lang, loaded in (("C.UTF-8", "False"), ("sv_SE.UTF-8", "True")):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={**env, "LANG": lang},
        )
        assert result.stderr.strip() == loaded, lang


def test_core_messages_of_the_edge_follow_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_station import ids, values

    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    with pytest.raises(UsageError, match=r"^felaktigt plattforms-id '\.\./x': använd bokstäver"):
        ids.platform_id("../x")
    with pytest.raises(UsageError, match=r"^--label innehåller styrtecken; använd högst 64"):
        values.validate_label("a\x1bb")
    monkeypatch.setenv("LANG", "C.UTF-8")
    with pytest.raises(UsageError, match=r"^malformed platform id '\.\./x': use letters"):
        ids.platform_id("../x")
    with pytest.raises(UsageError, match=r"^--label contains control characters; use at most 64"):
        values.validate_label("a\x1bb")


@pytest.mark.keyring
def test_rotate_asks_and_answers_in_swedish(
    runner: Any, monkeypatch: pytest.MonkeyPatch, isolation: Path
) -> None:
    from outreach_station import api, kit
    from outreach_station.cli import lifecycle as cli_lifecycle

    monkeypatch.setattr(cli_lifecycle, "is_terminal", lambda: True)  # a person at a terminal
    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    active = api.create_persona("demo", label="Anna").id
    standby = api.create_persona("demo", standby=True).id
    kit.update_kit(active, {"username": "anna.outreach"})

    declined = runner.invoke(["rotate", "demo", "--reason", "typo"], input="n\n")
    assert declined.exit_code == 1
    assert f"  blockerar persona {active} (Anna), användarnamn i kitet: anna.outreach" in (
        declined.stderr
    )
    assert "Rotera nu?" in declined.stderr
    assert declined.stderr.endswith("Avbrutet!\n")
    assert api.get_persona(active).status == "active"

    # Swedish answers: "x" is asked again, "j" (ja) is yes.
    done = runner.invoke(["rotate", "demo"], input="kontot avstängt\nx\nj\n")
    assert done.exit_code == 0, done.stderr
    assert "Orsak, för loggen (inga personuppgifter)" in done.stderr
    assert done.stderr.count("Rotera nu? [j/N]:") == 2
    assert "Svara j (ja) eller n (nej).\n" in done.stderr
    # CliRunner echoes the typed answers to stdout first.
    assert done.stdout.splitlines()[-4:] == [
        f"demo: persona {active} (Anna) markerad som blockerad (kontot avstängt)",
        f"demo: persona {standby} är nu aktiv (var reservpersona)",
        "blev det fel? station rotate demo --undo",
        "nästa steg: station open demo",
    ]
    shown = runner.invoke(["persona", "show", active])
    # The labels are padded to the longest Swedish one ("senast öppnad:").
    assert "status:         blockerad\n" in shown.stdout
    assert "orsak:          kontot avstängt\n" in shown.stdout
    assert "senast öppnad:  aldrig\n" in shown.stdout


@pytest.mark.keyring
def test_rotates_default_reason_is_offered_in_swedish_and_recorded_in_english(
    runner: Any, monkeypatch: pytest.MonkeyPatch, isolation: Path
) -> None:
    from outreach_station import api
    from outreach_station.cli import lifecycle as cli_lifecycle

    monkeypatch.setattr(cli_lifecycle, "is_terminal", lambda: True)
    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    active = api.create_persona("demo", label="Anna").id
    api.create_persona("demo", standby=True)

    # Enter takes the offered default.
    done = runner.invoke(["rotate", "demo"], input="\nj\n")

    assert done.exit_code == 0, done.stderr
    assert "Orsak, för loggen (inga personuppgifter) [blockerad av plattformen]:" in done.stderr
    assert "blocked by the platform" not in done.stderr + done.stdout
    assert f"demo: persona {active} (Anna) markerad som blockerad (blockerad av plattformen)" in (
        done.stdout
    )
    # The record keeps station's own English reason, which persona show translates.
    assert api.get_persona(active).status_reason == "blocked by the platform"


@pytest.mark.keyring
def test_persona_show_gives_stations_own_reasons_and_the_fingerprint_in_swedish(
    runner: Any, monkeypatch: pytest.MonkeyPatch, isolation: Path
) -> None:
    from outreach_station import api

    active = api.create_persona("demo", label="Anna").id
    api.create_persona("demo", standby=True)
    assert runner.invoke(["rotate", "demo", "--yes", "--reason", "typo"]).exit_code == 0
    assert runner.invoke(["rotate", "demo", "--undo", "--yes"]).exit_code == 0
    english = runner.invoke(["persona", "show", active])
    assert re.search(r"^reason: +rotation undone$", english.stdout, re.M)
    assert re.search(r"\d+ CPUs?, \d+ font famil", english.stdout)
    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    shown = runner.invoke(["persona", "show", active])
    assert "orsak:          rotationen ångrades\n" in shown.stdout
    assert re.search(r"\d+ processorer?, \d+ typsnittsfamilj", shown.stdout)
    assert "CPUs" not in shown.stdout and "font famil" not in shown.stdout
    # The stored reason stays the English data; only the reading is translated.
    assert api.get_persona(active).status_reason == "rotation undone"
