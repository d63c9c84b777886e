"""The persona's name and colour in the browser's own frame, and nowhere a page can read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outreach_station.appearance import platform_colour

pytestmark = pytest.mark.browser

PAGE = "data:text/html,<title>Probe page</title><iframe srcdoc='<p>frame</p>'></iframe>"
ROOT = Path(__file__).resolve().parents[2]
LABEL = "Vera Lind"
PLATFORM = "Example Classifieds"


def probe(tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.browser.window_probe", "station", PAGE, str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


def test_window_names_the_persona_and_no_page_frame_or_worker_can_tell(
    display: str, tmp_path: Path
) -> None:
    named = probe(tmp_path, "named", LABEL, PLATFORM)
    bare = probe(tmp_path, "bare")
    # The person sees the label and the platform in the window's title...
    assert f"{LABEL} \u00b7 {PLATFORM}" in named["windows"], named["windows"]
    # ...and the platform's colour in the frame (Chromium's own theme colour).
    theme = named["preferences"]["browser"]["theme"]
    assert theme["user_color"] == platform_colour("example-classifieds").argb
    assert named["preferences"]["profile"]["name"] == f"{LABEL} \u00b7 {PLATFORM}"
    # A page, its frame and its worker see exactly what they see of a
    # persona with no name and no colour: title, window.name, navigator,
    # media queries (colour scheme, contrast, forced colours), CSS system
    # colours and a form control's accent colour.
    for scope in ("page", "iframe", "worker"):
        assert named[scope] == bare[scope], scope
        assert LABEL.lower() not in json.dumps(named[scope]).lower(), scope
        assert "vera" not in json.dumps(named[scope]).lower(), scope


def test_a_window_opened_later_has_the_colour_but_chromium_gives_it_no_name(
    display: str, tmp_path: Path
) -> None:
    """The limit README and docs/it-deployment.md state, measured: Ctrl+N's window is unnamed.

    Chromium 156 gives a window its own title only where it creates it at
    start (`--window-name`), at session or tab restore, or from the person's
    own "Name window..." menu; a window opened later (Ctrl+N, a link opening
    a window) takes the page's title, and the profile's name reaches only the
    title screen readers hear. No switch, preference or managed policy names
    it. If this fails because every window is named, Chromium has learnt to:
    say so in the docs and in appearance.window_switches.
    """
    seen = probe(tmp_path, "ctrl-n", LABEL, PLATFORM, "new-window")
    windows = seen["all_windows"]
    # The first window and the one the person's Ctrl+N opened.
    assert len(windows) == 2, windows
    named = [name for name in windows if f"{LABEL} \u00b7 {PLATFORM}" in name]
    assert len(named) == 1, windows
    # The colour is the profile's, so it reaches every window the profile opens.
    assert seen["preferences"]["browser"]["theme"]["user_color"] == (
        platform_colour("example-classifieds").argb
    )
