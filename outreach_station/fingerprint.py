"""Each persona's browser identity: drawn once, stored, applied identically.

A fingerprint is generated when a persona is created, constrained by its
platform (device class, locale, timezone), and stored in the registry. The
browser version is deliberately *not* stored: the user agent names the major
version of the engine that actually runs, filled in at launch, so that the
user agent never contradicts what the engine itself reveals.

Only what the engine can present identically in every scope (page, iframes,
workers, HTTP headers, CSS) is chosen per persona: screen and window, device
pixel ratio, touch, languages, time zone, the font families (a per-persona
fontconfig, see fonts.py) and the number of logical processors (the CPU
affinity the browser is started with). The operating system, memory and GPU
are the machine's own, because a switch cannot change them in workers and a
per-page override is caught by comparing scopes. See docs/fingerprints.md.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any

from outreach_station.errors import StateError
from outreach_station.i18n import _, ngettext

if TYPE_CHECKING:
    from outreach_station.fonts import FontInventory
    from outreach_station.platforms import PlatformProfile

# 2: mobile personas present the engine's own Linux user agent (an Android
# one was contradicted by navigator.platform and the client hints in every
# worker); platform, client-hint platform, colour depth and available screen
# are stored so that checks can hold the browser to them.
# 3: each persona presents its own subset of the machine's font families and
# its own number of logical processors; two personas on one machine were the
# same device to third-party fingerprinting except for the screen.
# 4: each persona renders text with its own font rendering configuration
# (hinting style, autohinter), written into its fontconfig file: canvas text
# pixels follow it in the page and in workers alike, so personas with the
# same fonts and processors are different devices to fingerprinters that
# ignore the screen, languages and zone.
FINGERPRINT_VERSION = 4

# The engine here is Chromium on Linux: every persona presents exactly that,
# because navigator.platform and the client-hint platform cannot be changed
# coherently in every scope by a switch. This is Chromium's own reduced user
# agent string, word for word.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)
MOBILE_UA = DESKTOP_UA
ENGINE_PLATFORM = "Linux x86_64"
ENGINE_UA_PLATFORM = "Linux"

# Screens, pixel ratios and processor counts are drawn from browserforge's
# Bayesian network over Apify's fingerprint datapoints (real browsers'
# fingerprints, maintained upstream): Chrome on Linux for desktop personas,
# Chrome on Android for phone personas, so screen, ratio and processor count
# come together as one real device had them. Draws outside these bounds
# (phones in the desktop data, 800x600 virtual machines) are drawn again.
DESKTOP_BOUNDS = {"width": (1280, 3840), "height": (720, 2160)}
DESKTOP_RATIOS = (1.0, 1.25, 1.5, 1.75, 2.0)
MOBILE_BOUNDS = {"width": (320, 480), "height": (640, 1100), "ratio": (2.0, 4.0)}
# Draws tried for a device whose processor count fits the machine; beyond
# that the screen is kept and the processor count is the machine's own.
SAMPLE_ATTEMPTS = 3000
# Each optional font family (not the machine's choice for a generic family)
# is kept by a persona with this probability.
FONT_KEEP = (2, 3)
# Font rendering configurations a persona draws from (fonts.RENDERINGS has
# what each one writes); each gave its own canvas text pixels on Chromium 156.
# "" (not drawn) is the machine's own configuration.
RENDERINGS = ("slight", "none", "medium", "full", "medium-autohint", "full-autohint")
# Renderings that draw the same greyscale canvas text: measured headed with
# ClientJS (its canvas image alone), full-autohint and medium-autohint gave
# one id; Skia loads glyphs for full and medium hinting alike without LCD.
CANVAS_RENDERINGS = {"full": "medium", "full-autohint": "medium-autohint"}
# Draws tried to find a device no other persona on this machine already is.
DISTINCT_ATTEMPTS = 60
# Fonts and rendering drawn again this many times per drawn device.
FONT_REDRAWS = 4


@dataclass(frozen=True)
class Fingerprint:
    """What a persona's browser presents. Stored as JSON in the registry."""

    version: int
    device: str
    user_agent_template: str
    locale: str
    languages: tuple[str, ...]
    timezone: str
    screen_width: int
    screen_height: int
    viewport_width: int
    viewport_height: int
    device_scale_factor: float
    mobile: bool
    touch: bool
    # What navigator.platform and the Sec-CH-UA-Platform hint say: the engine's own.
    platform: str = ENGINE_PLATFORM
    ua_platform: str = ENGINE_UA_PLATFORM
    color_depth: int = 24
    # A persona's browser is the only window on its screen, maximised; Chromium
    # reports the whole screen as available when it has no panel to avoid.
    avail_width: int = 0
    avail_height: int = 0
    # The font families the persona presents (sorted); empty: every installed one.
    fonts: tuple[str, ...] = ()
    # navigator.hardwareConcurrency; 0: the machine's own.
    hardware_concurrency: int = 0
    # How text is rasterised (a RENDERINGS name); "": the machine's own settings.
    font_rendering: str = ""

    def user_agent(self, engine_major: int) -> str:
        return self.user_agent_template.format(major=engine_major)

    def summary(self) -> str:
        kind = "mobile" if self.mobile else "desktop"  # the profile's device kind, an id
        if self.hardware_concurrency:
            n = self.hardware_concurrency
            cpus = ngettext("{n} CPU", "{n} CPUs", n).format(n=n)
        else:
            cpus = _("machine CPUs")
        if self.fonts:
            n = len(self.fonts)
            fonts = ngettext("{n} font family", "{n} font families", n).format(n=n)
        else:
            fonts = _("machine fonts")
        rendering = ""
        if self.font_rendering:
            rendering = _(", {rendering} hinting").format(rendering=self.font_rendering)
        return (
            f"{kind} {self.screen_width}x{self.screen_height}@{self.device_scale_factor:g}x, "
            f"{self.locale}, {self.timezone}, {cpus}, {fonts}{rendering}"
        )

    def device_key(self, notable_fonts: Collection[str] = ()) -> str:
        """What makes this persona a device of its own on this machine.

        Two personas with equal keys look like one device to a website that
        reads the screen, the fonts that the generic and the browser's default
        family names resolve to (`notable_fonts`, FontInventory.notable), the
        processor count, languages, zone and the font rendering (canvas text
        pixels follow it). Differences in other fonts count
        for nothing here: only a website probing for those very families
        would see them.
        """
        notable = set(notable_fonts)
        fonts = notable & set(self.fonts) if self.fonts else notable
        return json.dumps(
            [
                self.device,
                self.screen_width,
                self.screen_height,
                self.device_scale_factor,
                list(self.languages),
                self.timezone,
                sorted(fonts),
                self.hardware_concurrency,
                self.font_rendering,
            ]
        )

    def canvas_key(self, fonts: FontInventory) -> str:
        """What a device-level fingerprinter that draws Arial text on a canvas sees.

        ThumbmarkJS and ClientJS leave out the screen, languages, zone and
        user agent and draw their canvas text in Arial: the persona is a
        device of its own to them through the face Arial draws with (the
        first of its metric-compatible stand-ins the persona keeps, or the
        default serif's), the font rendering and the processor count. Above
        a pixel ratio of 1 Chromium positions glyphs at subpixels and draws
        canvas text unhinted: what a ratio-1 persona without hinting draws
        (measured: ThumbmarkJS and ClientJS gave such a pair one id), so
        the hinting style moves no pixel there and counts as "none". Canvas
        text is greyscale, where full hinting loads glyphs as medium does
        (CANVAS_RENDERINGS).
        """
        kept = self.fonts or fonts.families
        rendering = CANVAS_RENDERINGS.get(self.font_rendering, self.font_rendering)
        if self.device_scale_factor > 1:
            rendering = "none"
        return json.dumps(
            [self.device, list(fonts.canvas_faces(kept)), rendering, self.hardware_concurrency]
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["languages"] = list(self.languages)
        data["fonts"] = list(self.fonts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """A stored fingerprint; version 1 is upgraded, anything else refused."""
        if data.get("version") == 1:
            data = upgrade_v1(data)
        if data.get("version") == 2:
            data = upgrade_v2(data)
        if data.get("version") == 3:
            data = upgrade_v3(data)
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing or data.get("version") != FINGERPRINT_VERSION:
            raise StateError(
                _(
                    "this persona's stored fingerprint is from another station version; "
                    "run 'station persona refresh-fingerprint PERSONA'"
                )
            )
        if data["font_rendering"] and data["font_rendering"] not in RENDERINGS:
            raise StateError(
                _(
                    "this persona's stored font rendering is unknown; "
                    "run 'station persona refresh-fingerprint <id>'"
                )
            )
        values = {k: v for k, v in data.items() if k in names}
        values["languages"] = tuple(values["languages"])
        values["fonts"] = tuple(values["fonts"])
        return cls(**values)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 to 2: keep the screen and languages, present the engine's own OS.

    The persona keeps what a website remembered of it (screen, window,
    languages, zone); only the Android user agent of mobile personas goes,
    because it was contradicted in every worker anyway.
    """
    upgraded = dict(data)
    upgraded.update(
        version=2,
        user_agent_template=DESKTOP_UA,
        platform=ENGINE_PLATFORM,
        ua_platform=ENGINE_UA_PLATFORM,
        color_depth=24,
        avail_width=data.get("screen_width", 0),
        avail_height=data.get("screen_height", 0),
    )
    return upgraded


def upgrade_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 to 3: the persona keeps presenting the machine's fonts and processors.

    Websites remember what they saw; an upgrade changes nothing a persona
    shows. `station persona refresh-fingerprint` draws its own fonts and
    processor count.
    """
    upgraded = dict(data)
    upgraded.update(version=3, fonts=[], hardware_concurrency=0)
    return upgraded


def upgrade_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 to 4: the persona keeps the machine's own font rendering.

    Its canvas text stays what websites saw; `station persona
    refresh-fingerprint` draws a rendering of its own.
    """
    upgraded = dict(data)
    upgraded.update(version=FINGERPRINT_VERSION, font_rendering="")
    return upgraded


def machine_cpus() -> int:
    """The logical processors this process may run on (what Chromium would report)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - Linux has sched_getaffinity


@dataclass(frozen=True)
class Device:
    """What one real device of the population had: screen, pixel ratio, processors."""

    width: int
    height: int
    ratio: float
    cpus: int


@cache
def _population(device: str) -> Any:
    from browserforge.fingerprints import FingerprintGenerator

    os_name = "android" if device == "mobile" else "linux"
    return FingerprintGenerator(browser="chrome", os=os_name, device=device)


def plausible(device: str, width: int, height: int, ratio: float) -> bool:
    """Whether a drawn screen is one a persona of `device` can present believably."""
    if device == "mobile":
        (w_lo, w_hi), (h_lo, h_hi) = MOBILE_BOUNDS["width"], MOBILE_BOUNDS["height"]
        r_lo, r_hi = MOBILE_BOUNDS["ratio"]
        return w_lo <= width <= w_hi and h_lo <= height <= h_hi and r_lo <= ratio <= r_hi
    (w_lo, w_hi), (h_lo, h_hi) = DESKTOP_BOUNDS["width"], DESKTOP_BOUNDS["height"]
    return w_lo <= width <= w_hi and h_lo <= height <= h_hi and ratio in DESKTOP_RATIOS


def sample_device(device: str, machine: int) -> Device:
    """One device of the real population whose processor count this machine can give.

    The browser is started on that many CPUs, so the count is never more than
    the machine has; the screen is conditioned on it (a 2-CPU computer's
    screen, not a workstation's). A machine too small for the population
    gives its own count.
    """
    population = _population(device)
    fallback: Device | None = None
    for _attempt in range(SAMPLE_ATTEMPTS):
        drawn = population.generate()
        screen, navigator = drawn.screen, drawn.navigator
        width, height = int(screen.width), int(screen.height)
        # Chromium keeps the ratio as a 32-bit float and reports that value.
        ratio = struct.unpack("<f", struct.pack("<f", float(screen.devicePixelRatio)))[0]
        if not plausible(device, width, height, ratio):
            continue
        cpus = int(navigator.hardwareConcurrency or 0)
        if 2 <= cpus <= machine:
            return Device(width, height, ratio, cpus)
        if machine < 2:
            return Device(width, height, ratio, machine)
        if fallback is None:
            fallback = Device(width, height, ratio, machine)
    if fallback is None:  # pragma: no cover - the population always has plausible screens
        raise StateError(
            _("no believable {device} screen could be drawn; report this").format(device=device)
        )
    return fallback


def draw_fonts(fonts: FontInventory) -> tuple[str, ...]:
    """The machine's generic families plus a random part of the rest; () without fontconfig."""
    if not fonts.families:
        return ()
    # Imported here: reading stored fingerprints (`station persona list`) draws nothing.
    import secrets

    keep, out_of = FONT_KEEP
    kept = set(fonts.essential)
    kept.update(f for f in fonts.optional if secrets.randbelow(out_of) < keep)
    return tuple(sorted(kept))


def draw_rendering() -> str:
    """One of RENDERINGS, each as likely as the others."""
    import secrets

    return RENDERINGS[secrets.randbelow(len(RENDERINGS))]


def generate(
    platform: PlatformProfile,
    *,
    fonts: FontInventory | None = None,
    cpus: int | None = None,
    avoid: Collection[str] = (),
    avoid_canvas: Collection[str] = (),
) -> Fingerprint:
    """Draw a new fingerprint for a persona of `platform`.

    `fonts` and `cpus` are what the machine offers (read from it when not
    given). A draw whose `device_key(fonts.notable)` is in `avoid` or whose
    `canvas_key(fonts)` is in `avoid_canvas` (the other personas on this
    machine) is drawn again; when no draw is new to both, one new to `avoid`
    will do; if the machine offers too little variety even for that, the
    last draw is returned and the caller can tell by its key.
    """
    if fonts is None:
        from outreach_station.fonts import inventory

        fonts = inventory()
    cpus = machine_cpus() if cpus is None else cpus
    device = sample_device(platform.device, cpus)
    for attempt in range(DISTINCT_ATTEMPTS):
        drawn = _draw(platform, fonts, cpus, device)
        if drawn.device_key(fonts.notable) not in avoid and (
            drawn.canvas_key(fonts) not in avoid_canvas
        ):
            return drawn
        # Fonts and rendering are cheap to draw again; a device from the
        # population is not, and its pixel ratio may be what collides.
        if attempt % FONT_REDRAWS == FONT_REDRAWS - 1:
            device = sample_device(platform.device, cpus)
    for _attempt in range(DISTINCT_ATTEMPTS):
        if drawn.device_key(fonts.notable) not in avoid:
            break
        drawn = _draw(platform, fonts, cpus)
    return drawn


def _draw(
    platform: PlatformProfile, fonts: FontInventory, cpus: int, device: Device | None = None
) -> Fingerprint:
    common: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "locale": platform.locale,
        "languages": platform.accept_languages,
        "timezone": platform.timezone,
        "fonts": draw_fonts(fonts),
        "font_rendering": draw_rendering(),
    }
    drawn = device or sample_device(platform.device, cpus)
    common["hardware_concurrency"] = drawn.cpus
    width, height = drawn.width, drawn.height
    if platform.device == "mobile":
        # A phone browser's viewport is the screen less the status and URL bars.
        viewport_height = height - (56 + 24)
        return Fingerprint(
            **common,
            device="mobile",
            user_agent_template=MOBILE_UA,
            screen_width=width,
            screen_height=height,
            viewport_width=width,
            viewport_height=viewport_height,
            device_scale_factor=drawn.ratio,
            mobile=True,
            touch=True,
            avail_width=width,
            avail_height=height,
        )
    import secrets

    # A maximised window: the screen less a desktop panel and the browser's own bars.
    panel = (0, 27, 32, 48)[secrets.randbelow(4)]
    chrome_ui = 85 + secrets.randbelow(3) * 2
    return Fingerprint(
        **common,
        device="desktop",
        user_agent_template=DESKTOP_UA,
        screen_width=width,
        screen_height=height,
        viewport_width=width,
        viewport_height=height - panel - chrome_ui,
        device_scale_factor=drawn.ratio,
        mobile=False,
        touch=False,
        avail_width=width,
        avail_height=height,
    )


def outer_window(fingerprint: Fingerprint) -> tuple[int, int] | None:
    """The outer window size a desktop persona presents: its viewport plus the browser's bars.

    None for a phone: mobile emulation already reports the viewport as the
    window, as a phone's browser does.
    """
    if fingerprint.mobile:
        return None
    chrome_ui = fingerprint.screen_height - fingerprint.viewport_height
    height = fingerprint.viewport_height + min(85, max(chrome_ui, 0))
    return fingerprint.viewport_width, min(height, fingerprint.screen_height)


def fingerprint_args(fingerprint: Fingerprint, engine_major: int, *, headless: bool) -> list[str]:
    """The switches that present `fingerprint`, for browser.build_launch.

    Headed, the engine's own user agent is already the stored one, and
    overriding it would empty the high-entropy client hints (architecture,
    full version list) in every scope; only headless needs the override, to
    hide "HeadlessChrome". In headless the --user-agent switch also gives
    every new window a phantom frame (outer = viewport + 8x131 px, measured on
    Chromium 156), so the outer window is set per page through the protocol
    instead (emulation.install_window, from LaunchSpec.window).
    --ozone-override-screen-size was tried and left out: with it headless
    framed the window and outgrew the screen.
    """
    if not headless:
        if not fingerprint.mobile:
            # A desktop window is sized through the protocol once it exists
            # (emulation.ScreenGuard): the switch would give every window the
            # same size, a page's small popup too.
            return []
        # A phone persona gets a phone-sized window.
        chrome_ui = fingerprint.screen_height - fingerprint.viewport_height
        height = fingerprint.viewport_height + min(85, max(chrome_ui, 0))
        return [f"--window-size={fingerprint.viewport_width},{height}"]
    return [f"--user-agent={fingerprint.user_agent(engine_major)}"]


class FingerprintDrawer:
    """Draws fingerprints that none of `existing` (stored fingerprints) already presents.

    Blocked and retired personas count too: a rotated persona must not look
    like the device the platform just blocked.
    """

    def __init__(
        self,
        existing: Collection[Mapping[str, Any]],
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        from outreach_station.fonts import inventory

        self._fonts = inventory()
        self._notify = notify
        self._taken: set[str] = set()
        self._canvases: set[str] = set()
        for stored in existing:
            with suppress(StateError, TypeError, ValueError):
                parsed = Fingerprint.from_dict(dict(stored))
                self._taken.add(parsed.device_key(self._fonts.notable))
                self._canvases.add(parsed.canvas_key(self._fonts))

    def __call__(self, profile: PlatformProfile) -> Fingerprint:
        fingerprint = generate(
            profile, fonts=self._fonts, avoid=self._taken, avoid_canvas=self._canvases
        )
        self._canvases.add(fingerprint.canvas_key(self._fonts))
        key = fingerprint.device_key(self._fonts.notable)
        if key in self._taken and self._notify is not None:
            self._notify(
                _(
                    "warning: the new persona looks like the same device as another persona: "
                    "this machine offers too few screens, font families or processors to tell "
                    "them apart (see 'station doctor')"
                )
            )
        self._taken.add(key)
        return fingerprint
