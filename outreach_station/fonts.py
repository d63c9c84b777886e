"""Which font families a persona's browser can see: a per-persona fontconfig.

Installed fonts are among the strongest device tells a website has: they
change text metrics, canvas drawings and which families `local()` and width
probes find. Chromium on Linux asks fontconfig for every font, and fontconfig
reads the user's configuration from `$XDG_CONFIG_HOME/fontconfig/fonts.conf`;
the persona's browser already has a private HOME and XDG_CONFIG_HOME, so a
file there gives each persona its own font set without touching the system.

The file is an accept-list: every font is rejected except the families the
persona presents, and of those only the faces Chromium can draw (TrueType and
CFF: it refuses Type 1 and bitmap fonts, and a Type 1 face that fontconfig
preferred would hide the family from the page). Fonts installed on the
machine later therefore stay hidden from existing personas, which keeps them
stable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

# The generic families every page relies on; the machine's choice for each is
# always kept so that text in any script still finds a font.
GENERICS = ("sans-serif", "serif", "monospace", "emoji")
# Chromium's own default families on Linux (standard and serif: Times New
# Roman, sans-serif: Arial, fixed: Monospace) and the system UI font: every
# page's text is drawn with what these resolve to unless it names other
# fonts, and canvas fingerprints name Arial and Times New Roman. The installed
# fonts they resolve to are what makes two personas visibly different
# devices; see FontInventory.notable.
DEFAULT_FAMILIES = ("Times New Roman", "Arial", "Monospace", "system-ui")
# Families websites commonly probe for by name (the inspector probes these
# as well as every installed family).
COMMON_FAMILIES = (
    "Arial",
    "Helvetica",
    "Times New Roman",
    "Courier New",
    "Verdana",
    "Georgia",
    "Tahoma",
    "system-ui",
)

# The names canvas fingerprints draw text in (ThumbmarkJS and ClientJS: Arial)
# and Chromium's default serif; which installed face each one draws with is
# the lever `FontInventory.draws_with` reads.
STAND_IN_NAMES = ("Arial", "Times New Roman", "Courier New")
# Families Chromium treats as one (Skia's font equivalence classes on Linux):
# asked for one of them, it accepts any installed other, so a page that probes
# "Liberation Mono" on a machine with Cousine finds it. On any real machine
# these are present together or not at all; the font check expects the same.
METRIC_COMPATIBLE: tuple[frozenset[str], ...] = (
    frozenset({"Arial", "Arimo", "Liberation Sans"}),
    frozenset({"Times New Roman", "Tinos", "Liberation Serif"}),
    frozenset({"Courier New", "Cousine", "Liberation Mono"}),
    frozenset({"Symbol", "Symbol Neu"}),
)


def _equals(name: str) -> frozenset[str]:
    return next((equals for equals in METRIC_COMPATIBLE if name in equals), frozenset({name}))


def visible_families(families: Iterable[str], installed: Iterable[str]) -> frozenset[str]:
    """The installed families a page finds with `families` available: theirs and their equals."""
    shown = set(families)
    present = frozenset(installed)
    for equals in METRIC_COMPATIBLE:
        if equals & shown:
            shown |= equals & present
    return frozenset(shown)


CONFIG_RELATIVE = Path("fontconfig") / "fonts.conf"
# Font rendering configurations, as a desktop's fontconfig settings write
# them (fingerprint.RENDERINGS names the ones personas draw). Chromium reads
# hinting and the autohinter from fontconfig for every text it rasterises,
# canvas in pages and workers included. Subpixel order (rgba) and the LCD
# filter are left alone: they changed no canvas pixel (Chromium 156 draws
# canvas text in greyscale), and antialiasing off is too rare to be believable.
RENDERINGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "none": (("hinting", "bool", "false"), ("hintstyle", "const", "hintnone")),
    "slight": (("hinting", "bool", "true"), ("hintstyle", "const", "hintslight")),
    "medium": (("hinting", "bool", "true"), ("hintstyle", "const", "hintmedium")),
    "full": (("hinting", "bool", "true"), ("hintstyle", "const", "hintfull")),
    "medium-autohint": (
        ("hinting", "bool", "true"),
        ("hintstyle", "const", "hintmedium"),
        ("autohint", "bool", "true"),
    ),
    "full-autohint": (
        ("hinting", "bool", "true"),
        ("hintstyle", "const", "hintfull"),
        ("autohint", "bool", "true"),
    ),
}
# The font formats Chromium renders (fontconfig's names for them).
RENDERABLE = ("TrueType", "CFF")
# The text the inspector measures to find a family (FONT_SAMPLE in
# inspector/static/collect.js): a family with none of these characters (Noto
# Sans Tamil Supplement) draws it in the fallback font, so no page can find it
# by measuring text, and the font check cannot hold the browser to it.
TEXT_PROBE = "mmmmmmmmmmlli WQ@#0123456789 fiflÅé"


@dataclass(frozen=True)
class FontInventory:
    """The font families the machine offers a persona's browser."""

    families: tuple[str, ...]
    # The machine's family for each generic; never hidden from a persona.
    essential: tuple[str, ...]
    # The installed families that the generic and the browser's default
    # family names resolve to: what every page's text is drawn with.
    notable: tuple[str, ...] = ()
    # The families with a character of TEXT_PROBE: those a page measuring
    # text can find. (): not read, take every family.
    legible: tuple[str, ...] = ()
    # For each of STAND_IN_NAMES, its installed metric-compatible faces in
    # fontconfig's order of preference: the first a persona keeps is the
    # face that name draws with (Chromium refuses any other face for it).
    stand_ins: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def measurable(self) -> tuple[str, ...]:
        """The families a page's text-width probe can find."""
        return self.legible or self.families

    def draws_with(self, name: str, kept: Iterable[str]) -> str:
        """The face `name` (one of STAND_IN_NAMES) draws with for a persona keeping `kept`.

        "" when the persona keeps none of its stand-ins: the page's text then
        falls back to another family (for a canvas, Chromium's default font).
        """
        shown = set(kept)
        order = dict(self.stand_ins).get(name, ())
        return next((face for face in order if face in shown), "")

    def canvas_faces(self, kept: Iterable[str]) -> tuple[str, ...]:
        """What Arial text draws with for a persona keeping `kept`, and Times New Roman's
        face when Arial has none (the canvas then falls back to the default serif)."""
        kept = tuple(kept)
        arial = self.draws_with("Arial", kept)
        if arial:
            return (arial,)
        return ("", self.draws_with("Times New Roman", kept))

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(f for f in self.families if f not in self.essential)


