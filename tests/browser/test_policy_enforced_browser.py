"""The system policy's browser settings, enforced in real Chromium through `station open`.

tests/browser/test_lockdown.py proves each mechanism against a `Lockdown`
built by hand; here the values come from a trusted system policy, a user
config tries to loosen every one of them, and `api.open_platform` is what
starts the browser. The table of which test proves which setting is at the
top of tests/test_policy_enforced.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths, session
from outreach_station.audit import AuditLog, default_path
from outreach_station.browser import build_launch
from tests.browser.test_lockdown import PRINT_PROBE, SECRET_BYTES, LockdownSite, containing
from tests.browser.test_open import browser_cmdlines
from tests.fixtures import install_policy, write_platform
from tests.test_policy_enforced import user_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        os.name != "posix" or os.geteuid() != 0,
        reason="a trusted system policy must be owned by root",
    ),
]

LOOSENING = """\
[platform.site-one]
allowlist = ["127.0.0.1", "localhost"]

[browser]
downloads = true
devtools = true
extensions = true
printing = true
file_urls = true

[session]
max_minutes = 0
idle_minutes = 0
"""


@pytest.fixture(scope="module")
def lsite() -> Iterator[LockdownSite]:
    with LockdownSite() as served:
        yield served


@pytest.fixture
def policy(system_policy: Path, profiles: Path, lsite: LockdownSite) -> Path:
    """The system policy's place, site-one on the lockdown site, and a user config loosening all."""
    write_platform(profiles, "site-one", lsite.url)
    user_config(LOOSENING)
    return system_policy


def records(log: Path) -> list[dict[str, Any]]:
    return [r.to_record() for r in AuditLog(log).records()]


def test_system_policy_lockdown_holds_in_real_chromium(
    policy: Path, lsite: LockdownSite, tmp_path: Path
) -> None:
    relocated = tmp_path / "collector" / "audit.jsonl"
    install_policy(
        policy,
        '[platform.site-one]\nallowlist = ["127.0.0.1"]\n'
        "[browser]\nprinting = false\n"
        "[session]\nmax_minutes = 1\n"
        f'[audit]\npath = "{relocated}"\n',
    )
    secret = tmp_path / "case-notes.txt"
    secret.write_text("confidential case notes")
    marker = os.environ["XDG_RUNTIME_DIR"]
    seen: dict[str, Any] = {}

    async def person(_context: Any, page: Any) -> None:
        seen["cmdlines"] = browser_cmdlines(marker)
        await page.goto(lsite.url + "download")
        await page.click("#dl")
        await page.wait_for_timeout(1500)
        seen["printed"] = await page.evaluate(PRINT_PROBE)
        try:
            await page.goto(secret.as_uri())
        except Exception as exc:  # the replacement may abort this navigation
            seen["file_error"] = str(exc)
        await page.wait_for_timeout(800)
        seen["file_text"] = await page.evaluate("document.body ? document.body.innerText : ''")
        await page.goto(lsite.other + "elsewhere")
        seen["other"] = await page.evaluate("document.body.innerText")
        # A redirect hop is a request of its own: the allowlist holds for it too.
        await page.goto(lsite.url + "redir?to=" + lsite.other + "hop")
        seen["hop"] = await page.evaluate("document.body.innerText")

    lsite.paths.clear()
    # A policy minute lasts 15 s here: the person's visit fits, then the limit closes it.
    result = api.open_platform("site-one", headless=True, hook=person, minute_seconds=15.0)

    assert result.outcome.ended_by == "time-limit"  # max_minutes = 1, not the user's 0
    main = [args for args in seen["cmdlines"] if not any(a.startswith("--type=") for a in args)]
    assert main and all("--disable-extensions" in args for args in main)
    assert "127.0.0.1/report.bin" in lsite.paths
    assert [p for p in containing(tmp_path, SECRET_BYTES) if "Cache_Data" not in p.parts] == []
    assert seen["printed"] is False
    assert "confidential" not in seen["file_text"]
    assert "Blocked by IT policy" in seen["file_text"]
    assert "Blocked by IT policy" in seen["other"]
    assert "Blocked by IT policy" in seen["hop"]
    assert not [p for p in lsite.paths if p.startswith("localhost")]

    written = records(relocated)
    violations = {
        (r["detail"]["kind"], r["detail"]["host"])
        for r in written
        if r["event"] == "policy.violation"
    }
    assert violations >= {("download", "127.0.0.1"), ("file_url", "-"), ("navigation", "localhost")}
    ignored = {r["detail"]["setting"] for r in written if r["event"] == "policy.loosening_ignored"}
    assert ignored == {
        "platform.site-one.allowlist",
        "browser.downloads",
        "browser.devtools",
        "browser.extensions",
        "browser.printing",
        "browser.file_urls",
        "session.max_minutes",
        "session.idle_minutes",
    }
    events = [r["event"] for r in written]
    assert "persona.opened" in events and "persona.closed" in events
    assert not default_path().exists()
    assert AuditLog(relocated).verify().ok


def test_system_idle_limit_closes_an_untouched_session(policy: Path) -> None:
    install_policy(policy, "[session]\nidle_minutes = 1\n")
    # A policy minute lasts 2 s: nobody touches the browser, so it closes by itself.
    result = api.open_platform("site-one", headless=True, minute_seconds=2.0)
    assert result.outcome.ended_by == "idle-limit"
    closed = [r for r in records(default_path()) if r["event"] == "persona.closed"]
    assert closed[-1]["detail"]["ended_by"] == "idle-limit"


@pytest.mark.headed
def test_system_policy_closes_devtools_in_real_chromium(
    policy: Path, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_policy(policy, "[browser]\ndevtools = false\nprinting = true\n")
    real_build = build_launch

    def person_presses_f12(**kwargs: Any) -> Any:
        # Stands in for the person opening developer tools by hand (F12).
        spec = real_build(**kwargs)
        args = (*spec.args[:-1], "--auto-open-devtools-for-tabs", spec.args[-1])
        import dataclasses

        return dataclasses.replace(spec, args=args)

    monkeypatch.setattr(session, "build_launch", person_presses_f12)
    seen: dict[str, Any] = {}

    async def look(context: Any, page: Any) -> None:
        cdp = await context.new_cdp_session(page)
        await page.wait_for_timeout(2500)
        targets = (await cdp.send("Target.getTargets"))["targetInfos"]
        seen["devtools"] = [t for t in targets if t["url"].startswith("devtools://")]

    result = api.open_platform("site-one", hook=look, close_after_hook=True)

    assert result.outcome.ended_by != "time-limit"
    assert seen["devtools"] == []
    written = records(default_path())
    assert any(
        r["event"] == "policy.violation" and r["detail"]["kind"] == "devtools" for r in written
    )
    assert "browser.devtools" in {
        r["detail"]["setting"] for r in written if r["event"] == "policy.loosening_ignored"
    }
    assert paths.current().home.exists()
