"""The built-in demo platform works with no configuration at all."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

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
