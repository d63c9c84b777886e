from __future__ import annotations

import struct
from collections import Counter
from dataclasses import replace

import pytest

from outreach_station import fingerprint
from outreach_station.errors import StateError
from outreach_station.fingerprint import (
    Fingerprint,
    fingerprint_args,
    generate,
    plausible,
    sample_device,
)
from outreach_station.fonts import FontInventory
from outreach_station.platforms import PlatformProfile

# The families of this test machine, as fonts.inventory() reads them.
FONTS = FontInventory(
    families=(
        "DejaVu Math TeX Gyre",
        "DejaVu Sans",
        "DejaVu Sans Mono",
        "DejaVu Serif",
        "Liberation Mono",
        "Liberation Sans",
        "Liberation Sans Narrow",
        "Liberation Serif",
    ),
    essential=("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono"),
    notable=(
        "DejaVu Sans",
        "DejaVu Sans Mono",
        "DejaVu Serif",
        "Liberation Sans",
        "Liberation Serif",
    ),
)

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
        (fp.screen_width, fp.viewport_height)
        for fp in (generate(DESKTOP, fonts=FONTS, cpus=8) for _ in range(40))
    }
    assert len(screens) > 3


def test_version_1_is_upgraded_keeping_the_screen() -> None:
    old = generate(MOBILE).to_dict()
    for key in ("platform", "ua_platform", "color_depth", "avail_width", "avail_height"):
        del old[key]
    old["version"] = 1
    old["user_agent_template"] = "Mozilla/5.0 (Linux; Android 10; K) Chrome/{major}.0.0.0 Mobile"
    for key in ("fonts", "hardware_concurrency"):
        del old[key]
    fp = Fingerprint.from_dict(old)
    assert fp.version == fingerprint.FINGERPRINT_VERSION
    assert fp.screen_width == old["screen_width"] and fp.avail_height == old["screen_height"]
    assert "Android" not in fp.user_agent(156)
    # Upgraded personas keep presenting the machine's fonts and processors.
    assert fp.fonts == () and fp.hardware_concurrency == 0


def test_version_2_is_upgraded_keeping_everything_a_website_saw() -> None:
    new = generate(DESKTOP, fonts=FONTS, cpus=8)
    old = new.to_dict()
    del old["fonts"], old["hardware_concurrency"]
    old["version"] = 2
    fp = Fingerprint.from_dict(old)
    assert fp.version == fingerprint.FINGERPRINT_VERSION
    assert fp.fonts == () and fp.hardware_concurrency == 0 and fp.font_rendering == ""
    assert (fp.screen_width, fp.viewport_height, fp.languages) == (
        new.screen_width,
        new.viewport_height,
        new.languages,
    )


def test_devices_come_from_the_real_population_and_fit_the_machine() -> None:
    desktops = [sample_device("desktop", 8) for _ in range(300)]
    assert all(2 <= d.cpus <= 8 for d in desktops)
    assert all(plausible("desktop", d.width, d.height, d.ratio) for d in desktops)
    assert len({d.cpus for d in desktops}) >= 4
    assert len({(d.width, d.height) for d in desktops}) >= 8
    # The most common desktop screen of the population is the most common draw.
    common = Counter((d.width, d.height) for d in desktops).most_common(1)[0][0]
    assert common == (1920, 1080)
    phones = [sample_device("mobile", 8) for _ in range(100)]
    assert all(plausible("mobile", d.width, d.height, d.ratio) for d in phones)
    assert all(d.ratio >= 2 for d in phones)
    # Stored as the engine holds it (a 32-bit float), so the page reports it exactly.
    assert all(struct.unpack("<f", struct.pack("<f", d.ratio))[0] == d.ratio for d in phones)
    # A two-CPU machine gives two-CPU devices; a one-CPU machine its own count.
    assert {sample_device("desktop", 2).cpus for _ in range(20)} == {2}
    assert {sample_device("mobile", 1).cpus for _ in range(5)} == {1}


