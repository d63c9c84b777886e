"""What Chromium changes in its profile between two sessions: the measurement behind the chunking.

Opens one persona three times in real Chromium against a loopback test site
(a first session that builds the profile, then two ordinary sessions that
visit the site, set a cookie and local storage), unseals the sealed profile
after each, and compares the last two trees: which files were added,
removed or changed, and for each changed file how many of its 4 KiB pages
and of its 1 MiB chunks differ.

Run inside a keyring session (as `bash setup.sh test` makes one), e.g.:

    PYTHONPATH=. .venv/bin/python bench/profile_churn.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from _scratch import scratch_home  # bench/_scratch.py, beside this script

PAGE = 4096
CHUNK = 1 << 20


def _digests(path: Path, size: int) -> list[bytes]:
    data = path.read_bytes()
    return [hashlib.sha256(data[i : i + size]).digest() for i in range(0, max(len(data), 1), size)]


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def main() -> int:
    scratch, runtime = scratch_home("churn")
    from outreach_station import api, paths, workspace
    from tests.browser.test_isolation import write_platform
    from tests.site import TestSite

    try:
        with TestSite() as site:
            write_platform(scratch / "profiles", "site-one", site.url)
            os.environ["STATION_PROFILES"] = str(scratch / "profiles")
            persona = api.create_persona("site-one")
            vault = api.open_vault()
            state = workspace.SealedState(paths.current(), persona.id)
            snapshots = []
            for session in range(3):

                async def visit(_context: Any, page: Any, n: int = session) -> None:
                    await page.goto(site.url)
                    await page.evaluate(
                        f"document.cookie = 'visit={n}; max-age=86400';"
                        f"localStorage.setItem('visit', '{n}' + 'x'.repeat(2000));"
                    )
                    await page.wait_for_timeout(1500)

                api.open_platform(
                    "site-one",
                    persona_id=persona.id,
                    headless=True,
                    hook=visit,
                    close_after_hook=True,
                )
                out = scratch / f"tree{session}"
                out.mkdir()
                state.unseal(out, vault.ensure_data_key(persona.id), None)
                snapshots.append(out)
        before, after = _tree(snapshots[1]), _tree(snapshots[2])
        total = sum(p.stat().st_size for p in after.values())
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        print(f"profile after session 3: {len(after)} files, {total} bytes")
        print(f"added {len(added)}: {added}")
        print(f"removed {len(removed)}: {removed}")
        changed_bytes = 0
        rows = []
        for name in sorted(set(before) & set(after)):
            a, b = before[name], after[name]
            if a.read_bytes() == b.read_bytes():
                continue
            size = b.stat().st_size
            pages_a, pages_b = _digests(a, PAGE), _digests(b, PAGE)
            pages = sum(1 for i, d in enumerate(pages_b) if i >= len(pages_a) or pages_a[i] != d)
            chunks_a, chunks_b = _digests(a, CHUNK), _digests(b, CHUNK)
            chunks = sum(
                1 for i, d in enumerate(chunks_b) if i >= len(chunks_a) or chunks_a[i] != d
            )
            changed_bytes += size
            rows.append((name, a.stat().st_size, size, pages, len(pages_b), chunks, len(chunks_b)))
        print(f"changed {len(rows)} files, {changed_bytes} bytes in them:")
        for name, was, size, pages, of_pages, chunks, of_chunks in rows:
            print(
                f"  {name}: {was} -> {size} bytes, pages {pages}/{of_pages}, "
                f"1 MiB chunks {chunks}/{of_chunks}"
            )
        added_bytes = sum(after[n].stat().st_size for n in added)
        print(f"added files hold {added_bytes} bytes")
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
