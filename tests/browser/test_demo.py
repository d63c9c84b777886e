"""The built-in demo platform works with no configuration at all."""

from __future__ import annotations

import re
import signal
import subprocess
from typing import Any

import pytest

from outreach_station import api
from outreach_station.fingerprint import Fingerprint
from outreach_station.inspector.checks import Check
from tests.browser.test_open import start_station, wait_open

pytestmark = pytest.mark.browser


def read_findings(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return lines
    raise AssertionError("\n".join(lines))


def test_headless_demo_prints_what_a_website_sees() -> None:
    proc = start_station("open", "demo", "--headless")
    try:
        opened = "".join(wait_open(proc))
        assert "created persona" in opened
        assert re.search(r"open at http://127\.0\.0\.1:\d+/ \(headless", opened)
        findings = read_findings(proc)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    text = "\n".join(findings)
    assert findings[0] == "What a website sees of this persona:"
    assert "languages:        sv-SE, sv, en-US, en" in text
    assert "time zone:        Europe/Stockholm" in text
    assert "webdriver:        False" in text
    assert "HeadlessChrome" not in text
    match = re.search(r"Coherence checks: (\d+) of (\d+) pass", text)
    assert match and match.group(1) == match.group(2), text
    assert "FAIL" not in text


# The verdict table as the page renders it: each row's four cells, as text.
ROWS = "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"


def demo_page_verdicts(persona_id: str, *, headless: bool = True) -> dict[str, Any]:
    """Open the demo for the persona, as `station open demo` does, and read what its page shows."""
    seen: dict[str, Any] = {}

    async def read_page(_context: Any, page: Any) -> None:
        await page.locator("body[data-ready='1']").wait_for(state="attached", timeout=30_000)
        seen["summary"] = await page.locator("#verdict-summary").inner_text()
        seen["status"] = await page.locator("#status").inner_text()
        seen["rows"] = await page.locator("#verdict-table tbody tr").evaluate_all(ROWS)

    api.open_platform(
        "demo", persona_id=persona_id, headless=headless, hook=read_page, close_after_hook=True
    )
    return seen


def as_rows(checks: list[Check]) -> list[list[str]]:
    """`station check`'s checks as the page lists them: failures first, otherwise in order."""
    rows = [[c.name, "pass" if c.ok else "FAIL", c.expected, c.seen] for c in checks]
    return sorted(rows, key=lambda row: row[1] == "pass")


def test_demo_page_shows_the_verdicts_of_station_check(secret_service: None) -> None:
    persona = api.create_persona("demo")
    page = demo_page_verdicts(persona.id)
    checks = api.check_persona(persona.id).checks

    # Same checks, same verdicts, in the same order, persona checks included.
    assert [row[:2] for row in page["rows"]] == [row[:2] for row in as_rows(checks)]
    assert {"fonts are the persona's", "user agent", "screen size"} <= {c.name for c in checks}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert page["summary"] == f"{len(checks)} of {len(checks)} checks pass"
    assert page["status"].startswith(f"Done. {len(checks)} of {len(checks)} checks pass.")


def test_demo_page_shows_a_font_the_browser_cannot_show_as_failed(secret_service: None) -> None:
    persona = api.create_persona("demo")
    claimed = sorted([*Fingerprint.from_dict(persona.fingerprint).fonts, "Nonexistent Sans"])
    with api.registry() as reg:
        reg.set_fingerprint(persona.id, {**persona.fingerprint, "fonts": claimed})

    page = demo_page_verdicts(persona.id)
    checks = api.check_persona(persona.id).checks

    failed = [c for c in checks if not c.ok]
    assert [c.name for c in failed] == ["fonts are the persona's"]
    # The failure comes first on the page, with the same expected and seen text.
    name, result, expected, seen = page["rows"][0]
    assert (name, result) == ("fonts are the persona's", "FAIL")
    assert "Nonexistent Sans" in expected
    assert expected == failed[0].expected
    assert seen == failed[0].seen == "main: missing: Nonexistent Sans"
    assert [row[:2] for row in page["rows"]] == [row[:2] for row in as_rows(checks)]
    assert page["summary"] == f"{len(checks) - 1} of {len(checks)} checks pass"


@pytest.mark.headed
def test_headed_demo_page_passes_every_check_in_the_real_window(
    secret_service: None, display: str
) -> None:
    """Headed, the page has the real window: the checks hold it to the screen, not the viewport."""
    persona = api.create_persona("demo")
    fp = persona.fingerprint
    # Larger than the 1920x1080 test display: the window is fitted to the display.
    chrome_ui = fp["screen_height"] - fp["viewport_height"]
    big = {"screen_width": 2560, "screen_height": 1440, "avail_width": 2560, "avail_height": 1440}
    with api.registry() as reg:
        reg.set_fingerprint(
            persona.id,
            {**fp, **big, "viewport_width": 2560, "viewport_height": 1440 - chrome_ui},
        )
    page = demo_page_verdicts(persona.id, headless=False)
    failed = [row for row in page["rows"] if row[1] != "pass"]
    assert failed == []
    window = next(row for row in page["rows"] if row[0] == "window size")
    assert window[2] == "<= 2560x1440"
    assert page["summary"].endswith("checks pass") and not failed
