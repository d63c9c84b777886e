"""The core's messages in Swedish under a Swedish locale, and unchanged English otherwise.

Each test runs real code (a real station home, registry, audit log and
keyring) once as a Swedish social worker's laptop would (`LANG=sv_SE.UTF-8`)
and once under `LANG=C.UTF-8`, and asserts the words a person reads.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from outreach_station import fsutil, kit, lifecycle, network, rotation, session
from outreach_station.audit import default_log
from outreach_station.browser import SessionOutcome
from outreach_station.errors import (
    BusyError,
    EnvironmentProblem,
    SecurityError,
    StateError,
    UsageError,
    os_error_problem,
)
from outreach_station.personas import Persona

SWEDISH = "sv_SE.UTF-8"
ENGLISH = "C.UTF-8"


@pytest.fixture
def speak(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Set the locale as a login session would; i18n reads it at each call."""

    def set_locale(lang: str) -> None:
        for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("LANG", lang)

    return set_locale


def _result(
    persona: Persona, outcome: SessionOutcome, closed_for: str | None = None
) -> session.OpenResult:
    return session.OpenResult(
        persona=persona, created=False, outcome=outcome, closed_for=closed_for
    )


@pytest.mark.keyring
def test_closing_words_say_who_ended_the_session_in_swedish(
    speak: Callable[[str], None],
) -> None:
    persona = lifecycle.create_persona("demo")
    window = _result(persona, SessionOutcome(ended_by="window-closed"))
    rotated = _result(persona, SessionOutcome(ended_by="signal", signal_name="SIGTERM"), "rotate")
    idle = _result(persona, SessionOutcome(ended_by="idle-limit"))
    ctrl_c = _result(persona, SessionOutcome(ended_by="signal", signal_name="SIGINT"))

    speak(SWEDISH)
    assert session.closing_words(window) == "du stängde fönstret"
    assert session.closing_words(rotated) == (
        "station rotate bytte ut den här personan från en annan terminal"
    )
    assert session.closing_words(idle) == "den användes inte under den tid som IT tillåter"
    assert session.closing_words(ctrl_c) == "du tryckte på Ctrl-C"

    speak(ENGLISH)
    assert session.closing_words(window) == "you closed the window"
    assert session.closing_words(rotated) == (
        "station rotate replaced this persona, from another terminal"
    )
    assert session.closing_words(ctrl_c) == "you pressed Ctrl-C"


def test_the_start_page_problem_is_plain_swedish_with_chromiums_code_kept(
    speak: Callable[[str], None],
) -> None:
    error = "page.goto: net::ERR_NAME_NOT_RESOLVED at https://www.example.invalid/"
    speak(SWEDISH)
    assert session.start_page_problem(error) == (
        "adressen hittades inte (inget internet, eller fel adress) (ERR_NAME_NOT_RESOLVED)"
    )
    # A code station has no words for still says the page did not load, and keeps the code.
    assert session.start_page_problem("net::ERR_SOMETHING_NEW") == (
        "sidan laddades inte (ERR_SOMETHING_NEW)"
    )
    assert session.start_page_problem("Timeout 30000ms exceeded") == "sidan laddades inte"

    speak(ENGLISH)
    assert session.start_page_problem(error) == (
        "the address was not found (no internet, or a wrong address) (ERR_NAME_NOT_RESOLVED)"
    )


@pytest.mark.keyring
def test_the_open_line_a_staff_member_reads_is_swedish_without_english_fragments(
    speak: Callable[[str], None],
) -> None:
    persona = lifecycle.create_persona("demo")
    lines: list[str] = []
    error = "net::ERR_INTERNET_DISCONNECTED"

    speak(SWEDISH)
    session._announce_open(lines.append, persona, "about:blank", error, headless=False)
    session._announce_open(lines.append, persona, "https://example.org/", None, headless=True)
    assert lines == [
        f"personan {persona.id} är öppen och säker, men startsidan gick inte att nå: "
        "det finns ingen internetanslutning (ERR_INTERNET_DISCONNECTED); "
        "försök igen i webbläsaren (stäng fönstret för att avsluta)",
        f"personan {persona.id} är öppen på https://example.org/ "
        "(utan fönster; tryck Ctrl-C för att avsluta)",
    ]

    lines.clear()
    speak(ENGLISH)
    session._announce_open(lines.append, persona, "about:blank", None, headless=False)
    assert lines == [f"persona {persona.id} open at about:blank (close the window to end)"]


@pytest.mark.keyring
def test_a_refused_rotation_is_explained_in_swedish_and_changes_nothing(
    speak: Callable[[str], None],
) -> None:
    lifecycle.create_persona("demo")
    first = lifecycle.rotate("demo")
    records = len(default_log().records())

    speak(SWEDISH)
    with pytest.raises(BusyError) as swedish:
        lifecycle.rotate("demo")
    assert swedish.value.message == (
        f"plattformen demo roterades nyss; personan {first.active.id} är den nya och lämnades "
        "orörd. Om även den är blockerad, kör igen med --force"
    )
    speak(ENGLISH)
    with pytest.raises(BusyError) as english:
        lifecycle.rotate("demo")
    assert english.value.message.startswith("platform demo was rotated moments ago; persona ")

    assert lifecycle.get_persona(first.active.id).status == "active"
    assert len(default_log().records()) == records