def _fontconfig(args: list[str], env: dict[str, str]) -> str | None:
    tool = shutil.which(args[0])
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, *args[1:]],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def inventory() -> FontInventory:
    """The installed families, read with fontconfig's own tools (empty without them)."""
    # Listed as the persona's browser sees the machine: without the person's
    # own ~/.config/fontconfig (the browser never reads it), with any
    # FONTCONFIG_* setting of the image (the browser inherits those).
    with tempfile.TemporaryDirectory(prefix="station-fc-") as empty:
        env = {k: v for k, v in os.environ.items() if k.startswith("FONTCONFIG_")}
        env.update(HOME=empty, XDG_CONFIG_HOME=empty, PATH="/usr/bin:/bin")
        return _inventory(env)


def _covers(charset: str, codepoints: frozenset[int]) -> bool:
    """Whether fontconfig's charset text ("20-7e a0-17f ...") holds one of `codepoints`."""
    for span in charset.split():
        low, _dash, high = span.partition("-")
        try:
            first, last = int(low, 16), int(high or low, 16)
        except ValueError:
            return True  # a charset we cannot read: count the face as legible
        if any(first <= c <= last for c in codepoints):
            return True
    return False


def _inventory(env: dict[str, str]) -> FontInventory:
    listed = (
        _fontconfig(["fc-list", "--format", "%{fontformat}\t%{family[0]}\t%{charset}\n"], env) or ""
    )
    faces = [[*line.split("\t"), "", ""] for line in listed.splitlines()]
    renderable = [(f[1].strip(), f[2]) for f in faces if f[0] in RENDERABLE and f[1].strip()]
    families = sorted({family for family, _charset in renderable})
    probe = frozenset(ord(c) for c in TEXT_PROBE)
    legible = tuple(sorted({family for family, chars in renderable if _covers(chars, probe)}))
    if not families:
        return FontInventory(families=(), essential=(), notable=())
    from concurrent.futures import ThreadPoolExecutor  # here: off every command's start-up

    names = (*GENERICS, *DEFAULT_FAMILIES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        matches = list(
            pool.map(
                lambda name: (
                    _fontconfig(["fc-match", "--format", "%{family[0]}", name], env) or ""
                ).strip(),
                names,
            )
        )
    with ThreadPoolExecutor(max_workers=3) as pool:
        orders = list(
            pool.map(
                lambda name: (
                    _fontconfig(["fc-match", "-s", "--format", "%{family[0]}\n", name], env) or ""
                ).split("\n"),
                STAND_IN_NAMES,
            )
        )
    stand_ins = tuple(
        (name, tuple(f for f in dict.fromkeys(order) if f in _equals(name) and f in families))
        for name, order in zip(STAND_IN_NAMES, orders, strict=True)
    )
    resolved = dict(zip(names, matches, strict=True))
    essential = tuple(dict.fromkeys(resolved[g] for g in GENERICS if resolved[g] in families))
    notable = tuple(sorted({m for m in matches if m in families}))
    return FontInventory(
        families=tuple(families),
        essential=essential,
        notable=notable,
        legible=legible,
        stand_ins=stand_ins,
    )


def _pattern(family: str | None, form: str) -> str:
    family_elt = (
        f'<patelt name="family"><string>{escape(family)}</string></patelt>' if family else ""
    )
    return (
        f"      <pattern>{family_elt}"
        f'<patelt name="fontformat"><string>{form}</string></patelt></pattern>'
    )


def _rendering_xml(rendering: str) -> str:
    if not rendering:
        return ""
    edits = "\n".join(
        f'    <edit name="{name}" mode="assign"><{kind}>{value}</{kind}></edit>'
        for name, kind, value in RENDERINGS[rendering]
    )
    return f'  <match target="font">\n{edits}\n  </match>\n'


def config_xml(families: Iterable[str], rendering: str = "") -> str:
    """A fontconfig file that shows only the TrueType and CFF faces of `families`.

    With no families: every TrueType and CFF face (the machine's own set,
    without the formats Chromium refuses). `rendering` (a RENDERINGS name)
    sets how text is rasterised; "" leaves the machine's settings.
    """
    if rendering and rendering not in RENDERINGS:
        raise ValueError(f"unknown font rendering {rendering!r}")
    names: list[str | None] = [*sorted(set(families))] or [None]
    accepted = "\n".join(_pattern(name, form) for name in names for form in RENDERABLE)
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n'
        "<!-- Written by outreach-station at every open: the families this persona presents. -->\n"
        "<fontconfig>\n"
        "  <selectfont>\n"
        "    <acceptfont>\n"
        f"{accepted}\n"
        "    </acceptfont>\n"
        "    <rejectfont><pattern></pattern></rejectfont>\n"
        "  </selectfont>\n"
        f"{_rendering_xml(rendering)}"
        "</fontconfig>\n"
    )


def write_config(config_home: Path, families: tuple[str, ...], rendering: str = "") -> Path:
    """Write the persona's font file under its XDG_CONFIG_HOME.

    An empty `families` means the persona presents every installed family (a
    persona from before fonts were chosen per persona); an empty `rendering`
    the machine's own rendering settings.
    """
    path = config_home / CONFIG_RELATIVE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(config_xml(families, rendering), encoding="utf-8")
    return path