def test_implausible_screens_are_refused() -> None:
    assert plausible("desktop", 1920, 1080, 1.0)
    assert not plausible("desktop", 800, 600, 1.0)  # a virtual machine's default
    assert not plausible("desktop", 393, 873, 2.75)  # a phone in the desktop data
    assert not plausible("desktop", 1661, 935, 1.15625)  # an odd zoom factor
    assert plausible("mobile", 412, 915, 2.625)
    assert not plausible("mobile", 320, 480, 1.0)


def test_fonts_keep_the_generic_families_and_vary_the_rest() -> None:
    drawn = [generate(DESKTOP, fonts=FONTS, cpus=4).fonts for _ in range(200)]
    for fonts in drawn:
        assert set(FONTS.essential) <= set(fonts) <= set(FONTS.families)
        assert list(fonts) == sorted(fonts)
    optional = {f for fonts in drawn for f in fonts if f not in FONTS.essential}
    assert optional == set(FONTS.optional)
    assert len(set(drawn)) > 8
    # Without fontconfig the persona presents what the machine has.
    assert generate(DESKTOP, fonts=FontInventory((), ()), cpus=4).fonts == ()


def test_generate_avoids_the_devices_other_personas_already_are() -> None:
    taken: set[str] = set()
    for _ in range(30):
        fp = generate(DESKTOP, fonts=FONTS, cpus=8, avoid=taken)
        key = fp.device_key(FONTS.notable)
        assert key not in taken
        taken.add(key)


def test_a_machine_with_too_little_variety_returns_a_taken_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A seam: the population reduced to a single device, one font set.
    one = fingerprint.Device(1920, 1080, 1.0, 2)
    monkeypatch.setattr(fingerprint, "sample_device", lambda _device, _machine: one)
    monkeypatch.setattr(fingerprint, "draw_rendering", lambda: "slight")
    bare = FontInventory(("DejaVu Sans",), ("DejaVu Sans",), ("DejaVu Sans",))
    first = generate(DESKTOP, fonts=bare, cpus=2)
    taken = {first.device_key(bare.notable)}
    again = generate(DESKTOP, fonts=bare, cpus=2, avoid=taken)
    # Returned all the same; its key tells the caller it is not a new device.
    assert again.device_key(bare.notable) in taken


def test_font_rendering_alone_makes_devices_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same seam: one screen, one font set, one processor count. The
    # renderings are what is left to tell personas apart.
    one = fingerprint.Device(1920, 1080, 1.0, 2)
    monkeypatch.setattr(fingerprint, "sample_device", lambda _device, _machine: one)
    bare = FontInventory(("DejaVu Sans",), ("DejaVu Sans",), ("DejaVu Sans",))
    taken: set[str] = set()
    for _ in fingerprint.RENDERINGS:
        fp = generate(DESKTOP, fonts=bare, cpus=2, avoid=taken)
        taken.add(fp.device_key(bare.notable))
    assert len(taken) == len(fingerprint.RENDERINGS)


def test_device_key_counts_only_fonts_that_default_text_is_drawn_with() -> None:
    fp = generate(DESKTOP, fonts=FONTS, cpus=8)
    notable = FONTS.notable
    with_math = replace(fp, fonts=tuple(sorted({*fp.fonts, "DejaVu Math TeX Gyre"})))
    without_math = replace(fp, fonts=tuple(f for f in fp.fonts if f != "DejaVu Math TeX Gyre"))
    assert with_math.device_key(notable) == without_math.device_key(notable)
    with_arial = replace(fp, fonts=tuple(sorted({*fp.fonts, "Liberation Sans"})))
    without_arial = replace(fp, fonts=tuple(f for f in fp.fonts if f != "Liberation Sans"))
    assert with_arial.device_key(notable) != without_arial.device_key(notable)
    assert replace(fp, hardware_concurrency=4).device_key(notable) != replace(
        fp, hardware_concurrency=8
    ).device_key(notable)
    # An upgraded persona (fonts ()) presents every installed font.
    assert replace(fp, fonts=()).device_key(notable) == replace(
        fp, fonts=FONTS.families
    ).device_key(notable)


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


