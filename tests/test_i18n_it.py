"""What IT and managers read, in Swedish under a Swedish locale and in English otherwise.

`station doctor`, the management report, the demo page (the inspector, in
real headless Chromium), policy and platform-profile errors and the page the
IT policy shows instead of a blocked address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from outreach_station import report
from outreach_station.clock import utcnow
from outreach_station.doctor import MIB, check_disk
from outreach_station.errors import ConfigError, ExitCode, NotFoundError
from outreach_station.inspector import InspectorServer
from outreach_station.lockdown import blocked_page
from outreach_station.platforms import load_catalogue
from outreach_station.policy import validate_policy_file

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")

SWEDISH = "sv_SE.UTF-8"
ENGLISH = "C.UTF-8"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STATION_POLICY", str(tmp_path / "etc" / "no-policy.toml"))


def locale(monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    """The locale a staff laptop has: i18n reads it at each message."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", lang)


# --- doctor ----------------------------------------------------------------------


def test_doctor_speaks_swedish_under_a_swedish_locale(
    runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach_station.cli.doctor import render

    locale(monkeypatch, SWEDISH)
    result = runner.invoke(["doctor", "--quick"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("OK    python ")
    assert any(line[6:].startswith("klocka ") for line in lines), lines
    assert any(line[6:].startswith("granskningslogg ") for line in lines), lines
    assert " ok, " in lines[-1]
    assert lines[-1].endswith(" fel") and " obs, " in lines[-1]
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    # A failing check: its Swedish name, detail and fix, the fix on its own line.
    disk = render((check_disk(100 * MIB, Path("/srv")),), width=80, colour=False)
    # The longer Swedish fix wraps under itself, within 80 columns.
    assert disk == [
        "FEL   disk             0.1 GiB ledigt under /srv",
        "                       åtgärd: frigör diskutrymme: att försegla en profil kräver",
        "                               plats",
    ]
    # --json: keys, check ids and verdicts stay English for scripts; sentences are Swedish.
    findings = json.loads(runner.invoke(["doctor", "--quick", "--json"]).stdout)
    assert set(findings[0]) == {"check", "verdict", "detail", "fix"}
    assert {f["check"] for f in findings} >= {"python", "clock", "audit log", "keyring"}
    assert {f["verdict"] for f in findings} <= {"ok", "warn", "fail"}
    audit = next(f for f in findings if f["check"] == "audit log")
    assert "kedjan hel" in audit["detail"] or audit["verdict"] != "ok"


def test_doctor_is_english_under_the_c_locale(runner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_station.cli.doctor import render

    locale(monkeypatch, ENGLISH)
    lines = runner.invoke(["doctor", "--quick"]).stdout.splitlines()
    assert any(line[6:].startswith("clock ") for line in lines), lines
    assert lines[-1].endswith(" failed") and " warnings, " in lines[-1]
    disk = render((check_disk(100 * MIB, Path("/srv")),), width=80, colour=False)
    assert disk == [
        "FAIL  disk             0.1 GiB free under /srv",
        "                       fix: free disk space: sealing a profile needs room",
    ]


# --- the report ------------------------------------------------------------------


def _figures() -> report.PlatformFigures:
    return report.PlatformFigures(
        platform="alpha",
        personas_created=3,
        blocks=3,
        lifetime=report.LifetimeStats.of((2.0, 10.0, 30.0)),
        histogram=(0, 1, 1, 1, 0, 0, 0),
        blocks_per_month={"2026-01": 3},
        name="Alpha Classifieds",
    )


def _built() -> report.Report:
    fig = _figures()
    return report.Report(
        generated=utcnow(),
        since=None,
        months=("2026-01",),
        platforms=(fig,),
        total=report.PlatformFigures(
            platform=report.ALL_PLATFORMS,
            personas_created=3,
            blocks=3,
            lifetime=fig.lifetime,
            histogram=fig.histogram,
            blocks_per_month=fig.blocks_per_month,
        ),
        block_sources={"audit": 2, "registry": 1},
    )


def test_report_sentences_and_page_are_swedish_under_a_swedish_locale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locale(monkeypatch, SWEDISH)
    assert report.summary(_figures()) == (
        "Alpha Classifieds: 3 personor skapade, 3 blockerade. Hälften av de blockerade "
        "personorna höll mellan 6 och 20 dagar; en typisk höll 10 dagar "
        "(kortast 2 dagar, längst 30 dagar)."
    )
    built = _built()
    text = report.render_text(built)
    assert text.startswith("Personarapport, sedan starten (gjord ")
    assert "Alla plattformar: 3 personor skapade, 3 blockerade." in text
    assert "PLATTFORM" in text and "Blockeringar per månad" in text
    assert "För 1 blockering finns ingen post i granskningsloggen" in text
    page = report.render_html(built)
    assert '<html lang="sv">' in page
    assert "<h2>Kort sagt</h2>" in page and "<th>Skapade personor</th>" in page
    # The platform keeps its own name; --json keeps the English id of the total.
    assert "<td>Alpha Classifieds</td>" in page
    assert built.to_json()["total"]["platform"] == "All platforms"


def test_report_is_english_under_the_c_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    locale(monkeypatch, ENGLISH)
    assert report.summary(_figures()) == (
        "Alpha Classifieds: 3 personas created, 3 blocked. Half of the blocked personas "
        "lasted between 6 and 20 days; a typical one lasted 10 days "
        "(shortest 2 days, longest 30 days)."
    )
    page = report.render_html(_built())
    assert '<html lang="en">' in page and "<h2>In short</h2>" in page


# --- policy, platform profiles, the blocked page ------------------------------------


def test_policy_and_profile_errors_are_swedish_under_a_swedish_locale(
    runner: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[browser]\ndownloads = 0\n", encoding="utf-8")
    locale(monkeypatch, SWEDISH)
    with pytest.raises(ConfigError) as caught:
        validate_policy_file(policy)
    assert str(caught.value) == f"{policy}:2: browser.downloads: väntade true eller false, fick 0"
    result = runner.invoke(["policy", "check", str(policy)])
    assert result.exit_code == ExitCode.CONFIG
    assert "browser.downloads: väntade true eller false, fick 0" in result.stderr
    assert policy.read_text(encoding="utf-8") == "[browser]\ndownloads = 0\n"  # untouched
    with pytest.raises(NotFoundError) as unknown:
        load_catalogue([]).get("facebook")
    assert str(unknown.value) == "okänd plattform 'facebook' (kända plattformar: demo)"
    page = blocked_page("tracker.example", "classifieds")
    assert "<h1>Blockerad av IT:s policy</h1>" in page
    assert "<strong>tracker.example</strong>" in page and "be IT lägga till" in page

    locale(monkeypatch, ENGLISH)
    with pytest.raises(ConfigError) as english:
        validate_policy_file(policy)
    assert str(english.value) == f"{policy}:2: browser.downloads: expected true or false, got 0"
    assert "<h1>Blocked by IT policy</h1>" in blocked_page("tracker.example", "classifieds")


# --- the demo page, in real Chromium --------------------------------------------------


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def _load(pw: Playwright, profile: Path, server: InspectorServer) -> dict[str, Any]:
    context = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        ignore_default_args=["--enable-automation"],
        args=["--no-sandbox", "--no-first-run", "--disable-background-networking"],
        # The persona's browser is Swedish either way: the page follows station's locale.
        locale="sv-SE",
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(server.url)
        page.locator("body[data-ready='1']").wait_for(state="attached", timeout=30_000)
        report_sent = server.wait_for_report(timeout=30)
        return {
            "lang": page.evaluate("document.documentElement.lang"),
            "title": page.title(),
            "heading": page.locator("h1").inner_text(),
            "summary": page.locator("#verdict-summary").inner_text(),
            "status": page.locator("#status").inner_text(),
            "rows": page.locator("#verdict-table tbody th").all_inner_texts(),
            "results": page.locator("#results h2").all_inner_texts(),
            "globals": page.evaluate("Object.getOwnPropertyNames(window).sort()"),
            "languages": report_sent["scopes"]["main"]["languages"],
            "accept_language": report_sent["headers"].get("accept-language"),
            "checks": server.check_report(report_sent),
        }
    finally:
        context.close()


@pytest.mark.browser
@needs_chromium
def test_demo_page_follows_stations_locale(
    pw: Playwright, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Swedish when station starts under a Swedish locale, English under C; the language is
    chosen when the server starts, and a website reads nothing different."""
    locale(monkeypatch, SWEDISH)
    with InspectorServer() as server:
        # Station's locale after the start changes nothing: the page is chosen at start.
        locale(monkeypatch, ENGLISH)
        swedish = _load(pw, tmp_path / "sv", server)
    with InspectorServer() as server:
        english = _load(pw, tmp_path / "en", server)

    assert swedish["lang"] == "sv"
    assert swedish["title"] == "station-inspektören: det här ser en webbplats"
    assert swedish["heading"] == "Det här ser en webbplats av den här personan"
    total = len(swedish["checks"])
    passed = sum(c.ok for c in swedish["checks"])
    assert swedish["summary"] == f"{passed} av {total} kontroller godkända"
    assert swedish["status"].startswith(f"Klart. {passed} av {total} kontroller godkända.")
    assert "tidszon" in swedish["rows"] and "time zone" not in swedish["rows"]
    assert "main insamlad" in swedish["rows"]
    assert "Skärm och fönster" in swedish["results"]

    assert english["lang"] == "en"
    assert english["heading"] == "This is what a website sees of this persona"
    # The same checks, in the same order: only the words differ.
    assert [c.name for c in english["checks"]] == [c.name for c in swedish["checks"]]
    passed = sum(c.ok for c in english["checks"])
    assert english["summary"] == f"{passed} of {total} checks pass"
    assert "time zone" in english["rows"] and "Screen and window" in english["results"]
    # No script global carries station's language, and the browser's own language (what
    # a website reads) is the persona's in both.
    assert swedish["globals"] == english["globals"]
    assert swedish["languages"] == english["languages"] == ["sv-SE"]
    assert swedish["accept_language"] == english["accept_language"]
