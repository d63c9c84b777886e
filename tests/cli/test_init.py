"""`station init`: the master key in the real keyring, or passphrase-wrapped if policy allows."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import keyring
import keyring.errors
import pytest

from outreach_station import api, paths, secret_store, workspace
from outreach_station.errors import ExitCode
from outreach_station.vault import read_settings
from outreach_station.vault.keys import MASTER_FILE, SETTINGS_FILE
from tests.browser.test_demo import read_findings
from tests.browser.test_open import wait_open
from tests.browser.test_sealed_open import start_station
from tests.fixtures import install_policy
from tests.keyrings import SECRET_SERVICE

PASSPHRASE = "lantern-orchard-7-quiet"


@pytest.fixture
def passphrase_policy(system_policy: Path) -> Path:
    """A trusted system policy (root-owned, 0644) that allows passphrase mode."""
    if os.geteuid() != 0:
        pytest.skip("a trusted system policy must be owned by root")
    return install_policy(system_policy, "[vault]\nallow_passphrase = true\n")


@pytest.mark.keyring
def test_init_puts_the_master_key_in_the_keyring(runner: Any, secret_service: None) -> None:
    result = runner.invoke(["init"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "vault ready: master key in Secret Service (" + SECRET_SERVICE + ")\n"
    settings = read_settings(paths.current())
    assert settings is not None
    stored = keyring.get_password(secret_store.SERVICE, settings.keyring_entry)
    assert stored is not None
    assert not (paths.current().home / MASTER_FILE).exists()
    # Idempotent: a second init keeps the key it made.
    assert runner.invoke(["init"]).exit_code == 0
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) == stored


def test_passphrase_mode_is_refused_unless_policy_allows_it(runner: Any) -> None:
    home = paths.current().home
    result = runner.invoke(["init", "--passphrase"], input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert result.exit_code == ExitCode.SECURITY
    assert result.stderr == (
        "station: error: passphrase mode is not allowed by policy; use the OS keyring\n"
    )
    # Refused before asking: no prompt, nothing written.
    assert "passphrase" not in result.stdout.lower()
    assert not (home / SETTINGS_FILE).exists()
    assert not (home / MASTER_FILE).exists()


@pytest.mark.browser
@pytest.mark.keyring
def test_passphrase_vault_opens_and_reseals_without_the_keyring(
    runner: Any, passphrase_policy: Path, secret_service: None
) -> None:
    home = paths.current().home
    result = runner.invoke(["init", "--passphrase"], input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert result.exit_code == 0, result.stderr
    assert "vault ready: master key in passphrase-wrapped key file" in result.stdout
    assert PASSPHRASE not in result.stdout + result.stderr
    settings = read_settings(paths.current())
    assert settings is not None
    assert str(settings.mode) == "passphrase"
    master_file = home / MASTER_FILE
    assert master_file.stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE.encode() not in master_file.read_bytes()

    proc = start_station("open", "demo", "--headless", stdin=True)
    assert proc.stdin is not None
    proc.stdin.write(PASSPHRASE + "\n")
    proc.stdin.flush()
    try:
        opened = "".join(wait_open(proc))
        # Ended once the demo has reported, as a person would after reading it.
        findings = read_findings(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert findings[0] == "What a website sees of this persona:"
    assert proc.returncode == 0, opened + err
    assert PASSPHRASE not in opened + out + err
    (persona,) = api.list_personas(platform_id="demo")
    sealed = workspace.sealed_file(paths.current(), persona.id)
    assert sealed.is_file()
    assert not workspace.workspace_dir(paths.current(), persona.id).exists()
    # The keyring was never used for this home.
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) is None

    before = {p: p.read_bytes() for p in (sealed, master_file, home / SETTINGS_FILE)}
    wrong = runner.invoke(["open", "demo", "--headless"], input="not-the-passphrase\n")
    assert wrong.exit_code == ExitCode.SECURITY
    # The hidden prompt's line is not ended by an echoed newline.
    assert wrong.stderr.splitlines()[-1].endswith(
        f"station: error: wrong passphrase for the master key file {master_file} "
        "(or the file was altered)"
    )
    assert "not-the-passphrase" not in wrong.stdout + wrong.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not workspace.workspace_dir(paths.current(), persona.id).exists()
    assert keyring.get_password(secret_store.SERVICE, settings.keyring_entry) is None
