"""Which font families a persona's browser can see: a per-persona fontconfig.

Installed fonts are among the strongest device tells a website has: they
change text metrics, canvas drawings and which families `local()` and width
probes find. Chromium on Linux asks fontconfig for every font, and fontconfig
reads the user's configuration from `$XDG_CONFIG_HOME/fontconfig/fonts.conf`;
the persona's browser already has a private HOME and XDG_CONFIG_HOME, so a
file there gives each persona its own font set without touching the system.

The file is an accept-list: every font is rejected except the families the
persona presents. Fonts installed on the machine later therefore stay hidden
from existing personas, which keeps them stable.
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

CONFIG_RELATIVE = Path("fontconfig") / "fonts.conf"


@dataclass(frozen=True)
class FontInventory:
    """The font families the machine offers a persona's browser."""

    families: tuple[str, ...]
    # The machine's family for each generic; never hidden from a persona.
    essential: tuple[str, ...]
    # The installed families that the generic and the browser's default
    # family names resolve to: what every page's text is drawn with.
    notable: tuple[str, ...] = ()

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(f for f in self.families if f not in self.essential)


def _fontconfig(args: list[str]) -> str | None:
    tool = shutil.which(args[0])
    if tool is None:
        return None
    # Listed as the persona's browser sees the machine: without the person's
    # own ~/.config/fontconfig (the browser never reads it), with any
    # FONTCONFIG_* setting of the image (the browser inherits those).
    with tempfile.TemporaryDirectory(prefix="station-fc-") as empty:
        env = {k: v for k, v in os.environ.items() if k.startswith("FONTCONFIG_")}
        env.update(HOME=empty, XDG_CONFIG_HOME=empty, PATH="/usr/bin:/bin")
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
    listed = _fontconfig(["fc-list", "--format", "%{family[0]}\n"]) or ""
    families = sorted({line.strip() for line in listed.splitlines() if line.strip()})
    if not families:
        return FontInventory(families=(), essential=(), notable=())
    from concurrent.futures import ThreadPoolExecutor  # here: off every command's start-up

    names = (*GENERICS, *DEFAULT_FAMILIES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        matches = list(
            pool.map(
                lambda name: (
                    _fontconfig(["fc-match", "--format", "%{family[0]}", name]) or ""
                ).strip(),
                names,
            )
        )
    resolved = dict(zip(names, matches, strict=True))
    essential = tuple(dict.fromkeys(resolved[g] for g in GENERICS if resolved[g] in families))
    notable = tuple(sorted({m for m in matches if m in families}))
    return FontInventory(families=tuple(families), essential=essential, notable=notable)


def config_xml(families: Iterable[str]) -> str:
    """A fontconfig file that shows only `families`: every other font is rejected."""
    accepted = "\n".join(
        f'      <pattern><patelt name="family"><string>{escape(name)}</string></patelt></pattern>'
        for name in sorted(set(families))
    )
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
        "</fontconfig>\n"
    )


def write_config(config_home: Path, families: tuple[str, ...]) -> Path | None:
    """Write the persona's font file under its XDG_CONFIG_HOME; none for the machine's own set.

    An empty `families` means the persona presents every installed font (a
    persona from before fonts were chosen per persona); any file left from an
    earlier open is then removed.
    """
    path = config_home / CONFIG_RELATIVE
    if not families:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(config_xml(families), encoding="utf-8")
    return path
