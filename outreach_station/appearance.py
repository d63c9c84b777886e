"""The persona in plain sight: a name and a colour the browser itself shows.

A person with several windows open must see at a glance which persona a
window belongs to, and that it is not her own browser. Chromium shows both
in its own frame, where no page can read them: the profile's theme colour
(`browser.theme.user_color` in the profile's Preferences, honoured by
Chromium 156: the tab strip and toolbar take its tones) and the window's own
name (`--window-name`: the title the desktop shows for the first window, in
place of the page's title). The profile's name (in Preferences)
is what Chromium's profile menu shows.

Windows opened later (Ctrl+N, a link opening a window) keep the colour but
not the name: Chromium gives a window a title of its own only from the start
switch, a session or tab restore, or the person's "Name window..." menu; the
profile's name reaches only the title screen readers hear, even with several
profiles in Local State; no preference or managed policy names windows
(measured: tests/browser/test_appearance.py). None of these reaches a page, a frame
or a worker (tests/browser/test_appearance.py).

The colour belongs to the platform, so that a person learns "red is the
classifieds site"; the same colour marks the platform in station's terminal
output (`platform_colour`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from outreach_station import fsutil

# Readable on a light frame and as terminal text on dark and light
# backgrounds alike; few enough to learn, distinct for common colour blindness
# pairs only as far as eight colours allow.
_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (0xC0, 0x39, 0x2B)),
    ("blue", (0x1F, 0x6F, 0xB2)),
    ("green", (0x1E, 0x84, 0x49)),
    ("purple", (0x7D, 0x3C, 0x98)),
    ("orange", (0xCA, 0x6F, 0x1E)),
    ("teal", (0x11, 0x7A, 0x65)),
    ("pink", (0xC2, 0x18, 0x5B)),
    ("brown", (0x8A, 0x5A, 0x2B)),
)
# A window title is one line; a label is already printable and short
# (values.validate_label), the platform's name comes from IT's profile file.
_MAX_TITLE = 80
SEPARATOR = " \u00b7 "


@dataclass(frozen=True)
class Colour:
    name: str
    rgb: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    @property
    def argb(self) -> int:
        """The colour as Chromium keeps an SkColor in its preferences (signed 32-bit, opaque)."""
        r, g, b = self.rgb
        value = 0xFF000000 | r << 16 | g << 8 | b
        return value - (1 << 32)

    def sgr(self) -> str:
        """The terminal's Select Graphic Rendition parameters for text in this colour."""
        r, g, b = self.rgb
        return f"38;2;{r};{g};{b}"


PALETTE: tuple[Colour, ...] = tuple(Colour(name, rgb) for name, rgb in _PALETTE)


def platform_colour(platform_id: str) -> Colour:
    """The platform's colour: the same on every laptop and in every release with this palette."""
    digest = hashlib.sha256(platform_id.lower().encode("utf-8")).digest()
    return PALETTE[digest[0] % len(PALETTE)]


@dataclass(frozen=True)
class Appearance:
    """What the browser's own frame shows for one persona."""

    title: str
    colour: Colour


def _one_line(text: str) -> str:
    # The platform's name comes from a profile file: no control characters
    # reach the window manager.
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def appearance_for(
    *, label: str, persona_id: str, platform_id: str, platform_name: str
) -> Appearance:
    """ "Label · Platform" in the platform's colour; a persona without a label shows its id."""
    who = _one_line(label) or persona_id
    where = _one_line(platform_name) or platform_id
    title = f"{who}{SEPARATOR}{where}"
    if len(title) > _MAX_TITLE:
        title = title[: _MAX_TITLE - 1] + "\u2026"
    return Appearance(title=title, colour=platform_colour(platform_id))


def window_switches(appearance: Appearance | None) -> tuple[str, ...]:
    # Names the first window only; Chromium has no way to name later ones (module docstring).
    return () if appearance is None else (f"--window-name={appearance.title}",)


def _load(path: Path) -> dict[str, object] | None:
    """The JSON object in `path`, {} when there is none, None when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _section(data: dict[str, object], *keys: str) -> dict[str, object]:
    for key in keys:
        child = data.get(key)
        if not isinstance(child, dict):
            child = {}
            data[key] = child
        data = child
    return data


def apply_to_profile(user_data_dir: Path, appearance: Appearance | None) -> None:
    """Write the name and colour into the profile before the browser starts.

    A file Chromium itself would not read is left as it is: Chromium then
    starts with its defaults, and the persona's other settings are not lost.
    """
    if appearance is None:
        return
    prefs_path = user_data_dir / "Default" / "Preferences"
    prefs = _load(prefs_path)
    if prefs is not None:
        profile = _section(prefs, "profile")
        profile["name"] = appearance.title
        profile["using_default_name"] = False
        theme = _section(prefs, "browser", "theme")
        # Chromium 156 reads user_color2 once it has migrated user_color:
        # both are set so a changed palette reaches every profile.
        for key in ("user_color", "user_color2"):
            theme[key] = appearance.colour.argb
        prefs_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsutil.write_atomic(prefs_path, json.dumps(prefs).encode("utf-8"), private_dir=False)
    # Local State is left to Chromium: a profile entry written there before the
    # first start makes Chromium fetch profile avatars from www.gstatic.com at
    # every start (tests/browser/test_quiet_start.py), a call no persona should make.
