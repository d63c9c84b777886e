"""Coherence checks over an inspector report: what a website could catch.

Each check compares values that a real browser keeps consistent: between the
page, its iframe and its workers, between JavaScript and the HTTP headers,
and against the persona's stored fingerprint when one is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from outreach_station.fingerprint import Fingerprint
from outreach_station.fonts import visible_families
from outreach_station.i18n import N_, _

# Translated where shown (title_of), as every check name.
N_("{scope} collected")
SCOPES = ("main", "iframe", "dedicated_worker", "shared_worker", "service_worker")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    expected: str
    seen: str

    @property
    def title(self) -> str:
        """The check's name in the reader's language (`name` stays English: an identifier)."""
        return title_of(self.name)

    def as_json(self) -> dict[str, Any]:
        """The check as the inspector page receives it: name, ok, expected, seen, and its
        title (the name in the reader's language; the page's server uses the page's)."""
        return {**asdict(self), "title": self.title}


def title_of(name: str, gettext: Callable[[str], str] = _) -> str:
    """A check's name as a person reads it, translated by `gettext`."""
    scope, _space, rest = name.partition(" ")
    if rest == "collected" and scope in SCOPES:
        return gettext("{scope} collected").format(scope=scope)
    return gettext(name)


def _scope_values(report: Mapping[str, Any], key: str) -> dict[str, Any]:
    scopes = report.get("scopes", {})
    return {name: (scopes.get(name) or {}).get(key) for name in SCOPES}


def _agree(name: str, values: Mapping[str, Any], expected: Any | None = None) -> Check:
    first = next(iter(values.values()), None)
    target = first if expected is None else expected
    bad = {scope: v for scope, v in values.items() if v != target}
    if not bad:
        return Check(name, True, str(target), _("same in every scope"))
    scope, value = next(iter(bad.items()))
    return Check(name, False, str(target), f"{scope}: {value}")


def _stored_screen_checks(
    screen: Mapping[str, Any], fingerprint: Fingerprint, *, real_window: bool
) -> list[Check]:
    """Screen, window and pixel ratio against the persona's stored ones."""
    want = f"{fingerprint.screen_width}x{fingerprint.screen_height}"
    got = f"{screen.get('width')}x{screen.get('height')}"
    checks = [Check(N_("screen size"), want == got, want, got)]
    got = f"{screen.get('inner_width')}x{screen.get('inner_height')}"
    if real_window:
        fits = _fits(screen, fingerprint.screen_width, fingerprint.screen_height)
        checks.append(Check(N_("window size"), fits, f"<= {want}", got))
    else:
        want = f"{fingerprint.viewport_width}x{fingerprint.viewport_height}"
        checks.append(Check(N_("window size"), want == got, want, got))
    checks.append(_ratio_check(fingerprint.device_scale_factor, screen.get("device_pixel_ratio")))
    return checks


def _fits(screen: Mapping[str, Any], width: int, height: int) -> bool:
    try:
        inner_w, inner_h = int(screen["inner_width"]), int(screen["inner_height"])
    except (KeyError, TypeError, ValueError):
        return False
    return 0 < inner_w <= width and 0 < inner_h <= height


def _ratio_check(stored: float, seen: Any) -> Check:
    """The page's devicePixelRatio is the stored one, as the engine's 32-bit float holds it."""
    try:
        ok = math.isclose(float(seen), stored, rel_tol=1e-6)
    except (TypeError, ValueError):
        ok = False
    return Check(N_("device pixel ratio"), ok, f"{stored!r}", f"{seen!r}")


def _resolution_check(ratio: Any, resolution: Any) -> Check:
    """CSS `resolution` (probed in hundredths of a dppx) agrees with devicePixelRatio."""
    try:
        # The largest hundredth the media query accepts: the ratio rounded down,
        # or just above it when the ratio is a 32-bit float (2.55 held as 2.5499999).
        ok = -1e-6 <= float(ratio) - float(resolution) < 0.01 + 1e-6
    except (TypeError, ValueError):
        ok = False
    return Check(N_("CSS resolution matches devicePixelRatio"), ok, f"{ratio!r}", f"{resolution!r}")


def _brands(report: Mapping[str, Any]) -> dict[str, Any]:
    return {
        scope: tuple(b.get("brand") for b in (data or {}).get("brands", []))
        if isinstance(data, Mapping)
        else None
        for scope, data in _scope_values(report, "ua_data").items()
    }


def run_checks(
    report: Mapping[str, Any],
    *,
    fingerprint: Fingerprint | None = None,
    engine_major: int | None = None,
    installed_fonts: Collection[str] | None = None,
    real_window: bool = False,
    unmeasurable_fonts: Collection[str] = (),
) -> list[Check]:
    """Every check, in a stable order; a failed one names the two values that disagree.

    `installed_fonts` are the families installed on the machine (what the
    inspector server probed for); with them and a fingerprint, the families
    the browser shows must be the persona's. `real_window`: a headed desktop
    session, whose page has the real window (sized by the display and the
    person) rather than the stored viewport; it must then fit the screen.
    `unmeasurable_fonts`: installed families that no page can find by
    measuring text (no character of fonts.TEXT_PROBE), so never expected.
    """
    headers = report.get("headers", {})
    screen = report.get("screen", {})
    media = report.get("media", {})
    expected_ua = (
        fingerprint.user_agent(engine_major)
        if fingerprint is not None and engine_major is not None
        else None
    )
    checks = []
    for scope, error in _scope_values(report, "error").items():
        # The name stays "<scope> collected": title_of translates it with its scope.
        values = _("values")
        collected = values if error is None else str(error)
        checks.append(Check(f"{scope} collected", error is None, values, collected))
    uas = _scope_values(report, "user_agent")
    uas["http header"] = headers.get("user-agent")
    checks.append(_agree(N_("user agent"), uas, expected_ua))
    tells = [v for v in (*uas.values(), headers.get("sec-ch-ua", "")) if v and "Headless" in str(v)]
    checks.append(
        Check(N_("no HeadlessChrome"), not tells, _("absent"), tells[0] if tells else _("absent"))
    )
    webdriver = _scope_values(report, "webdriver")
    page_webdriver = {k: webdriver[k] for k in ("main", "iframe")}
    checks.append(_agree(N_("navigator.webdriver"), page_webdriver, False))
    checks.append(_agree(N_("client hint brands"), _brands(report)))
    if engine_major is not None:
        brands = (report.get("scopes", {}).get("main") or {}).get("ua_data") or {}
        majors = {b.get("brand"): b.get("version") for b in brands.get("brands", [])}
        seen = majors.get("Chromium") or majors.get("Google Chrome")
        checks.append(
            Check(
                N_("brand version is the engine's"),
                seen == str(engine_major),
                str(engine_major),
                str(seen),
            )
        )
    checks.append(_agree(N_("navigator.platform"), _scope_values(report, "platform")))
    checks.extend(_device_checks(report, fingerprint, installed_fonts, unmeasurable_fonts))
    checks.append(_agree(N_("device memory"), _scope_values(report, "device_memory")))
    langs = {k: tuple(v) if v else v for k, v in _scope_values(report, "languages").items()}
    checks.append(
        _agree(N_("languages"), langs, fingerprint.languages if fingerprint is not None else None)
    )
    main_langs = langs.get("main") or ()
    header_langs = tuple(
        part.split(";")[0].strip() for part in str(headers.get("accept-language", "")).split(",")
    )
    checks.append(
        Check(
            N_("Accept-Language matches languages"),
            header_langs == tuple(main_langs),
            ",".join(main_langs),
            str(headers.get("accept-language")),
        )
    )
    checks.append(
        _agree(
            N_("time zone"),
            _scope_values(report, "time_zone"),
            fingerprint.timezone if fingerprint is not None else None,
        )
    )
    checks.append(_agree(N_("Intl locale"), _scope_values(report, "locale")))
    if fingerprint is not None:
        checks.extend(_stored_screen_checks(screen, fingerprint, real_window=real_window))
    css = f"{media.get('device_width')}x{media.get('device_height')}"
    js = f"{screen.get('width')}x{screen.get('height')}"
    checks.append(Check(N_("CSS device size matches screen"), css == js, js, css))
    checks.append(_resolution_check(screen.get("device_pixel_ratio"), media.get("resolution_dppx")))
    checks.extend(_identity_checks(report, fingerprint))
    checks.extend(_window_checks(screen))
    checks.extend(_automation_checks(report.get("misc") or {}))
    checks.append(_webrtc_check(report.get("webrtc") or {}))
    checks.extend(device_checks(report))
    return checks


# The device signals only a window has (no worker API for them).
PAGE_ONLY_DEVICE = ("audio", "system_fonts")
DEVICE_PARTS = ("canvas", "webgl", "fonts", "hardware_concurrency", "device_memory")
# Every browser has these; WebGL, device memory and audio may be absent on a
# real device (headed under Xvfb here WebGL is), which is a value, not a failure.
REQUIRED_DEVICE = ("canvas", "fonts", "hardware_concurrency")


def device_checks(report: Mapping[str, Any]) -> list[Check]:
    """The device signals were all collected, the worker computes what the page does, and
    the page's device hash is the hash of its signals."""
    from outreach_station.inspector.server import device_hash

    device = report.get("device") or {}
    main = device.get("main") if isinstance(device, Mapping) else None
    worker = device.get("dedicated_worker") if isinstance(device, Mapping) else None
    if not isinstance(main, Mapping) or not isinstance(worker, Mapping):
        absent = _("no page") if not isinstance(main, Mapping) else _("no worker")
        return [Check(N_("device signals collected"), False, _("page and worker"), absent)]
    missing = [
        f"{where}: {key}"
        for where, part, keys in (
            ("page", main, (*REQUIRED_DEVICE, "system_fonts")),
            ("worker", worker, REQUIRED_DEVICE),
        )
        for key in keys
        if part.get(key) is None
    ]
    errors = [f"{w}: {p.get('error')}" for w, p in (("page", main), ("worker", worker))]
    errors = [e for e in errors if not e.endswith(": None")]
    seen = "; ".join(missing + errors) or _("all")
    checks = [Check(N_("device signals collected"), not missing and not errors, _("all"), seen)]
    differ = [key for key in DEVICE_PARTS if json_key(main.get(key)) != json_key(worker.get(key))]
    checks.append(
        Check(
            N_("device signals agree in page and worker"),
            not differ,
            ", ".join(DEVICE_PARTS),
            _("differ: {parts}").format(parts=", ".join(differ)) if differ else _("same in both"),
        )
    )
    want = device_hash(main)
    got = device.get("hash")
    checks.append(Check(N_("device hash"), got == want, want, str(got)))
    return checks


def _device_checks(
    report: Mapping[str, Any],
    fingerprint: Fingerprint | None,
    installed_fonts: Collection[str] | None,
    unmeasurable_fonts: Collection[str] = (),
) -> list[Check]:
    """Processors and fonts: the same in every scope, and the persona's when it has its own."""
    cores = _scope_values(report, "hardware_concurrency")
    checks = [_agree(N_("hardware concurrency"), cores)]
    # 0 is a persona that presents the machine's own processor count.
    if fingerprint is not None and fingerprint.hardware_concurrency > 0:
        checks.append(
            _agree(
                N_("hardware concurrency is the persona's"), cores, fingerprint.hardware_concurrency
            )
        )
    checks.extend(_font_checks(report, fingerprint, installed_fonts, unmeasurable_fonts))
    return checks


def _font_list(value: Any) -> frozenset[str] | None:
    if not isinstance(value, list | tuple):
        return None
    return frozenset(str(v) for v in value)


def _names(families: Collection[str]) -> str:
    return ", ".join(sorted(families)) or _("none")


def _difference(want: frozenset[str], got: frozenset[str] | None) -> str:
    """What `got` lacks and adds against `want`, as "missing: X; extra: Y"."""
    if got is None:
        return _("no fonts detected (the scope could not measure)")
    parts = []
    if want - got:
        parts.append(_("missing: {names}").format(names=_names(want - got)))
    if got - want:
        parts.append(_("extra: {names}").format(names=_names(got - want)))
    return "; ".join(parts) or _("same")


def _font_checks(
    report: Mapping[str, Any],
    fingerprint: Fingerprint | None,
    installed_fonts: Collection[str] | None,
    unmeasurable_fonts: Collection[str] = (),
) -> list[Check]:
    """Every scope sees the same families; with the machine's list, exactly the persona's."""
    detected = {scope: _font_list(v) for scope, v in _scope_values(report, "fonts").items()}
    main = detected["main"]
    odd = {scope: v for scope, v in detected.items() if v != main}
    main_text = _names(main) if main is not None else "None"
    if odd:
        scope, value = next(iter(odd.items()))
        diff = _difference(main or frozenset(), value)
        agree = Check(N_("fonts"), False, f"main: {main_text}", f"{scope}: {diff}")
    else:
        agree = Check(N_("fonts"), main is not None, main_text, _("same in every scope"))
    checks = [agree]
    if fingerprint is None or installed_fonts is None:
        return checks
    installed = frozenset(installed_fonts)
    # () is a persona from before fonts were chosen per persona: the machine's set.
    # A family's metric-compatible equals are found with it (fonts.METRIC_COMPATIBLE).
    want = visible_families(fingerprint.fonts, installed) if fingerprint.fonts else installed
    want -= frozenset(unmeasurable_fonts)
    bad = {
        scope: _difference(want, None if got is None else got & installed)
        for scope, got in detected.items()
        if got is None or got & installed != want
    }
    seen = next((f"{scope}: {diff}" for scope, diff in bad.items()), _("same in every scope"))
    checks.append(Check(N_("fonts are the persona's"), not bad, _names(want), seen))
    return checks


# The OS word a user agent names, and what navigator.platform then starts with.
_OS_PLATFORMS = (("Windows", "Win"), ("Macintosh", "Mac"), ("Android", "Linux"), ("Linux", "Linux"))


def _identity_checks(report: Mapping[str, Any], fingerprint: Fingerprint | None) -> list[Check]:
    """The OS and device class must read the same in the UA, the platform and the hints."""
    main = (report.get("scopes", {}) or {}).get("main") or {}
    headers = report.get("headers", {})
    ua = str(main.get("user_agent") or "")
    platform = str(main.get("platform") or "")
    os_word, prefix = next(((w, p) for w, p in _OS_PLATFORMS if w in ua), ("?", "?"))
    checks = [
        Check(
            N_("user agent OS matches navigator.platform"),
            platform.startswith(prefix),
            f"{os_word} -> {prefix}...",
            platform,
        )
    ]
    hint_platforms = {
        scope: (data or {}).get("platform") if isinstance(data, Mapping) else None
        for scope, data in _scope_values(report, "ua_data").items()
    }
    hint_platforms["http header"] = str(headers.get("sec-ch-ua-platform", "")).strip('"') or None
    want = fingerprint.ua_platform if fingerprint is not None else None
    checks.append(_agree(N_("client hint platform"), hint_platforms, want))
    mobile_ua = "Mobile" in ua
    hint_mobile = (main.get("ua_data") or {}).get("mobile")
    header_mobile = headers.get("sec-ch-ua-mobile")
    checks.append(
        Check(
            N_("client hint mobile matches user agent"),
            hint_mobile == mobile_ua and header_mobile in (None, "?1" if mobile_ua else "?0"),
            f"{mobile_ua} (UA {'has' if mobile_ua else 'lacks'} 'Mobile')",
            f"hint {hint_mobile}, header {header_mobile}",
        )
    )
    high = {
        scope: (json_key((data or {}).get("high_entropy")) if isinstance(data, Mapping) else None)
        for scope, data in _scope_values(report, "ua_data").items()
    }
    checks.append(_agree(N_("high-entropy client hints"), high))
    if fingerprint is not None:
        checks.append(
            _agree(
                N_("navigator.platform is the stored one"), {"main": platform}, fingerprint.platform
            )
        )
    return checks


def json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _window_checks(screen: Mapping[str, Any]) -> list[Check]:
    """A window is never larger than its screen, nor the available area than the screen."""

    def size(w: str, h: str) -> tuple[int, int]:
        return int(screen.get(w) or 0), int(screen.get(h) or 0)

    full = size("width", "height")
    out = []
    for label, (w, h) in (
        (N_("outer window fits the screen"), size("outer_width", "outer_height")),
        (N_("available screen fits the screen"), size("avail_width", "avail_height")),
        (N_("inner window fits the outer"), size("inner_width", "inner_height")),
    ):
        bound = full if "outer" not in label else size("outer_width", "outer_height")
        if label.startswith("outer"):
            bound = full
        ok = 0 < w <= bound[0] and 0 < h <= bound[1]
        out.append(Check(label, ok, f"<= {bound[0]}x{bound[1]}", f"{w}x{h}"))
    return out


# Notification.permission and the Permissions API name the same state in two words.
_NOTIFICATION_STATES = {"default": "prompt", "granted": "granted", "denied": "denied"}


def _automation_checks(misc: Mapping[str, Any]) -> list[Check]:
    """What a driver or a headless build leaves in the page, against what desktop Chromium shows."""
    globals_seen = list(misc.get("automation_globals") or [])
    permission = misc.get("notification_permission")
    queried = misc.get("notification_query")
    chrome_shape = {
        "window.chrome": misc.get("window_chrome"),
        "chrome.app": misc.get("chrome_app"),
        "chrome.loadTimes": misc.get("chrome_load_times"),
        "chrome.csi": misc.get("chrome_csi"),
    }
    want_shape = {
        "window.chrome": True,
        "chrome.app": "object",
        "chrome.loadTimes": "function",
        "chrome.csi": "function",
    }
    bad_shape = {k: v for k, v in chrome_shape.items() if v != want_shape[k]}
    plugins = (misc.get("plugins_length"), misc.get("mime_types_length"))
    # Chromium with its PDF viewer lists five plugins and two MIME types, always
    # the same ones; without the viewer, none.
    want_plugins = (5, 2) if misc.get("pdf_viewer_enabled") else (0, 0)
    return [
        Check(
            N_("no automation globals"),
            not globals_seen,
            _("none"),
            ", ".join(globals_seen) or _("none"),
        ),
        Check(
            N_("window.chrome shape"),
            not bad_shape,
            _("object with app, loadTimes, csi"),
            ", ".join(f"{k}: {v}" for k, v in bad_shape.items()) or _("as expected"),
        ),
        Check(
            N_("plugins and MIME types"),
            plugins == want_plugins,
            f"{want_plugins[0]} plugins, {want_plugins[1]} MIME types",
            f"{plugins[0]} plugins, {plugins[1]} MIME types",
        ),
        Check(
            N_("notification permission agrees with the Permissions API"),
            _NOTIFICATION_STATES.get(str(permission)) == queried,
            f"{permission} -> {_NOTIFICATION_STATES.get(str(permission))}",
            str(queried),
        ),
        Check(
            N_("console does not serialize for a debugger"),
            misc.get("console_serialized") is False,
            "False",
            str(misc.get("console_serialized")),
        ),
    ]


def _webrtc_check(webrtc: Mapping[str, Any]) -> Check:
    """No ICE candidate may carry a real address: host ones must be mDNS names."""
    leaks = [
        f"{c.get('type')} {c.get('address')}"
        for c in webrtc.get("candidates") or []
        if c.get("type") != "relay"
        and c.get("address")
        and not str(c.get("address")).endswith(".local")
    ]
    return Check(
        N_("WebRTC reveals no address"),
        not leaks,
        _("no host/srflx address"),
        ", ".join(leaks) or _("none"),
    )
