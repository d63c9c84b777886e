"""Desktop launchers: real desktop entries (checked by desktop-file-validate), and a
launcher's failure shown by a real notification daemon (dunst) on a private session bus."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from outreach_station import desktop
from outreach_station.appearance import platform_colour
from outreach_station.errors import ExitCode
from outreach_station.platforms import demo_profile
from tests.fixtures import install_policy


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def test_install_writes_a_valid_launcher_and_icon_per_allowed_platform(
    runner: Any, system_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    result = runner.invoke(["desktop", "install", "--json"])
    assert result.exit_code == 0, result.stderr
    platforms = {row["platform"] for row in __import__("json").loads(result.stdout)}
    assert "demo" in platforms and "example-classifieds" in platforms

    entry_path = data / "applications" / "outreach-station-demo.desktop"
    entry = _entry(entry_path)
    assert entry["Name"] == demo_profile().name
    assert entry["Terminal"] == "false"
    assert entry["Exec"] == f"{sys.executable} -m outreach_station.desktop open demo"
    icon = Path(entry["Icon"])
    assert icon.read_text().count(platform_colour("demo").hex) == 1
    assert entry_path.stat().st_mode & stat.S_IXUSR  # desktops run trusted entries only
    if shutil.which("desktop-file-validate"):
        checked = subprocess.run(
            ["desktop-file-validate", str(entry_path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # IT narrows the platforms: installing again removes the launchers of the others.
    install_policy(system_policy, '[platforms]\nallowed = ["demo"]\n')
    again = runner.invoke(["desktop", "install"])
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in (data / "applications").iterdir()) == [
        "outreach-station-demo.desktop"
    ]
    assert sorted(p.name for p in icon.parent.iterdir()) == ["outreach-station-demo.svg"]

    removed = runner.invoke(["desktop", "remove"])
    assert removed.exit_code == 0
    assert "removed 1 launcher(s): demo" in removed.stderr
    assert list((data / "applications").iterdir()) == []


def test_exec_quotes_a_path_with_spaces_and_percent(tmp_path: Path) -> None:
    text = desktop.entry_text(
        demo_profile(), python="/opt/my station/bin/py%thon", icon=tmp_path / "i.svg"
    )
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line == 'Exec="/opt/my station/bin/py%%thon" -m outreach_station.desktop open demo'


DUNSTRC = """
[global]
    font = Monospace 8
[station]
    appname = "Outreach station"
    script = {script}
"""


@pytest.mark.skipif(shutil.which("dunst") is None, reason="dunst is not installed")
def test_a_failing_launcher_shows_the_error_as_a_notification(display: str, tmp_path: Path) -> None:
    seen = tmp_path / "notifications"
    script = tmp_path / "log.sh"
    # dunst runs this for every notification of the rule: appname summary body icon urgency.
    script.write_text(f'#!/bin/sh\nprintf "%s|%s|%s|%s\\n" "$1" "$2" "$3" "$5" >> {seen}\n')
    script.chmod(0o755)
    rc = tmp_path / "dunstrc"
    rc.write_text(DUNSTRC.format(script=script))
    code = textwrap.dedent(
        f"""
        dunst -config {rc} >/dev/null 2>&1 &
        # NameHasOwner, not a call to the name: that would D-Bus-activate another
        # dunst (without this rule) that could take the name before this one.
        for i in $(seq 300); do
            gdbus call --session --dest org.freedesktop.DBus \\
                --object-path /org/freedesktop/DBus \\
                --method org.freedesktop.DBus.NameHasOwner org.freedesktop.Notifications \\
                2>/dev/null | grep -q true && break
            sleep 0.1
        done
        {sys.executable} -m outreach_station.desktop open nosuch
        echo "launcher=$?"
        for i in $(seq 300); do [ -s {seen} ] && break; sleep 0.1; done
        kill %1
        """
    )
    done = subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DISPLAY": display},
    )
    assert f"launcher={int(ExitCode.NOT_FOUND)}" in done.stdout, done.stdout + done.stderr
    deadline = time.monotonic() + 5
    while not seen.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    (line,) = seen.read_text().splitlines()
    app, summary, body, urgency = line.split("|")
    assert (app, summary, urgency) == ("Outreach station", "Could not open nosuch", "CRITICAL")
    assert body.startswith("unknown platform 'nosuch' (known platforms: demo")
