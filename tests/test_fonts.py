"""Per-persona font sets, against the machine's real fontconfig."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from outreach_station.browser import limit_cpus, restore_cpus
from outreach_station.fonts import CONFIG_RELATIVE, config_xml, inventory, write_config


def fc(config_home: Path, *args: str) -> str:
    env = {"HOME": str(config_home), "XDG_CONFIG_HOME": str(config_home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return done.stdout


def test_inventory_reads_the_installed_families() -> None:
    machine = inventory()
    assert machine.families, "fontconfig lists no fonts on this machine"
    assert list(machine.families) == sorted(set(machine.families))
    assert set(machine.essential) <= set(machine.notable) <= set(machine.families)
    # The machine's sans-serif, serif and monospace families at least.
    assert len(machine.essential) >= 3
    assert not set(machine.optional) & set(machine.essential)


def test_inventory_ignores_the_persons_own_font_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = inventory()
    # The person's own fontconfig hides fonts; the persona's browser never reads it.
    write_config(tmp_path, before.essential)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert inventory() == before


def test_without_fontconfig_tools_there_is_nothing_to_vary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    machine = inventory()
    assert machine.families == () and machine.essential == () and machine.notable == ()


def test_config_shows_fontconfig_only_the_personas_families(tmp_path: Path) -> None:
    machine = inventory()
    keep = machine.essential
    path = write_config(tmp_path, keep)
    assert path == tmp_path / CONFIG_RELATIVE
    listed = {
        line.strip() for line in fc(tmp_path, "fc-list", "--format", "%{family[0]}\n").splitlines()
    }
    assert listed == set(keep)
    hidden = set(machine.families) - set(keep)
    assert hidden, "this machine has no optional font families to hide"
    for generic in ("sans-serif", "serif", "monospace"):
        assert fc(tmp_path, "fc-match", "--format", "%{family[0]}", generic) in keep


def test_config_with_every_family_changes_nothing(tmp_path: Path) -> None:
    machine = inventory()
    write_config(tmp_path, machine.families)
    listed = {
        line.strip() for line in fc(tmp_path, "fc-list", "--format", "%{family[0]}\n").splitlines()
    }
    assert listed == set(machine.families)


def test_config_is_well_formed_for_any_family_name() -> None:
    text = config_xml(["Q&A <Sans>", 'Say "Hi"'])
    root = ET.fromstring(text.split("\n", 2)[2])  # noqa: S314 - our own output, no DOCTYPE
    names = [e.text for e in root.iter("string")]
    assert names == ["Q&A <Sans>", 'Say "Hi"']


def test_no_families_means_the_machines_own_and_removes_an_old_file(tmp_path: Path) -> None:
    write_config(tmp_path, ("DejaVu Sans",))
    assert (tmp_path / CONFIG_RELATIVE).is_file()
    assert write_config(tmp_path, ()) is None
    assert not (tmp_path / CONFIG_RELATIVE).exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_cpu_limit_is_taken_and_given_back() -> None:
    everything = os.sched_getaffinity(0)
    assert limit_cpus(0) is None and limit_cpus(len(everything)) is None
    assert limit_cpus(len(everything) + 8) is None
    assert os.sched_getaffinity(0) == everything
    before = limit_cpus(1)
    try:
        assert before == everything
        assert len(os.sched_getaffinity(0)) == 1
    finally:
        restore_cpus(before)
    assert os.sched_getaffinity(0) == everything
