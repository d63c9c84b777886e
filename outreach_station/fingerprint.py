"""Each persona's browser identity: drawn once, stored, applied identically.

A fingerprint is generated when a persona is created, constrained by its
platform (device class, locale, timezone), and stored in the registry. The
browser version is deliberately *not* stored: the user agent names the major
version of the engine that actually runs, filled in at launch, so that the
user agent never contradicts what the engine itself reveals.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, fields
from typing import Any

from outreach_station.errors import StationError
from outreach_station.platforms import PlatformProfile

FINGERPRINT_VERSION = 1

# The engine here is Chromium on Linux: a desktop persona presents exactly
# that, because navigator.platform and other engine-level values cannot be
# changed coherently in every scope by a switch.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)
MOBILE_UA = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Mobile Safari/537.36"
)

# (width, height, weight): common desktop screens, weighted roughly by how
# often they are seen on desktop browsers in Europe.
DESKTOP_SCREENS: tuple[tuple[int, int, int], ...] = (
    (1920, 1080, 40),
    (1366, 768, 12),
    (1536, 864, 10),
    (1440, 900, 7),
    (2560, 1440, 8),
    (1600, 900, 6),
    (1680, 1050, 4),
    (1280, 1024, 3),
    (1280, 800, 4),
    (1920, 1200, 6),
)
# (css width, css height, device pixel ratio, weight): common phone viewports.
MOBILE_SCREENS: tuple[tuple[int, int, float, int], ...] = (
    (393, 873, 2.75, 10),
    (412, 915, 2.625, 12),
    (360, 800, 3.0, 10),
    (384, 854, 2.8125, 6),
    (412, 892, 2.625, 6),
    (360, 780, 3.0, 4),
)


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

    def user_agent(self, engine_major: int) -> str:
        return self.user_agent_template.format(major=engine_major)

    def summary(self) -> str:
        kind = "mobile" if self.mobile else "desktop"
        return (
            f"{kind} {self.screen_width}x{self.screen_height}@{self.device_scale_factor:g}x, "
            f"{self.locale}, {self.timezone}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["languages"] = list(self.languages)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing or data.get("version") != FINGERPRINT_VERSION:
            raise StationError(
                "this persona's stored fingerprint is from another station version; "
                "run 'station persona refresh-fingerprint <id>'"
            )
        values = {k: v for k, v in data.items() if k in names}
        values["languages"] = tuple(values["languages"])
        return cls(**values)


def _weighted_choice(options: tuple[Any, ...], weight_index: int) -> Any:
    total = sum(option[weight_index] for option in options)
    pick = secrets.randbelow(total)
    for option in options:
        pick -= option[weight_index]
        if pick < 0:
            return option
    return options[-1]  # pragma: no cover - unreachable with positive weights


def generate(platform: PlatformProfile) -> Fingerprint:
    """Draw a new fingerprint for a persona of `platform`."""
    if platform.device == "mobile":
        width, height, dpr, _ = _weighted_choice(MOBILE_SCREENS, 3)
        # A phone browser's viewport is the screen less the status and URL bars.
        viewport_height = height - (56 + 24)
        return Fingerprint(
            version=FINGERPRINT_VERSION,
            device="mobile",
            user_agent_template=MOBILE_UA,
            locale=platform.locale,
            languages=platform.accept_languages,
            timezone=platform.timezone,
            screen_width=width,
            screen_height=height,
            viewport_width=width,
            viewport_height=viewport_height,
            device_scale_factor=dpr,
            mobile=True,
            touch=True,
        )
    width, height, _ = _weighted_choice(DESKTOP_SCREENS, 2)
    # A maximised window: the screen less a desktop panel and the browser's own bars.
    panel = (0, 27, 32, 48)[secrets.randbelow(4)]
    chrome_ui = 85 + secrets.randbelow(3) * 2
    return Fingerprint(
        version=FINGERPRINT_VERSION,
        device="desktop",
        user_agent_template=DESKTOP_UA,
        locale=platform.locale,
        languages=platform.accept_languages,
        timezone=platform.timezone,
        screen_width=width,
        screen_height=height,
        viewport_width=width,
        viewport_height=height - panel - chrome_ui,
        device_scale_factor=1.0,
        mobile=False,
        touch=False,
    )
