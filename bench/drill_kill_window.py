"""What survives when a session ends seconds after a page wrote a cookie and localStorage.

Ends: SIGTERM to station (graceful close); SIGKILL of station's process group
(station and Playwright's driver die, the browser in its own group sees its
pipe close); SIGKILL of everything, the browser included (frozen first, so
it cannot tidy up), after 0..N seconds. Then the next open recovers and
reads both back.

    PYTHONPATH=. .venv/bin/python bench/drill_kill_window.py   (inside a keyring session)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

from _scratch import scratch_home  # bench/_scratch.py, beside this script

DELAYS = (0.0, 1.0, 3.0, 10.0, 35.0)


def main() -> int:
    scratch, runtime = scratch_home("window")
    from outreach_station import api
    from tests.browser.test_sealed_open import browser_pids, kill_browsers
    from tests.browser.test_sealed_signals import StoreSite, read_back
    from tests.fixtures import write_platform
    from tests.site import TestSite

    rows = []
    with TestSite() as site:
        write_platform(scratch / "profiles", "site-one", site.url)
        os.environ["STATION_PROFILES"] = str(scratch / "profiles")
        store = StoreSite()
        plans = [("SIGTERM to station", 0.0), ("SIGKILL of station's group", 0.0)]
        plans += [("SIGKILL of everything", d) for d in DELAYS]
        for how, delay in plans:
            persona = api.create_persona("site-one")
            value = f"v{secrets.token_hex(4)}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "outreach_station", "open", "site-one",
                 "--persona", persona.id, "--headless", "--url", f"{store.url}set?v={value}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )  # fmt: skip
            assert proc.stderr is not None
            while " open at " not in (line := proc.stderr.readline()):
                if not line:
                    raise RuntimeError("station did not open")
            time.sleep(delay)
            if how.startswith("SIGTERM"):
                proc.send_signal(signal.SIGTERM)
            else:
                if how == "SIGKILL of everything":
                    for pid in browser_pids(persona.id):
                        os.kill(pid, signal.SIGSTOP)
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=120)
            time.sleep(2)  # a browser left on its own finishes closing
            kill_browsers(persona.id)
            cookie, kept = read_back(persona.id, store)
            rows.append((how, delay, f"jar={value}" in cookie, kept == value))
        store.close()
    print("| how the session ended | seconds after the write | cookie kept | localStorage kept |")
    print("|---|---:|---|---|")
    for how, delay, cookie_kept, storage_kept in rows:
        print(f"| {how} | {delay:g} | {cookie_kept} | {storage_kept} |")
    shutil.rmtree(runtime, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
