"""`station report` through the root app, on a history written with an injected clock."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import kit, paths
from outreach_station.errors import ExitCode
from outreach_station.storage.sqlite import SqliteStore as Registry
from tests.fixtures import Clock, station_argv

FP = {"version": 1}
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def ids(clock: Clock) -> list[str]:
    """demo: blocked after 2, 10 and 30 days; other: one active persona."""
    clock.now = START
    made: list[str] = []
    with Registry(paths.current().registry, clock=clock) as reg:
        for number, days in enumerate((2, 10, 30)):
            clock.now = START + timedelta(days=31 * number)
            persona = reg.create(
                "demo", fingerprint=FP, label=f"Secret-Label-{number}", standby=True
            )
            made.append(persona.id)
            kit.update_kit(persona.id, {"email": f"hidden{number}@example.org"}, registry=reg)
            clock.now += timedelta(days=days)
            reg.transition(persona.id, "blocked", reason="Secret reason")
        clock.now = START
        made.append(reg.create("other", fingerprint=FP, label="Secret-Label-x").id)
    return made


def _leaks(text: str, ids: list[str]) -> list[str]:
    found = [pid for pid in ids if pid in text]
    return found + [w for w in ("Secret", "hidden", "example.org") if w in text]


def test_text_report(runner: Any, ids: list[str]) -> None:
    result = runner.invoke(["report"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # The demo platform is named as its profile names it; "other" has no profile.
    demo = next(line for line in lines if line.startswith("Demo: what a website"))
    assert demo.endswith(
        "3 personas created, 3 blocked. Half of the blocked personas lasted "
        "between 6 and 20 days; a typical one lasted 10 days (shortest 2 days, "
        "longest 30 days)."
    )
    assert "other: 1 persona created, none blocked." in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines if line}
    assert rows["other"] == ["1", "0", "-", "-", "-", "-"]
    assert rows["2026-01"][:2] == ["1", "0"]
    assert _leaks(result.stdout, ids) == []


def test_json_report_and_since(runner: Any, ids: list[str]) -> None:
    data = json.loads(runner.invoke(["report", "--json"]).stdout)
    demo = next(p for p in data["platforms"] if p["platform"] == "demo")
    assert demo["lifetime_days"]["median"] == 10.0
    assert demo["blocks"] == 3
    assert data["total"]["personas_created"] == 4
    assert data["block_time_sources"] == {"audit": 0, "registry": 3}
    assert _leaks(json.dumps(data), ids) == []

    later = json.loads(runner.invoke(["report", "--json", "--since", "2026-02-01"]).stdout)
    demo = next(p for p in later["platforms"] if p["platform"] == "demo")
    assert (demo["personas_created"], demo["blocks"], demo["lifetime_days"]["median"]) == (
        2,
        2,
        20.0,
    )
    assert later["since"].startswith("2026-0")


def test_html_file_written_once_then_forced(runner: Any, ids: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()

    result = runner.invoke(["report", "--html", str(target)])
    assert result.exit_code == 0, result.stderr
    assert f"wrote {target}" in result.stderr
    page = target.read_text(encoding="utf-8")
    assert "<svg" in page
    assert "http" not in page.lower()
    assert "src=" not in page.lower()
    assert _leaks(page, ids) == []

    target.write_text("kept", encoding="utf-8")
    again = runner.invoke(["report", "--html", str(target)])
    assert again.exit_code == ExitCode.USAGE
    assert "already exists; add --force" in again.stderr
    assert target.read_text(encoding="utf-8") == "kept"

    forced = runner.invoke(["report", "--html", str(target), "--force"])
    assert forced.exit_code == 0
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_report_usage_errors(runner: Any) -> None:
    forced = runner.invoke(["report", "--force"])
    assert forced.exit_code == ExitCode.USAGE
    assert "--force only applies to --html" in forced.stderr
    bad = runner.invoke(["report", "--since", "last tuesday"])
    assert bad.exit_code == ExitCode.USAGE
    assert "cannot read 'last tuesday' as a date" in bad.stderr


def test_empty_report(runner: Any) -> None:
    result = runner.invoke(["report"])
    assert result.exit_code == 0
    assert "no personas yet" in result.stdout


def test_open_shows_the_page_in_the_default_browser_over_loopback(
    ids: list[str], tmp_path: Path
) -> None:
    """`--open` serves the page on 127.0.0.1 to the desktop's browser (here a real
    headless Chromium that $BROWSER names), because file:// is blocked on locked laptops."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    dumped = tmp_path / "seen.html"
    asked = tmp_path / "asked-url"
    sandbox = "--no-sandbox" if os.geteuid() == 0 else ""
    opener = tmp_path / "browser.sh"
    opener.write_text(
        "#!/bin/sh\n"
        f'printf %s "$1" > {asked}\n'
        f"({chromium} --headless {sandbox} --user-data-dir={tmp_path}/chromium "
        f'--dump-dom "$1" > {dumped}.part 2>/dev/null; mv {dumped}.part {dumped}) &\n'
    )
    opener.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{opener} %s"}
    child = subprocess.Popen(
        station_argv("report", "--open"),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not dumped.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert dumped.exists(), "the browser never received the page"
        url = asked.read_text()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/[\w-]{20,}/report\.html", url), url
        page = dumped.read_text()
        assert "Demo: what a website sees of this persona: 3 personas created" in page
        assert _leaks(page, ids) == []
        # Only that one address answers.
        other = url.rsplit("/", 2)[0] + "/guess/report.html"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(other, timeout=10)
        assert missing.value.code == 404
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"the report is open in your web browser at {url}" in err
    assert "press Ctrl+C here when you have read it" in err
    assert "Traceback" not in err
    assert out == ""
    # Served no longer once stopped.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_open_with_json_is_refused(runner: Any) -> None:
    result = runner.invoke(["report", "--open", "--json"])
    assert result.exit_code == ExitCode.USAGE
    assert "--open shows the page in a browser; leave out --json" in result.stderr
    assert result.stdout == ""