@pytest.mark.keyring
def test_refusals_of_undo_and_of_a_blocked_personas_fingerprint_are_swedish(
    speak: Callable[[str], None],
) -> None:
    persona = lifecycle.create_persona("demo")
    speak(SWEDISH)
    with pytest.raises(StateError) as undo:
        rotation.undo("demo")
    assert undo.value.message == (
        "plattformen demo har ingen rotation att ångra: dess aktiva persona kom inte in "
        "genom en rotation som blockerade en annan"
    )
    blocked = lifecycle.rotate("demo").blocked
    assert blocked is not None and blocked.id == persona.id
    with pytest.raises(StateError) as refresh:
        lifecycle.refresh_fingerprint(persona.id)
    assert refresh.value.message == (
        f"personan {persona.id} har status blocked; dess fingeravtryck ändras inte"
    )
    assert lifecycle.get_persona(persona.id).fingerprint == persona.fingerprint

    speak(ENGLISH)
    with pytest.raises(StateError) as english:
        lifecycle.refresh_fingerprint(persona.id)
    assert english.value.message == f"persona {persona.id} is blocked; its fingerprint stays"


@pytest.mark.keyring
def test_a_card_number_in_the_kit_is_refused_in_swedish_and_nothing_is_written(
    speak: Callable[[str], None],
) -> None:
    persona = lifecycle.create_persona("demo")
    kit.update_kit(persona.id, {"username": "keep-me"})
    before = kit.get_kit(persona.id)

    speak(SWEDISH)
    with pytest.raises(UsageError) as swedish:
        kit.update_kit(persona.id, {"username": "someone", "card-label": "4111 1111 1111 1111"})
    assert swedish.value.message == (
        "card-label: nekades, det innehåller något som ser ut som ett fullständigt kortnummer "
        "(12 siffror eller fler). Station sparar aldrig kortnummer: ange kortets interna namn "
        "med card-label och dess fyra sista siffror med card-last4. Inget sparades."
    )
    assert "4111" not in swedish.value.message
    assert kit.get_kit(persona.id) == before

    speak(ENGLISH)
    with pytest.raises(UsageError) as english:
        kit.update_kit(persona.id, {"card-label": "4111 1111 1111 1111"})
    assert "looks like a full payment card number" in english.value.message
    assert english.value.message.endswith("Nothing was written.")
    assert kit.get_kit(persona.id) == before


def test_a_read_only_or_full_disk_is_one_swedish_line(
    speak: Callable[[str], None], tmp_path: Path
) -> None:
    target = str(tmp_path / "registry.sqlite3")
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), target)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    speak(SWEDISH)
    assert os_error_problem(read_only).message == (
        f"kan inte skriva {target}: filsystemet är skrivskyddat; station behöver en skrivbar "
        "STATION_HOME (montera den skrivbar eller låt STATION_HOME peka någon annanstans)"
    )
    assert os_error_problem(full).message == (
        f"disken är full: kan inte skriva {target}; frigör lite utrymme och försök sedan igen"
    )

    speak(ENGLISH)
    assert os_error_problem(read_only).message == (
        f"cannot write {target}: read-only file system; station needs a writable "
        "STATION_HOME (remount it read-write or point STATION_HOME elsewhere)"
    )


def test_fsutil_refuses_a_symlinked_directory_in_swedish(
    speak: Callable[[str], None], tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)

    speak(SWEDISH)
    with pytest.raises(SecurityError) as swedish:
        fsutil.check_private_dir(link)
    assert swedish.value.message == (
        f"{link} är en symbolisk länk; station sparar inga filer där: ta bort den"
    )
    with pytest.raises(EnvironmentProblem) as missing:
        fsutil.check_private_dir(tmp_path / "gone")
    assert missing.value.message.startswith(f"kan inte undersöka {tmp_path / 'gone'}: ")

    speak(ENGLISH)
    with pytest.raises(SecurityError) as english:
        fsutil.check_private_dir(link)
    assert english.value.message == (
        f"{link} is a symbolic link; refusing to keep station files there: remove it"
    )


def test_a_bad_proxy_url_is_refused_in_swedish(speak: Callable[[str], None]) -> None:
    speak(SWEDISH)
    with pytest.raises(UsageError) as swedish:
        network.parse_proxy_url("ftp://host:21")
    assert swedish.value.message == (
        "proxy: schemat måste vara http, socks5 eller socks5h, fick 'ftp'"
    )
    assert network.parse_proxy_url("socks5://host:1080").describe() == (
        "socks5://host:1080 (angiven för personan)"
    )
    speak(ENGLISH)
    assert network.parse_proxy_url("socks5://host:1080").describe() == (
        "socks5://host:1080 (set on the persona)"
    )
