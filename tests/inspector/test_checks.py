"""The coherence checks over a report, fed hand-made reports (no browser)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from outreach_station.fingerprint import generate
from outreach_station.fonts import COMMON_FAMILIES, FontInventory
from outreach_station.inspector import SCOPE_NAMES
from outreach_station.inspector.checks import Check, run_checks
from outreach_station.platforms import PlatformProfile

INSTALLED = (
    "DejaVu Sans",
    "DejaVu Sans Mono",
    "DejaVu Serif",
    "Liberation Sans",
    "Liberation Serif",
)
ESSENTIAL = ("DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif")
FONTS = FontInventory(families=INSTALLED, essential=ESSENTIAL, notable=INSTALLED)
FINGERPRINT = replace(
    generate(PlatformProfile(id="d", name="d", start_url="https://x.se/"), fonts=FONTS, cpus=4),
    fonts=ESSENTIAL,
    hardware_concurrency=2,
)


def report(fonts: list[str] | None, cores: int = 2, **per_scope: Any) -> dict[str, Any]:
    scopes = {name: {"fonts": fonts, "hardware_concurrency": cores} for name in SCOPE_NAMES}
    for name, values in per_scope.items():
        scopes[name].update(values)
    return {"scopes": scopes}


def check(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


def test_fonts_pass_when_every_scope_shows_the_personas_families() -> None:
    # Common names that resolve to a visible family (Arial to Liberation Sans)
    # are detected too; only installed families are compared.
    seen = [*ESSENTIAL, "Arial", "system-ui"]
    checks = run_checks(report(seen), fingerprint=FINGERPRINT, installed_fonts=INSTALLED)
    agree = check(checks, "fonts")
    assert agree.ok, agree
    persona = check(checks, "fonts are the persona's")
    assert persona == Check(
        "fonts are the persona's",
        True,
        "DejaVu Sans, DejaVu Sans Mono, DejaVu Serif",
        "same in every scope",
    )


def test_fonts_fail_naming_what_is_missing_and_what_is_extra() -> None:
    claimed = replace(FINGERPRINT, fonts=(*ESSENTIAL, "Nonexistent Sans"))
    seen = [*ESSENTIAL, "Liberation Serif"]
    persona = check(
        run_checks(report(seen), fingerprint=claimed, installed_fonts=INSTALLED),
        "fonts are the persona's",
    )
    assert not persona.ok
    assert persona.expected == "DejaVu Sans, DejaVu Sans Mono, DejaVu Serif, Nonexistent Sans"
    assert persona.seen == "main: missing: Nonexistent Sans; extra: Liberation Serif"


def test_a_persona_without_its_own_fonts_presents_every_installed_family() -> None:
    machine = replace(FINGERPRINT, fonts=())
    everything = [*INSTALLED, *COMMON_FAMILIES]
    ok = run_checks(report(everything), fingerprint=machine, installed_fonts=INSTALLED)
    assert check(ok, "fonts are the persona's").ok
    short = run_checks(report(list(ESSENTIAL)), fingerprint=machine, installed_fonts=INSTALLED)
    failed = check(short, "fonts are the persona's")
    assert not failed.ok
    assert failed.seen == "main: missing: Liberation Sans, Liberation Serif"


def test_metric_compatible_equals_are_expected_with_a_persona_family() -> None:
    """With fonts-croscore beside fonts-liberation, Chromium finds Liberation Mono
    for a persona that has only Cousine (and Tinos for Liberation Serif): what any
    real machine with those fonts shows, so not a font the persona should not have."""
    installed = (*INSTALLED, "Arimo", "Cousine", "Liberation Mono", "Tinos")
    persona = replace(FINGERPRINT, fonts=(*ESSENTIAL, "Cousine", "Liberation Serif"))
    seen = [*ESSENTIAL, "Cousine", "Liberation Mono", "Liberation Serif", "Tinos", "Courier New"]
    found = check(
        run_checks(report(seen), fingerprint=persona, installed_fonts=installed),
        "fonts are the persona's",
    )
    assert found.ok, found
    # A family outside those classes is still caught, and so is a missing equal.
    extra = check(
        run_checks(report([*seen, "Arimo"]), fingerprint=persona, installed_fonts=installed),
        "fonts are the persona's",
    )
    assert extra.seen == "main: extra: Arimo"
    short = check(
        run_checks(report(seen[:-3]), fingerprint=persona, installed_fonts=installed),
        "fonts are the persona's",
    )
    assert short.seen == "main: missing: Liberation Serif, Tinos"


def test_fonts_must_agree_between_scopes() -> None:
    odd = report(list(ESSENTIAL), shared_worker={"fonts": [*ESSENTIAL, "Liberation Sans"]})
    checks = run_checks(odd, fingerprint=FINGERPRINT, installed_fonts=INSTALLED)
    agree = check(checks, "fonts")
    assert not agree.ok
    assert agree.expected == "main: DejaVu Sans, DejaVu Sans Mono, DejaVu Serif"
    assert agree.seen == "shared_worker: extra: Liberation Sans"
    assert check(checks, "fonts are the persona's").seen == "shared_worker: extra: Liberation Sans"
    # A scope that could not measure is a disagreement, not a pass.
    unmeasured = report(list(ESSENTIAL), service_worker={"fonts": None})
    agree = check(run_checks(unmeasured), "fonts")
    assert not agree.ok
    assert agree.seen == "service_worker: no fonts detected (the scope could not measure)"


def test_persona_font_check_needs_the_fingerprint_and_the_installed_list() -> None:
    names = {c.name for c in run_checks(report(list(ESSENTIAL)), fingerprint=FINGERPRINT)}
    assert "fonts" in names
    assert "fonts are the persona's" not in names


def test_hardware_concurrency_is_the_personas() -> None:
    ok = check(
        run_checks(report([], cores=2), fingerprint=FINGERPRINT),
        "hardware concurrency is the persona's",
    )
    assert ok.ok
    bad = check(
        run_checks(
            report([], cores=2, service_worker={"hardware_concurrency": 4}), fingerprint=FINGERPRINT
        ),
        "hardware concurrency is the persona's",
    )
    assert (bad.ok, bad.expected, bad.seen) == (False, "2", "service_worker: 4")
    wrong = check(
        run_checks(report([], cores=8), fingerprint=FINGERPRINT),
        "hardware concurrency is the persona's",
    )
    assert (wrong.ok, wrong.seen) == (False, "main: 8")
    # 0 is the machine's own count: nothing to hold the browser to.
    machine = replace(FINGERPRINT, hardware_concurrency=0)
    names = {c.name for c in run_checks(report([], cores=8), fingerprint=machine)}
    assert "hardware concurrency is the persona's" not in names


def test_pixel_ratio_is_compared_as_the_engines_float() -> None:
    from outreach_station.inspector.checks import _ratio_check

    # Drawn as 2.69896, held by Chromium as a 32-bit float.
    assert _ratio_check(2.698957920074463, 2.698957920074463).ok
    assert _ratio_check(2.75, 2.75).ok
    bad = _ratio_check(2.75, 3)
    assert not bad.ok and (bad.expected, bad.seen) == ("2.75", "3")
    assert not _ratio_check(1.0, None).ok


def test_css_resolution_must_follow_the_pixel_ratio() -> None:
    from outreach_station.inspector.checks import _resolution_check

    assert _resolution_check(2.75, 2.75).ok
    assert _resolution_check(2.698957920074463, 2.69).ok
    # 2.55 as the engine holds it; CSS accepts 2.55dppx (measured, Chromium 156).
    assert _resolution_check(2.549999952316284, 2.55).ok
    assert not _resolution_check(2.5, 2.55).ok
    assert _resolution_check(1, 1).ok
    bad = _resolution_check(2.625, 1)
    assert not bad.ok and (bad.expected, bad.seen) == ("2.625", "1")
    assert not _resolution_check(1.0, None).ok


def test_a_real_window_must_fit_the_screen_not_match_the_viewport() -> None:
    from outreach_station.fingerprint import generate
    from outreach_station.fonts import FontInventory
    from outreach_station.inspector.checks import _stored_screen_checks
    from outreach_station.platforms import PlatformProfile

    fp = generate(
        PlatformProfile(id="d", name="d", start_url="https://x.se/"),
        fonts=FontInventory(("DejaVu Sans",), ("DejaVu Sans",)),
        cpus=2,
    )
    screen = {
        "width": fp.screen_width,
        "height": fp.screen_height,
        "inner_width": fp.screen_width - 600,
        "inner_height": fp.screen_height - 400,
        "device_pixel_ratio": fp.device_scale_factor,
    }

    def window(checks: list[Any]) -> Any:
        return next(c for c in checks if c.name == "window size")

    assert not window(_stored_screen_checks(screen, fp, real_window=False)).ok
    fitted = window(_stored_screen_checks(screen, fp, real_window=True))
    assert fitted.ok and fitted.expected == f"<= {fp.screen_width}x{fp.screen_height}"
    wider = dict(screen, inner_width=fp.screen_width + 1)
    assert not window(_stored_screen_checks(wider, fp, real_window=True)).ok


def _device(**changes: Any) -> dict[str, Any]:
    """A report's device section whose page and worker agree, with the page's own hash."""
    from outreach_station.inspector import device_hash

    worker = {
        "canvas": {"text": "a" * 64, "emoji": "b" * 64, "paths": "c" * 64},
        "webgl": {"params": {"RENDERER": "WebKit WebGL"}, "image": "d" * 64},
        "fonts": {"local": ["DejaVu Sans"], "check": ["DejaVu Sans"]},
        "hardware_concurrency": 2,
        "device_memory": 8,
        "error": None,
    }
    main = dict(worker, audio={"sum": 124.04, "samples": "e" * 64}, system_fonts={"menu": []})
    main.update(changes)
    return {"main": main, "dedicated_worker": worker, "hash": device_hash(main)}


def test_device_checks_pass_when_page_and_worker_agree() -> None:
    checks = run_checks({"device": _device()})
    for name in ("device signals collected", "device signals agree in page and worker"):
        assert check(checks, name).ok, check(checks, name)
    assert check(checks, "device hash").ok


def test_device_checks_catch_a_worker_that_draws_differently() -> None:
    device = _device(canvas={"text": "x" * 64, "emoji": "b" * 64, "paths": "c" * 64})
    failed = check(run_checks({"device": device}), "device signals agree in page and worker")
    assert not failed.ok and failed.seen == "differ: canvas"
    # The worker has no audio: a page-only part never counts as a difference.
    assert check(run_checks({"device": _device()}), "device signals agree in page and worker").ok


def test_device_checks_catch_missing_parts_and_a_wrong_hash() -> None:
    device = _device(canvas=None)
    collected = check(run_checks({"device": device}), "device signals collected")
    assert not collected.ok and collected.seen == "page: canvas"
    failed = check(run_checks({"device": _device(error="webgl: lost")}), "device signals collected")
    assert not failed.ok and failed.seen == "page: webgl: lost"
    # A device without WebGL (page and worker alike) is a device, not a failure.
    no_webgl = _device(webgl=None)
    no_webgl["dedicated_worker"]["webgl"] = None
    assert check(run_checks({"device": no_webgl}), "device signals collected").ok
    device["hash"] = "0" * 64
    wrong = check(run_checks({"device": device}), "device hash")
    assert not wrong.ok and wrong.seen == "0" * 64
    absent = check(run_checks({}), "device signals collected")
    assert not absent.ok and absent.seen == "no page"
    assert absent.expected == "page and worker"


def test_a_scope_that_collected_shows_its_values_not_none() -> None:
    checks = run_checks(report(list(ESSENTIAL)))
    collected = [
        c for c in checks if c.name.endswith(" collected") and c.name != "device signals collected"
    ]
    assert len(collected) == len(SCOPE_NAMES)
    for c in collected:
        assert c.ok and c.seen == c.expected == "values", c
    failed = check(run_checks(report(None, main={"error": "timed out"})), "main collected")
    assert not failed.ok and failed.seen == "timed out"


def test_device_hash_leaves_out_errors_and_covers_every_signal() -> None:
    from outreach_station.inspector import device_hash

    main = _device()["main"]
    assert device_hash(dict(main, error="a timeout")) == device_hash(main)
    for key in ("canvas", "webgl", "fonts", "hardware_concurrency", "audio", "system_fonts"):
        assert device_hash(dict(main, **{key: None})) != device_hash(main), key


def test_a_family_no_text_probe_can_find_is_not_expected() -> None:
    """Noto Sans Tamil Supplement has none of the probe's characters: every page
    draws the probe text in the fallback font, so no scope can find it; the check
    must not call a persona that has it one that lacks it."""
    supplement = "Noto Sans Tamil Supplement"
    installed = (*INSTALLED, supplement)
    persona = replace(FINGERPRINT, fonts=(*ESSENTIAL, supplement))
    seen = list(ESSENTIAL)
    without = check(
        run_checks(report(seen), fingerprint=persona, installed_fonts=installed),
        "fonts are the persona's",
    )
    assert without.seen == f"main: missing: {supplement}"
    told = check(
        run_checks(
            report(seen),
            fingerprint=persona,
            installed_fonts=installed,
            unmeasurable_fonts=(supplement,),
        ),
        "fonts are the persona's",
    )
    assert told.ok, told
    # A family that is not installed at all is still missing.
    claimed = replace(persona, fonts=(*persona.fonts, "Nonexistent Sans"))
    still = check(
        run_checks(
            report(seen),
            fingerprint=claimed,
            installed_fonts=installed,
            unmeasurable_fonts=(supplement,),
        ),
        "fonts are the persona's",
    )
    assert still.seen == "main: missing: Nonexistent Sans"
