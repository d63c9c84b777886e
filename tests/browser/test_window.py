"""What the person at the keyboard sees of station's window, headed, against a plain Chromium.

Each window is opened in a child process (tests/browser/window_probe.py);
where a managed Chromium policy is needed it is put in place only inside
that child's private mount namespace, never on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outreach_station.lockdown import render_managed_policy
from outreach_station.policy import Policy

pytestmark = pytest.mark.browser

PAGE = "data:text/html,<title>Probe page</title><iframe srcdoc='<p>frame</p>'></iframe>"
ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = Path("/etc/chromium")
# Only what makes Chromium keep its warning bars for command-line flags to
# itself, so that a plain Chromium run as root (--no-sandbox) shows none either.
NO_FLAG_WARNINGS = json.dumps({"CommandLineFlagSecurityWarningsEnabled": False})
# Chromium's bars (the flag warning, "controlled by automated test software")
# are 56 px; a few pixels either way is the frame's own rounding.
SAME_CHROME_PX = 8


def probe(tmp_path: Path, mode: str, *extra: str, policy: str | None = None) -> dict[str, Any]:
    out = tmp_path / f"{mode}-{len(list(tmp_path.iterdir()))}.json"
    argv = [sys.executable, "-m", "tests.browser.window_probe", mode, PAGE, str(out), *extra]
    if policy is not None:
        policy_file = tmp_path / f"policy-{out.stem}.json"
        policy_file.write_text(policy)
        # A tmpfs over /etc/chromium in the child's own mount namespace: the
        # policy exists for that child alone.
        setup = (
            f"mount -t tmpfs tmpfs {POLICY_DIR} && mkdir -p {POLICY_DIR}/policies/managed && "
            f'cp "$0" {POLICY_DIR}/policies/managed/outreach-station.json && exec "$@"'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup,
                str(policy_file), *argv]  # fmt: skip
    done = subprocess.run(
        argv,
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


def needs_private_policy() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private mount namespace for the managed policy needs root and unshare")
    if not POLICY_DIR.is_dir():
        pytest.skip(f"{POLICY_DIR} does not exist: this Chromium reads no managed policy there")


def test_with_the_installed_policy_no_bar_and_no_webdriver(display: str, tmp_path: Path) -> None:
    """With what `station policy apply-browser` installs, station's window has the
    chrome of a plain Chromium: no bar over the page; navigator.webdriver stays false."""
    needs_private_policy()
    plain = probe(tmp_path, "plain", policy=NO_FLAG_WARNINGS)
    ours = probe(tmp_path, "station", policy=render_managed_policy(Policy()))
    assert plain["chrome"] > 0, plain  # a real frame was measured
    assert abs(ours["chrome"] - plain["chrome"]) <= SAME_CHROME_PX, (
        ours["chrome"],
        plain["chrome"],
    )
    assert ours["page"]["webdriver"] is False
    assert ours["iframe"]["webdriver"] is False
    # WorkerNavigator has no webdriver in Chromium 156 (undefined reaches us as absent).
    assert ours["worker"].get("webdriver") in (None, False)


def test_without_the_policy_station_warns_where_plain_chromium_does_not(
    display: str, tmp_path: Path
) -> None:
    """The bar the policy removes is real: on a machine without it, station's
    switch shows Chromium's flag warning (measured against plain Chromium under
    a policy that silences only the sandbox warning root needs)."""
    needs_private_policy()
    ours = probe(tmp_path, "station", policy="{}")
    plain = probe(tmp_path, "plain", policy=NO_FLAG_WARNINGS)
    assert ours["chrome"] - plain["chrome"] > SAME_CHROME_PX, (ours["chrome"], plain["chrome"])
