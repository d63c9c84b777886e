"""Issue 14's fonts: fresh personas pass every check on a laptop with the fonts IT installs.

docs/it-deployment.md recommends fonts-croscore, fonts-liberation,
fonts-urw-base35 and Noto (fonts-noto-core, fonts-noto-mono,
fonts-noto-color-emoji). Their fontconfig rules alias Arial, Helvetica,
Times New Roman and Courier New to each other's metric-compatible faces, and
Noto replaces DejaVu as the machine's sans-serif, serif, monospace and emoji
families: a persona must still see exactly its own families in every scope.
Real Chromium, headless, through `station check`'s path (`api.check_persona`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outreach_station import api, fonts
from tests.fixtures import write_platform

pytestmark = pytest.mark.browser

# A file of each package the laptop has (Debian 12 paths).
LAPTOP_FONTS = {
    "fonts-croscore": "/usr/share/fonts/truetype/croscore/Arimo-Regular.ttf",
    "fonts-liberation": "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "fonts-urw-base35": "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf",
    "fonts-noto-core": "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "fonts-noto-mono": "/usr/share/fonts/truetype/noto/NotoMono-Regular.ttf",
    "fonts-noto-color-emoji": "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
}
PERSONAS = 5


@pytest.fixture(autouse=True)
def _laptop(profiles: Path, secret_service: None) -> None:
    missing = sorted(name for name, file in LAPTOP_FONTS.items() if not Path(file).is_file())
    if missing:
        reason = f"not installed: {' '.join(missing)} (bash setup.sh test installs them)"
        if os.environ.get("STATION_TEST_REQUIRE_REAL_PARTS"):
            pytest.fail(reason)
        pytest.skip(reason)
    with write_platform(profiles, "desk-se", "http://127.0.0.1:9/", "desktop").open("a") as fh:
        fh.write('locale = "sv-SE"\ntimezone = "Europe/Stockholm"\n')


def _failed(result: api.CheckResult) -> list[str]:
    return [f"{c.name}: expected {c.expected}, saw {c.seen}" for c in result.checks if not c.ok]


def test_fresh_personas_pass_every_check_with_the_laptop_fonts() -> None:
    machine = fonts.inventory()
    # The packages' families are what the personas draw from.
    assert {"Arimo", "Liberation Sans", "Nimbus Sans", "Noto Sans", "Noto Color Emoji"} <= set(
        machine.families
    ), machine.families
    personas = [api.create_persona("desk-se") for _ in range(PERSONAS)]
    for persona in personas:
        result = api.check_persona(persona.id)
        assert result.ok, (persona.id, persona.fingerprint["fonts"], _failed(result))
        checked = {c.name: c for c in result.checks}
        assert checked["fonts are the persona's"].ok
        assert checked["fonts"].ok
    # Some persona leaves out a metric-compatible family that an alias would
    # bring back (the failure issue 14 reports), so the check was really tried.
    aliased = {"Arimo", "Liberation Sans", "Tinos", "Liberation Serif", "Cousine"}
    assert any(aliased - set(p.fingerprint["fonts"]) for p in personas)
