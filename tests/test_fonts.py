"""Per-persona font sets, against the machine's real fontconfig."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from outreach_station.browser import limit_cpus, restore_cpus
from outreach_station.fonts import (
    CONFIG_RELATIVE,
    RENDERABLE,
    RENDERINGS,
    TEXT_PROBE,
    config_xml,
    inventory,
    write_config,
)


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
    accepted = [
        {e.get("name"): e.findtext("string") for e in pattern.iter("patelt")}
        for accept in root.iter("acceptfont")
        for pattern in accept.iter("pattern")
    ]
    assert accepted == [
        {"family": name, "fontformat": form}
        for name in ("Q&A <Sans>", 'Say "Hi"')
        for form in ("TrueType", "CFF")
    ]


def test_no_families_means_every_family_in_the_formats_chromium_draws(tmp_path: Path) -> None:
    machine = inventory()
    write_config(tmp_path, ())
    listed = fc(tmp_path, "fc-list", "--format", "%{fontformat}\t%{family[0]}\n").splitlines()
    assert {line.split("\t")[1] for line in listed} == set(machine.families)
    assert {line.split("\t")[0] for line in listed} <= set(RENDERABLE)


def test_a_family_with_type1_faces_gets_its_face_chromium_can_draw(tmp_path: Path) -> None:
    everything = fc(tmp_path / "none", "fc-list", "--format", "%{fontformat}\t%{family[0]}\n")
    type1 = {
        f for form, f in (line.split("\t") for line in everything.splitlines()) if form == "Type 1"
    }
    both = sorted(type1 & set(inventory().families))
    if not both:
        pytest.skip("no font family here has both Type 1 and TrueType/CFF faces")
    family = both[0]
    # Without the persona's file, fontconfig may prefer the Type 1 face, which
    # Chromium refuses: the family would vanish from the page.
    write_config(tmp_path, (family,))
    form = fc(tmp_path, "fc-match", "--format", "%{fontformat}|%{family[0]}", family)
    assert form in {f"{r}|{family}" for r in RENDERABLE}


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


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_font_rendering_reaches_fontconfig(tmp_path: Path, rendering: str) -> None:
    """What fontconfig hands Chromium for a persona's text is the persona's rendering."""
    write_config(tmp_path, ("DejaVu Sans",), rendering)
    got = fc(tmp_path, "fc-match", "--format", "%{hintstyle} %{autohint} %{hinting}", "sans-serif")
    style = {name: value for name, _kind, value in RENDERINGS[rendering]}
    want_style = {"hintnone": "0", "hintslight": "1", "hintmedium": "2", "hintfull": "3"}
    assert got.split() == [
        want_style[style["hintstyle"]],
        "True" if style.get("autohint") == "true" else "False",
        "True" if style["hinting"] == "true" else "False",
    ], got


def test_no_rendering_leaves_the_machines_settings(tmp_path: Path) -> None:
    assert "<match" not in config_xml(["DejaVu Sans"])
    with pytest.raises(ValueError, match="unknown font rendering"):
        config_xml(["DejaVu Sans"], "wobbly")


def test_text_probe_is_the_inspectors_sample() -> None:
    """What inventory() calls legible is what the inspector's width probe draws."""
    collect = (
        Path(__file__).resolve().parents[1] / "outreach_station/inspector/static/collect.js"
    ).read_text(encoding="utf-8")
    assert f'const FONT_SAMPLE = "{TEXT_PROBE}";' in collect


def test_inventory_leaves_families_without_a_probe_character_out_of_legible() -> None:
    machine = inventory()
    assert set(machine.legible) <= set(machine.families)
    assert set(machine.essential) <= set(machine.legible)
    everything = fc(Path("/nonexistent"), "fc-list", "--format", "%{family[0]}\t%{charset}\n")
    probe = {ord(c) for c in TEXT_PROBE}

    def covers(charset: str) -> bool:
        for span in charset.split():
            low, _dash, high = span.partition("-")
            if any(int(low, 16) <= c <= int(high or low, 16) for c in probe):
                return True
        return False

    blind = {
        family
        for family in machine.families
        if not any(
            covers(chars)
            for name, _tab, chars in (line.partition("\t") for line in everything.splitlines())
            if name == family
        )
    }
    assert set(machine.families) - set(machine.legible) == blind
    if Path("/usr/share/fonts/truetype/noto/NotoSansTamilSupplement-Regular.ttf").is_file():
        assert "Noto Sans Tamil Supplement" in blind
