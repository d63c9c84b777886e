"""Every id and URL a person types is judged at the CLI edge, before anything opens.

Without a keyring, with an empty station home: a malformed persona id,
platform id or URL must exit 2 with one line saying what is wrong, and leave
the home as it was (no registry, no vault, no audit record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach_station.errors import ExitCode

BAD_PERSONA = (
    "malformed persona '../x': give its id, the first letters of it, or its label, "
    "as printed by 'station persona list'"
)
BAD_PLATFORM = (
    "malformed platform id '../x': use letters, digits and '-', as listed by 'station platforms'"
)
# Well formed, but no such persona: only a URL check before any lookup refuses it with 2.
SOME_ID = "abcdefghijkl"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["open", "demo", "--headless", "--persona", "../x"], BAD_PERSONA),
        (["open", "../x", "--headless"], BAD_PLATFORM),
        (
            ["open", "demo", "--headless", "--url", "file:///etc/passwd"],
            "--url must be an http:// or https:// address of at most 2048 printable "
            "characters without spaces",
        ),
        (["check", "../x"], BAD_PERSONA),
        (["rotate", "../x", "--force"], BAD_PLATFORM),
        (["persona", "new", "../x"], BAD_PLATFORM),
        (["persona", "list", "--platform", "../x"], BAD_PLATFORM),
        (["persona", "show", "../x"], BAD_PERSONA),
        (["persona", "retire", "../x", "--yes"], BAD_PERSONA),
        (["persona", "kit", "../x"], BAD_PERSONA),
        (["persona", "kit", "../x", "--set", "email=a@example.org"], BAD_PERSONA),
        (["persona", "kit", "../x", "--reveal", "password", "--print"], BAD_PERSONA),
        (["persona", "refresh-fingerprint", "../x"], BAD_PERSONA),
        (["persona", "proxy", "../x", "http://proxy.example:3128"], BAD_PERSONA),
        (["persona", "proxy", "../x", "--clear"], BAD_PERSONA),
        (
            ["persona", "proxy", SOME_ID, "ftp://proxy.example:21"],
            "proxy: the scheme must be http, socks5 or socks5h, got 'ftp'",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_ids_and_urls_are_refused_before_anything_is_written(
    runner: Any, isolation: Path, no_keyring: None, args: list[str], message: str
) -> None:
    result = runner.invoke(args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr == f"station: error: {message}\n"
    assert "Traceback" not in result.output
    assert not isolation.exists() or sorted(isolation.rglob("*")) == []
