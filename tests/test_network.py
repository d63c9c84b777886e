from __future__ import annotations

import json
from pathlib import Path

import pytest

from outreach_station.errors import ConfigError, UsageError
from outreach_station.network import (
    HiddenStr,
    assign_from_pool,
    browser_args,
    get_proxy,
    parse_proxy_url,
    validate_pool,
)
from outreach_station.storage.sqlite import SqliteStore as Registry
from tests.keyrings import run_code_in_private_keyring


def test_proxy_urls_are_parsed_and_passwords_refused() -> None:
    socks = parse_proxy_url("socks5h://proxy.example:1080")
    assert socks.server == "socks5://proxy.example:1080"
    http = parse_proxy_url("http://outreach@10.0.0.1:3128")
    assert http.username == "outreach" and http.server == "http://10.0.0.1:3128"
    with pytest.raises(UsageError, match="no password") as caught:
        parse_proxy_url("http://u:hunter2@host:3128")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UsageError, match="scheme"):
        parse_proxy_url("ftp://host:21")
    with pytest.raises(UsageError, match="port"):
        parse_proxy_url("http://host")


def test_browser_gets_the_server_only() -> None:
    args = browser_args(parse_proxy_url("http://user@host:3128"))
    assert args == ["--proxy-server=http://host:3128"]
    assert repr(HiddenStr("hunter2")) == "'***'"


def test_pool_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="proxies"):
        validate_pool(tmp_path / "p.toml", ["http://u:pw@h:1"])
    with pytest.raises(ConfigError, match="twice"):
        validate_pool(tmp_path / "p.toml", ["http://h:1", "http://h:1"])


def test_pool_assignment_spreads_and_avoids_blocked(tmp_path: Path) -> None:
    pool = ("socks5://a:1080", "socks5://b:1080")
    with Registry(tmp_path / "r.db") as reg:
        first = reg.create("p", fingerprint={})
        second = reg.create("p", fingerprint={}, standby=True)
        got1 = assign_from_pool(reg, first, pool)
        got2 = assign_from_pool(reg, second, pool)
        assert got1 is not None and got2 is not None
        assert {got1.server, got2.server} == {"socks5://a:1080", "socks5://b:1080"}
        assert assign_from_pool(reg, first, pool) == got1  # stable
        blocked, active, _ = reg.rotate("p", reason="x", fresh_fingerprint=dict)
        assert active.id == second.id
        renewed = assign_from_pool(reg, active, pool, force_new=True)
        # Both were used; the blocked persona's address is the last choice.
        assert renewed is not None and renewed.server == got2.server
        assert get_proxy(reg, blocked.id if blocked else "") == got1


LOCKED_PROXY_SCRIPT = r"""
import json, secretstorage
from outreach_station import network
from outreach_station.errors import StationError

connection = secretstorage.dbus_init()
collection = secretstorage.get_default_collection(connection)
collection.lock()
assert collection.is_locked()
out = {}
for name, call in (
    ("read", lambda: network.read_password("abcdefghijkl")),
    ("write", lambda: network._set_password("abcdefghijkl", "pw")),
):
    try:
        call()
        out[name] = {"raised": None}
    except StationError as exc:
        out[name] = {"raised": type(exc).__name__, "message": exc.message, "code": exc.exit_code}
print(json.dumps(out))
"""


@pytest.mark.keyring
def test_locked_keyring_proxy_password_says_to_unlock(tmp_path: Path) -> None:
    done = run_code_in_private_keyring(tmp_path, LOCKED_PROXY_SCRIPT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("read", "write"):
        assert out[name]["raised"] == "EnvironmentProblem", out
        # The locked keyring is named as such, with how to unlock it, not an install hint.
        assert out[name]["message"].startswith("the OS keyring is locked"), out
        assert "Unlock it and retry" in out[name]["message"], out
        assert "apt install" not in out[name]["message"], out