def test_outer_window_is_a_maximised_browser_within_the_screen() -> None:
    from outreach_station.fingerprint import outer_window

    for _ in range(50):
        fp = generate(DESKTOP, fonts=FONTS, cpus=8)
        outer = outer_window(fp)
        assert outer is not None
        assert outer[0] == fp.screen_width
        assert fp.viewport_height < outer[1] <= fp.screen_height
        assert outer[1] - fp.viewport_height <= 85
    assert outer_window(generate(MOBILE)) is None


def _misc(**changes: object) -> dict[str, object]:
    good: dict[str, object] = {
        "plugins_length": 5,
        "mime_types_length": 2,
        "pdf_viewer_enabled": True,
        "window_chrome": True,
        "chrome_app": "object",
        "chrome_load_times": "function",
        "chrome_csi": "function",
        "automation_globals": [],
        "notification_permission": "default",
        "notification_query": "prompt",
        "console_serialized": False,
    }
    return {**good, **changes}


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"automation_globals": ["cdc_adoQpoasnfa76pfcZLmcfl_Array"]}, "no automation globals"),
        ({"chrome_load_times": "undefined"}, "window.chrome shape"),
        ({"plugins_length": 0}, "plugins and MIME types"),
        ({"notification_permission": "denied"}, "notification permission agrees"),
        ({"console_serialized": True}, "console does not serialize"),
    ],
)
def test_automation_checks_catch_each_tell(change: dict[str, object], failing: str) -> None:
    from outreach_station.inspector.checks import _automation_checks

    assert all(c.ok for c in _automation_checks(_misc()))
    bad = [c for c in _automation_checks(_misc(**change)) if not c.ok]
    assert [c.name for c in bad] and bad[0].name.startswith(failing)
    assert len(bad) == 1


def test_window_checks_catch_the_phantom_frame() -> None:
    from outreach_station.inspector.checks import _window_checks

    screen = {
        "width": 1920,
        "height": 1080,
        "avail_width": 1920,
        "avail_height": 1080,
        "inner_width": 1920,
        "inner_height": 995,
        "outer_width": 1920,
        "outer_height": 1080,
    }
    assert all(c.ok for c in _window_checks(screen))
    phantom = dict(screen, outer_width=1928, outer_height=1126)
    bad = [c for c in _window_checks(phantom) if not c.ok]
    assert [c.name for c in bad] == ["outer window fits the screen"]
    assert bad[0].seen == "1928x1126" and bad[0].expected == "<= 1920x1080"


def test_version_3_is_upgraded_keeping_the_machines_font_rendering() -> None:
    new = generate(DESKTOP, fonts=FONTS, cpus=8)
    old = new.to_dict()
    del old["font_rendering"]
    old["version"] = 3
    fp = Fingerprint.from_dict(old)
    assert fp.version == 4
    # Nothing a website saw changes: the same fonts, processors and screen,
    # and text rendered with the machine's own settings, as before.
    assert fp == replace(new, font_rendering="")


def test_personas_draw_every_font_rendering_and_it_makes_a_device() -> None:
    drawn = Counter(generate(DESKTOP, fonts=FONTS, cpus=2).font_rendering for _ in range(120))
    assert set(drawn) == set(fingerprint.RENDERINGS), drawn
    fp = generate(DESKTOP, fonts=FONTS, cpus=2)
    other = replace(fp, font_rendering="full" if fp.font_rendering != "full" else "none")
    assert fp.device_key(FONTS.notable) != other.device_key(FONTS.notable)
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_an_unknown_font_rendering_is_refused_clearly() -> None:
    stored = dict(generate(DESKTOP, fonts=FONTS, cpus=2).to_dict(), font_rendering="wobbly")
    with pytest.raises(StateError, match="refresh-fingerprint"):
        Fingerprint.from_dict(stored)


