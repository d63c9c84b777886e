"""The machine's installed policies are out of every test's reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach_station import lockdown, paths


def test_tests_see_no_installed_policy_of_this_machine(tmp_path: Path) -> None:
    # The isolation fixture moves the system root: an installed policy.toml or
    # managed Chromium policy on this machine cannot reach (or be reached by) a test.
    assert paths.installed_policy_file().is_relative_to(tmp_path)
    assert not paths.installed_policy_file().exists()
    assert all(d.is_relative_to(tmp_path) for d in paths.managed_browser_policy_dirs())
    assert lockdown.managed_policy_file().is_relative_to(tmp_path)


def test_station_policy_applies_only_while_no_policy_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine.toml"
    monkeypatch.setenv(paths.ENV_POLICY, str(mine))
    assert paths.system_policy_file() == mine
    installed = paths.installed_policy_file()
    installed.parent.mkdir(parents=True)
    installed.write_text("")
    assert paths.system_policy_file() == installed


def test_no_environment_variable_moves_the_system_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths.set_test_system_root(None)
    for name in ("XDG_CONFIG_DIRS", "STATION_HOME", "STATION_POLICY", "STATION_ROOT"):
        monkeypatch.setenv(name, str(tmp_path))
    assert paths.installed_policy_file() == Path("/etc/xdg/outreach-station/policy.toml")
    assert paths.managed_browser_policy_dirs() == paths.MANAGED_BROWSER_POLICY_DIRS
