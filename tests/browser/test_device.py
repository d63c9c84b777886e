"""The device hash: what a fingerprinter that ignores screen, window, languages,
time zone and user agent sees of a persona, in real Chromium, headless.

Six fresh personas of one platform (same languages and zone) are six devices;
a persona's device hash survives its sealed profile being reopened, and moves
when one lever (the font rendering in its fontconfig file) moves. The 20
personas of the issue's acceptance run in bench/bench_devices.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths, workspace
from outreach_station.cli import app
from tests.fixtures import write_platform

pytestmark = pytest.mark.browser

PERSONAS = 6


@pytest.fixture(autouse=True)
def _platform(profiles: Path, secret_service: None) -> None:
    with write_platform(profiles, "desk-se", "http://127.0.0.1:9/", "desktop").open("a") as fh:
        fh.write('locale = "sv-SE"\ntimezone = "Europe/Stockholm"\n')


def _failed(result: api.CheckResult) -> list[str]:
    return [f"{c.name}: expected {c.expected}, saw {c.seen}" for c in result.checks if not c.ok]


def _store(persona_id: str, **changes: Any) -> None:
    with api.registry() as reg:
        reg.set_fingerprint(persona_id, dict(reg.get(persona_id).fingerprint, **changes))


def test_fresh_personas_are_distinct_devices_stable_across_sealed_sessions() -> None:
    personas = [api.create_persona("desk-se") for _ in range(PERSONAS)]
    devices: dict[str, str] = {}
    for persona in personas:
        result = api.check_persona(persona.id)
        assert result.ok, (persona.fingerprint, _failed(result))
        names = {c.name for c in result.checks}
        assert {"device signals agree in page and worker", "device hash"} <= names
        assert result.device_hash is not None
        devices[persona.id] = result.device_hash
    assert len(set(devices.values())) == PERSONAS, Counter(devices.values()).most_common(2)

    # Sealed and reopened, through the CLI: the same device.
    from typer.testing import CliRunner

    first = personas[0]
    assert workspace.sealed_file(paths.current(), first.id).is_file()
    again = CliRunner().invoke(app, ["check", first.id, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["device_hash"] == devices[first.id]
    text = CliRunner().invoke(app, ["check", first.id])
    assert text.exit_code == 0, text.output
    assert f"device hash: {devices[first.id]}" in text.output


def test_the_font_rendering_lever_moves_the_device_hash_and_nothing_else() -> None:
    persona = api.create_persona("desk-se")
    # Everything else of the device fixed: the machine's fonts and processors,
    # and a pixel ratio of 1 (above 1 Chromium turns on subpixel positioning
    # and draws canvas glyphs unhinted; the rendering then moves the hash
    # through text widths alone: measured in docs/fingerprints.md).
    _store(
        persona.id,
        fonts=[],
        hardware_concurrency=0,
        font_rendering="slight",
        device_scale_factor=1.0,
    )
    before = api.check_persona(persona.id)
    assert before.ok, _failed(before)
    _store(persona.id, font_rendering="full")
    after = api.check_persona(persona.id)
    assert after.ok, _failed(after)
    assert after.device_hash != before.device_hash
    old, new = before.report["device"]["main"], after.report["device"]["main"]
    # Text pixels and widths follow the rendering; WebGL, audio and the
    # probed fonts do not.
    assert new["canvas"]["text"] != old["canvas"]["text"]
    assert new["system_fonts"] != old["system_fonts"]
    assert (new["webgl"], new["audio"], new["fonts"]) == (old["webgl"], old["audio"], old["fonts"])
    # The page's hash is that of the fingerprint too (it covers misc.canvas_hash).
    assert after.report["hash"] != before.report["hash"]