# A laptop with fonts-croscore and fonts-liberation: Arial's stand-ins in
# fontconfig's order (fonts.inventory reads them with fc-match -s).
LAPTOP = replace(
    FONTS,
    families=tuple(sorted({*FONTS.families, "Arimo", "Tinos", "Cousine"})),
    stand_ins=(
        ("Arial", ("Arimo", "Liberation Sans")),
        ("Times New Roman", ("Tinos", "Liberation Serif")),
        ("Courier New", ("Cousine", "Liberation Mono")),
    ),
)


def test_canvas_key_is_the_face_arial_draws_with_the_rendering_and_processors() -> None:
    fp = replace(
        generate(DESKTOP, fonts=LAPTOP, cpus=8),
        device_scale_factor=1.0,
        font_rendering="full",
        hardware_concurrency=4,
    )
    essential = tuple(FONTS.essential)
    both = replace(fp, fonts=(*essential, "Arimo", "Liberation Sans"))
    arimo = replace(fp, fonts=(*essential, "Arimo"))
    liberation = replace(fp, fonts=(*essential, "Liberation Sans"))
    # Arimo comes first: with both kept, Arial draws with Arimo.
    assert both.canvas_key(LAPTOP) == arimo.canvas_key(LAPTOP)
    assert arimo.canvas_key(LAPTOP) != liberation.canvas_key(LAPTOP)
    # A family Arial never draws with changes nothing; without a stand-in the
    # canvas falls back to Times New Roman's face.
    assert replace(arimo, fonts=(*arimo.fonts, "Cousine")).canvas_key(LAPTOP) == arimo.canvas_key(
        LAPTOP
    )
    tinos = replace(fp, fonts=(*essential, "Tinos"))
    serif = replace(fp, fonts=(*essential, "Liberation Serif"))
    assert tinos.canvas_key(LAPTOP) != serif.canvas_key(LAPTOP)
    # The rendering and the processors count; the screen and languages do not.
    assert replace(arimo, font_rendering="none").canvas_key(LAPTOP) != arimo.canvas_key(LAPTOP)
    assert replace(arimo, hardware_concurrency=2).canvas_key(LAPTOP) != arimo.canvas_key(LAPTOP)
    assert replace(arimo, screen_width=1280, languages=("en-GB",)).canvas_key(
        LAPTOP
    ) == arimo.canvas_key(LAPTOP)
    # Full hinting draws greyscale canvas text as medium does (measured with ClientJS).
    assert replace(arimo, font_rendering="medium").canvas_key(LAPTOP) == arimo.canvas_key(LAPTOP)
    assert replace(arimo, font_rendering="full-autohint").canvas_key(LAPTOP) == replace(
        arimo, font_rendering="medium-autohint"
    ).canvas_key(LAPTOP)
    # Above a pixel ratio of 1 the hinting style moves no canvas pixel.
    hidpi = replace(arimo, device_scale_factor=2.0)
    assert replace(hidpi, font_rendering="none").canvas_key(LAPTOP) == hidpi.canvas_key(LAPTOP)
    assert hidpi.canvas_key(LAPTOP) != arimo.canvas_key(LAPTOP)
    # ... and it draws what a ratio-1 persona without hinting draws (measured headed:
    # ThumbmarkJS and ClientJS gave such a pair one id).
    assert hidpi.canvas_key(LAPTOP) == replace(arimo, font_rendering="none").canvas_key(LAPTOP)


def test_drawer_gives_new_personas_faces_and_renderings_no_other_persona_has() -> None:
    taken: set[str] = set()
    canvases: set[str] = set()
    for _ in range(12):
        fp = generate(DESKTOP, fonts=LAPTOP, cpus=2, avoid=taken, avoid_canvas=canvases)
        assert fp.canvas_key(LAPTOP) not in canvases
        taken.add(fp.device_key(LAPTOP.notable))
        canvases.add(fp.canvas_key(LAPTOP))
