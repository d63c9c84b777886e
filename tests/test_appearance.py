"""The persona's name and colour: choosing them, writing them into a profile, the launch."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from outreach_station.appearance import (
    PALETTE,
    Appearance,
    appearance_for,
    apply_to_profile,
    platform_colour,
)
from outreach_station.browser import BrowserExecutable, build_launch
from outreach_station.fingerprint import generate
from outreach_station.platforms import PlatformProfile

RED = PALETTE[0]


def test_a_platform_keeps_its_colour_everywhere() -> None:
    # Fixed values: the same colour on every laptop, in every run, for any case.
    assert platform_colour("example-classifieds").name == "red"
    assert platform_colour("Example-Classifieds") == platform_colour("example-classifieds")
    assert platform_colour("example-mobile").name == "green"
    assert {platform_colour(f"p{n}") for n in range(60)} == set(PALETTE)


def test_colour_as_chromium_and_the_terminal_take_it() -> None:
    assert RED.hex == "#c0392b"
    # What Chromium 156 itself wrote back for this colour (a signed SkColor).
    assert RED.argb == -4179669
    assert RED.sgr() == "38;2;192;57;43"


def test_title_is_label_and_platform() -> None:
    shown = appearance_for(
        label="  Vera  Lind ", persona_id="abcdefghijkl", platform_id="ex", platform_name="Ex Site"
    )
    assert shown == Appearance(title="Vera Lind \u00b7 Ex Site", colour=platform_colour("ex"))
    odd = appearance_for(
        label="V", persona_id="a", platform_id="ex", platform_name="E\x1b]0;x\x07\nS"
    )
    assert odd.title == "V \u00b7 E ]0;x S"
    unnamed = appearance_for(
        label="", persona_id="abcdefghijkl", platform_id="ex", platform_name=""
    )
    assert unnamed.title == "abcdefghijkl \u00b7 ex"
    long = appearance_for(label="x" * 100, persona_id="a", platform_id="ex", platform_name="Ex")
    assert len(long.title) == 80
    assert long.title.endswith("\u2026")


def test_profile_gets_name_and_colour_and_keeps_everything_else(tmp_path: Path) -> None:
    prefs = tmp_path / "Default" / "Preferences"
    prefs.parent.mkdir()
    prefs.write_text(json.dumps({"browser": {"theme": {"user_color": 1}, "x": 2}, "y": [3]}))
    (tmp_path / "Local State").write_text(json.dumps({"profile": {"info_cache": {}}, "z": 4}))
    apply_to_profile(tmp_path, Appearance("Vera \u00b7 Ex", RED))
    written = json.loads(prefs.read_text())
    assert written["y"] == [3]
    assert written["browser"]["x"] == 2
    assert written["browser"]["theme"] == {"user_color": RED.argb, "user_color2": RED.argb}
    assert written["profile"] == {"name": "Vera \u00b7 Ex", "using_default_name": False}
    # Local State stays Chromium's: an entry written there makes it fetch avatars from Google.
    assert json.loads((tmp_path / "Local State").read_text()) == {
        "profile": {"info_cache": {}},
        "z": 4,
    }
    assert stat.S_IMODE(prefs.stat().st_mode) == 0o600


def test_a_new_profile_gets_its_files_and_a_broken_one_is_left_alone(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    apply_to_profile(fresh, Appearance("A \u00b7 B", RED))
    assert json.loads((fresh / "Default" / "Preferences").read_text())["profile"]["name"] == (
        "A \u00b7 B"
    )
    broken = tmp_path / "broken"
    (broken / "Default").mkdir(parents=True)
    (broken / "Default" / "Preferences").write_bytes(b"{not json")
    apply_to_profile(broken, Appearance("A \u00b7 B", RED))
    assert (broken / "Default" / "Preferences").read_bytes() == b"{not json"
    apply_to_profile(broken, None)  # no appearance: nothing is touched


def test_launch_names_the_first_window(tmp_path: Path) -> None:
    platform = PlatformProfile(id="ex", name="Ex", start_url="https://x.se/")
    shown = appearance_for(label="Vera", persona_id="a", platform_id="ex", platform_name="Ex")
    common = {
        "browser": BrowserExecutable(path=Path("/opt/c"), source="system", version="156.0.1.2"),
        "fingerprint": generate(platform),
        "user_data_dir": tmp_path,
        "home": tmp_path / "h",
        "headless": False,
        "base_env": {},
        "is_root": False,
    }
    spec = build_launch(**common, appearance=shown)  # type: ignore[arg-type]
    assert spec.args[-2:] == ("--window-name=Vera \u00b7 Ex", "about:blank")
    assert spec.appearance == shown
    bare = build_launch(**common)  # type: ignore[arg-type]
    assert not any(a.startswith("--window-name") for a in bare.args)
