"""A persona's cookies need nothing but its own data key: no key in the person's keyring.

Real Chromium and the real Secret Service. XDG_CURRENT_DESKTOP is GNOME, as
on staff laptops: that is when Chromium would keep "Chromium Safe Storage"
in the keyring.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, session
from tests.browser.test_sealed_open import (
    read_cookies,
)
from tests.site import TestSite

pytestmark = [pytest.mark.browser, pytest.mark.keyring, pytest.mark.usefixtures("secret_service")]

SAFE_STORAGE = "Chromium Safe Storage"


def safe_storage_items(*, delete: bool = False) -> list[str]:
    """The labels of Chromium's cookie-key items in every collection (deleted if asked)."""
    import secretstorage

    connection = secretstorage.dbus_init()
    try:
        found = []
        for collection in secretstorage.get_all_collections(connection):
            if collection.is_locked():
                collection.unlock()
            for item in collection.get_all_items():
                if SAFE_STORAGE in item.get_label():
                    found.append(item.get_label())
                    if delete:
                        item.delete()
        return found
    finally:
        connection.close()


async def _noop(_context: Any, _page: Any) -> None:
    return None


def test_cookies_survive_without_any_key_in_the_keyring(
    platform_dir: Path,
    site: TestSite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "GNOME")
    safe_storage_items(delete=True)
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(8)}"
    api.open_platform(
        "site-one",
        persona_id=persona.id,
        url=f"{site.url}set-cookie?v={value}",
        headless=True,
        hook=_noop,
        close_after_hook=True,
    )
    assert safe_storage_items() == []
    safe_storage_items(delete=True)  # as if the person cleared their keyring
    assert f"station_flush={value}" in read_cookies(persona.id)
    assert safe_storage_items() == []


def _prefixes(persona_id: str) -> set[bytes]:
    """The encryption prefixes of the persona's stored cookie values, read from its sealed file."""
    import sqlite3
    import tempfile

    from outreach_station import paths, workspace
    from outreach_station.vault import Vault

    out = Path(tempfile.mkdtemp(dir=os.environ["XDG_RUNTIME_DIR"]))
    try:
        key = Vault.open(paths.current()).data_key(persona_id)
        workspace.SealedState(paths.current(), persona_id).unseal(out, key, None)
        with sqlite3.connect(out / "profile" / "Default" / "Cookies") as conn:
            rows = conn.execute("SELECT encrypted_value FROM cookies").fetchall()
        return {bytes(r[0])[:3] for r in rows}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_cookies_sealed_under_the_keyring_key_are_moved_to_the_profile(
    platform_dir: Path,
    site: TestSite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "GNOME")
    safe_storage_items(delete=True)
    persona = api.create_persona("site-one")
    value = f"v{secrets.token_hex(8)}"
    real_build = session.build_launch

    def before_the_upgrade(**kwargs: Any) -> Any:
        spec = real_build(**kwargs)
        args = tuple(a for a in spec.args if a != "--password-store=basic")
        return dataclasses.replace(spec, args=args)

    # A persona sealed by the previous release: its browser kept the key in the keyring.
    with monkeypatch.context() as patched:
        patched.setattr(session, "build_launch", before_the_upgrade)
        api.open_platform(
            "site-one",
            persona_id=persona.id,
            url=f"{site.url}set-cookie?v={value}",
            headless=True,
            hook=_noop,
            close_after_hook=True,
        )
    assert safe_storage_items() == [SAFE_STORAGE]
    assert _prefixes(persona.id) == {b"v11"}

    # The first open after the upgrade moves them while the keyring item exists.
    assert f"station_flush={value}" in read_cookies(persona.id)
    assert _prefixes(persona.id) == {b"v10"}
    safe_storage_items(delete=True)
    assert f"station_flush={value}" in read_cookies(persona.id)
    assert safe_storage_items() == []
