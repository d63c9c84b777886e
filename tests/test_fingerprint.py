from __future__ import annotations

from outreach_station.fingerprint import Fingerprint, generate
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
    assert "Mobile Safari" in fp.user_agent(156)


def test_round_trip_through_storage() -> None:
    fp = generate(DESKTOP)
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_personas_get_varied_fingerprints() -> None:
    screens = {
        (generate(DESKTOP).screen_width, generate(DESKTOP).viewport_height) for _ in range(40)
    }
    assert len(screens) > 3
