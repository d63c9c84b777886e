from __future__ import annotations

import pytest

from outreach_station.errors import StateError
from outreach_station.fingerprint import Fingerprint, fingerprint_args, generate
from outreach_station.platforms import PlatformProfile

DESKTOP = PlatformProfile(id="d", name="d", start_url="https://x.se/")
MOBILE = PlatformProfile(
    id="m",
    name="m",
    start_url="https://x.se/",
    device="mobile",
    locale="en-GB",
    timezone="Europe/London",
)


def test_desktop_fingerprint_follows_the_platform() -> None:
    fp = generate(DESKTOP)
    assert not fp.mobile and not fp.touch
    assert fp.languages == ("sv-SE", "sv", "en-US", "en")
    assert fp.timezone == "Europe/Stockholm"
    assert fp.viewport_width == fp.screen_width
    assert fp.viewport_height < fp.screen_height
    assert "X11; Linux x86_64" in fp.user_agent(156)
    assert "Chrome/156.0.0.0 " in fp.user_agent(156)


def test_mobile_fingerprint_follows_the_platform() -> None:
    fp = generate(MOBILE)
    assert fp.mobile and fp.touch
    assert fp.device_scale_factor > 1
    assert fp.screen_width < 500
    assert fp.languages == ("en-GB", "en", "en-US")
    # The engine cannot be Android in every worker: it presents its own Linux.
    assert "X11; Linux x86_64" in fp.user_agent(156)
    assert fp.platform == "Linux x86_64" and fp.ua_platform == "Linux"


def test_round_trip_through_storage() -> None:
    fp = generate(DESKTOP)
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_personas_get_varied_fingerprints() -> None:
    screens = {
        (generate(DESKTOP).screen_width, generate(DESKTOP).viewport_height) for _ in range(40)
    }
    assert len(screens) > 3


def test_version_1_is_upgraded_keeping_the_screen() -> None:
    old = generate(MOBILE).to_dict()
    for key in ("platform", "ua_platform", "color_depth", "avail_width", "avail_height"):
        del old[key]
    old["version"] = 1
    old["user_agent_template"] = "Mozilla/5.0 (Linux; Android 10; K) Chrome/{major}.0.0.0 Mobile"
    fp = Fingerprint.from_dict(old)
    assert fp.version == 2
    assert fp.screen_width == old["screen_width"] and fp.avail_height == old["screen_height"]
    assert "Android" not in fp.user_agent(156)


def test_unknown_versions_are_refused_clearly() -> None:
    data = generate(DESKTOP).to_dict()
    data["version"] = 99
    with pytest.raises(StateError, match="refresh-fingerprint"):
        Fingerprint.from_dict(data)


def test_headed_launch_keeps_the_engines_own_user_agent() -> None:
    fp = generate(DESKTOP)
    assert not any(a.startswith("--user-agent") for a in fingerprint_args(fp, 156, headless=False))
    headless = fingerprint_args(fp, 156, headless=True)
    assert f"--user-agent={fp.user_agent(156)}" in headless
    assert not any(a.startswith("--window-size") for a in headless)
