"""The built-in `demo` platform: a local page that shows what a website sees of a persona.

`InspectorServer` serves, on 127.0.0.1 and an ephemeral port, an inspector page
that collects every value a website can read about the browser from five
scopes (the page, a same-origin iframe, a dedicated, a shared and a service
worker), renders them as a table, and POSTs them back as a JSON report.
`station check` loads it headless and compares the report with the persona's
stored fingerprint; a newcomer opens it to see what the tool does.

The server answers the POST with the coherence checks over the report
(`InspectorServer.check_report`, the very function `station check` uses), and
the page shows them, so the demo's verdicts are `station check`'s:

    {"checks": [{"name": str, "ok": bool, "expected": str, "seen": str,
                 "title": str}, ...] | null,    # title: the name in the page's language
     "error": str | null}               # why there are no checks, when there are none

The page is in station's language, chosen when the server starts (the
locale of the station command, never the persona's browser language): the
server writes the translated texts into the page it serves (index.html, and
a JSON data block that inspector.js reads; no script global). The page is
station's own, on 127.0.0.1 behind a Host check: no other website reads it.

Report structure, version 1 (keys are stable; add keys, never rename them):

    {
      "version": 1,
      "scopes": {                       # one entry per scope, always all five
        "main" | "iframe" | "dedicated_worker" | "shared_worker" | "service_worker": {
          "user_agent": str, "platform": str,
          "language": str, "languages": [str, ...],
          "hardware_concurrency": int, "device_memory": number | null,
          "webdriver": bool | null,     # null where the scope has no navigator.webdriver
          "ua_data": null | {           # navigator.userAgentData
            "brands": [{"brand": str, "version": str}, ...],
            "mobile": bool, "platform": str,
            "high_entropy": null | {"architecture", "bitness", "model",
                                    "platform_version", "ua_full_version": str | null,
                                    "full_version_list": [{"brand", "version"}] | null},
            "error": str | null},
          "time_zone": str, "locale": str,   # Intl.DateTimeFormat().resolvedOptions()
          "timezone_offset": int,            # new Date().getTimezoneOffset()
          "http": {name: value} | null,      # identity headers of a fetch made from this scope
          "http_error": str | null,
          "fonts": [str, ...] | null,        # sorted: the families of /fonts.json this scope
                                             # can draw with (text width differs from the
                                             # generic fallbacks); null if it could not tell
          "error": str | null},              # set when the scope failed; all values are then null
      },
      "headers": {lower-case name: value},   # request headers of the page's fetch to /headers;
                                             # "cookie" is reduced to cookie names ("a; b")
      "screen": {"width", "height", "avail_width", "avail_height", "color_depth",
                 "pixel_depth", "device_pixel_ratio", "inner_width", "inner_height",
                 "outer_width", "outer_height", "error"},
      "media": {"device_width", "device_height": int | null (CSS px, found by bisection),
                "resolution_dppx": number | null, "pointer", "any_pointer": "fine"|"coarse"|"none",
                "hover", "any_hover": "hover"|"none", "prefers_color_scheme": "light"|"dark",
                "prefers_reduced_motion", "color_gamut", "error"},
      "webrtc": {"candidates": [{"type", "address", "protocol"}], "stun": str | null,
                 "error": str | null},
      "storage": {"cookies": [names], "local_storage": [keys], "session_storage": [keys],
                  "indexeddb": [names], "service_workers": int | null, "error"},
      "misc": {"max_touch_points", "plugins_length", "window_chrome": bool,
               "notification_permission", "cookie_enabled", "do_not_track",
               "pdf_viewer_enabled", "webgl_vendor", "webgl_renderer",
               "webgl_unmasked_vendor", "webgl_unmasked_renderer", "canvas_hash", "error"},
      "meta": {"collected_at": ISO time, "elapsed_ms": int},
      "device": {                       # what the device draws and computes (collectDevice)
        "main" | "dedicated_worker": {
          "canvas": {"text", "emoji", "paths": sha256 of the pixels, "emoji_width": number,
                     "text_metrics": [[width, ascent, descent], ...]},
          "webgl": null | {"params": {...}, "precision": {...}, "extensions": [str],
                           "image": sha256 of the pixels},
          "fonts": {"local": [families found by FontFace local()],
                    "check": [families FontFaceSet.check accepts]},
          "hardware_concurrency": int, "device_memory": number | null,
          "audio": {"sum": number, "samples": sha256} | null,   # page only
          "system_fonts": {css font: [family, size, weight, width, height]},  # page only
          "error": str | null},
        "hash": str                     # device_hash() of main, computed by the page
      },
      "hash": str                       # fingerprint_hash() of this report, computed by the page
    }

The report never holds a cookie or storage value, only names.

`/fonts.json` lists the families every scope probes for: the machine's
installed families (read once per server, at the first request) and the
common family names websites probe (`fonts.COMMON_FAMILIES`).

The page is plain HTML, CSS and JavaScript under `static/` with no external
resources. The server uses only the standard library, so importing this module
costs nothing at CLI start-up.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

from outreach_station.errors import BrowserError, StateError, UsageError
from outreach_station.i18n import N_, _

if TYPE_CHECKING:
    from outreach_station.fingerprint import Fingerprint
    from outreach_station.fonts import FontInventory
    from outreach_station.inspector.checks import Check

HOST = "127.0.0.1"
REPORT_VERSION = 1
SCOPE_NAMES = ("main", "iframe", "dedicated_worker", "shared_worker", "service_worker")

# A report is a few kilobytes; the cap keeps a misbehaving page from filling memory.
MAX_REPORT_BYTES = 1 << 20

# Headers that describe the browser rather than the request; they are the only
# ones that go into the fingerprint hash (Host carries the ephemeral port, and
# Cookie, Referer and Sec-Fetch-* change with what the person does).
# Keep in step with IDENTITY_HEADER in static/collect.js.
IDENTITY_HEADER = re.compile(
    r"^(user-agent|accept-language|accept-encoding|dnt|sec-gpc|sec-ch-[a-z0-9-]+)$"
)

# Client hints a site can ask for. Critical-CH makes Chromium retry the first
# navigation with them, so even the very first load of a new origin (every
# server start has a new port) reports the full set.
_ACCEPT_CH = (
    "Sec-CH-UA, Sec-CH-UA-Mobile, Sec-CH-UA-Platform, Sec-CH-UA-Arch, Sec-CH-UA-Bitness, "
    "Sec-CH-UA-Model, Sec-CH-UA-Platform-Version, Sec-CH-UA-Full-Version, "
    "Sec-CH-UA-Full-Version-List, Sec-CH-UA-WoW64, Sec-CH-UA-Form-Factors, "
    "Sec-CH-DPR, Sec-CH-Device-Memory, Sec-CH-Prefers-Color-Scheme, "
    "Sec-CH-Prefers-Reduced-Motion"
)
_CRITICAL_CH = (
    "Sec-CH-UA-Arch, Sec-CH-UA-Bitness, Sec-CH-UA-Model, Sec-CH-UA-Platform-Version, "
    "Sec-CH-UA-Full-Version-List"
)

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; worker-src 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

_JS = "text/javascript; charset=utf-8"
_HTML = "text/html; charset=utf-8"

# path -> (file under static/, content type). A fixed table rather than a
# directory listing: nothing outside it can be served.
_ROUTES: dict[str, tuple[str, str]] = {
    "/": ("index.html", _HTML),
    "/index.html": ("index.html", _HTML),
    "/frame": ("frame.html", _HTML),
    "/set-state": ("set-state.html", _HTML),
    "/inspector.css": ("inspector.css", "text/css; charset=utf-8"),
    "/collect.js": ("collect.js", _JS),
    "/inspector.js": ("inspector.js", _JS),
    "/frame.js": ("frame.js", _JS),
    "/set-state.js": ("set-state.js", _JS),
    "/worker.js": ("worker.js", _JS),
    "/shared-worker.js": ("shared-worker.js", _JS),
    # Under /sw/ so that its scope covers nothing but itself: the inspector
    # page is never controlled by it.
    "/sw/service-worker.js": ("service-worker.js", _JS),
}

# The page's texts (static/index.html), each exactly as written there.
_PAGE_TEXTS = (
    N_("station inspector: what a website sees"),
    N_("This is what a website sees of this persona"),
    N_(
        "Every value below can be read by any website this browser visits, from the page "
        "itself, from an embedded frame and from background scripts (workers). Columns that "
        "disagree are marked: a real browser gives the same answer everywhere, so a "
        "difference is something a website could notice. Cookies and stored data are shown "
        "by name only. Nothing on this page leaves this computer."
    ),
    N_(
        "The coherence checks come first: the ones <code>station check</code> runs, over "
        "these values and against the persona's stored fingerprint. A failed check is "
        "something a website could catch."
    ),
    N_("Collecting&hellip;"),
    N_("Coherence checks"),
)
# What static/inspector.js writes on the page; it reads their translations
# from the page's "station-texts" block and falls back to the English.
_SCRIPT_TEXTS = (
    N_("Per scope (a row is marked when scopes disagree)"),
    N_("Value"),
    N_("Scopes agree?"),
    N_("NO, differs"),
    N_("yes"),
    N_("WebRTC ICE candidates"),
    N_(" (STUN {server})"),
    N_(" (no STUN server)"),
    N_("no candidates"),
    N_("Error: {error}"),
    N_("Browser identity in every scope"),
    N_("HTTP request headers"),
    N_("Headers a website receives"),
    N_("Screen and window"),
    N_("CSS media queries"),
    N_("Media features"),
    N_("WebRTC"),
    N_("Stored data (names only)"),
    N_("Cookies and storage"),
    N_("Other signals"),
    N_("Fingerprint hash"),
    N_("SHA-256 over the stable values"),
    N_("Device hash"),
    N_(
        "SHA-256 over what this device draws and computes (no screen, window, languages, "
        "time zone or user agent): page, and what the worker computes of it"
    ),
    N_("Coherence checks"),
    N_("station could not check this report: {why}"),
    N_("no verdicts came back"),
    N_("{passed} of {total} checks pass"),
    N_('The checks "station check" runs on this persona'),
    N_('The checks "station check" runs on this persona, failures first'),
    N_("Check"),
    N_("Result"),
    N_("Expected"),
    N_("Seen"),
    N_("pass"),
    N_("FAIL"),
    N_("Done. {summary}. Fingerprint hash {hash}. Device hash {device}"),
    N_("Done. Fingerprint hash {hash}. Device hash {device}"),
    N_("Done, but station did not receive the report: {error}"),
    N_("Could not show the report: {error}"),
    N_("it did not receive the report"),
)


def render_index(template: bytes, gettext: Callable[[str], str], code: str) -> bytes:
    """The inspector page in language `code`: its texts, and those inspector.js shows.

    English is the page as written. Otherwise each text is replaced by its
    translation, and the script's texts go into a JSON data block (not run:
    the page's CSP allows no inline script) that inspector.js reads.
    """
    if code == "en":
        return template
    text = template.decode("utf-8").replace('<html lang="en">', f'<html lang="{code}">', 1)
    for english in _PAGE_TEXTS:
        # Translations come from the package's own catalogue: trusted markup.
        text = text.replace(english, gettext(english))
    texts = {english: gettext(english) for english in _SCRIPT_TEXTS}
    # "<" escaped: no text can end the block or start a tag.
    data = json.dumps(texts, ensure_ascii=False).replace("<", "\\u003c")
    block = f'<script type="application/json" id="station-texts">{data}</script>\n'
    text = text.replace('<script src="/collect.js">', block + '<script src="/collect.js">', 1)
    return text.encode("utf-8")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_COOKIE_TOKEN = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


def _load_static() -> dict[str, bytes]:
    root = resources.files("outreach_station.inspector").joinpath("static")
    return {name: root.joinpath(name).read_bytes() for name, _ in set(_ROUTES.values())}


def cookie_names(header: str) -> list[str]:
    """The names in a Cookie header, in order; a nameless cookie becomes "(unnamed)".

    Browsers send a cookie set without "=" as its bare value, so a part with
    no "=" is a value, and must not be reported as a name.
    """
    names: list[str] = []
    for raw in header.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, sep, _value = part.partition("=")
        names.append(name.strip() if sep and name.strip() else "(unnamed)")
    return names


def echo_headers(items: list[tuple[str, str]]) -> dict[str, str]:
    """Request headers as the page shows them: lower-case names, cookie values removed."""
    out: dict[str, str] = {}
    for raw_name, raw_value in items:
        name = raw_name.lower()
        value = "; ".join(cookie_names(raw_value)) if name == "cookie" else raw_value
        # HTTP/1.1 allows a header to repeat; a website sees them joined.
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def identity_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if IDENTITY_HEADER.match(k)}


# --- fingerprint hash -------------------------------------------------------
#
# What goes into the hash (hash_material), the same in static/collect.js:
#   version;
#   scopes.<each of the five>: every field except timezone_offset (it moves
#     with daylight saving time; time_zone carries the identity), fonts
#     included;
#   headers: only IDENTITY_HEADER names (user-agent, accept-language,
#     accept-encoding, dnt, sec-gpc, sec-ch-*);
#   screen, media, misc: every field;
#   webrtc: the set of (type, protocol, address) of the candidates, sorted and
#     without duplicates, with mDNS host names (random per visit) replaced by
#     "mdns"; ports are never reported.
#   Left out: storage (what the person did, not who the browser is), meta
#   (times), hash itself, and every key named "error" at any depth (the wording
#   of an error is not a property of the persona; a failed scope still changes
#   the hash through its null values).
# The hash is SHA-256 over the canonical JSON of that material: keys sorted,
# no whitespace, numbers written as JavaScript writes them, UTF-8.


def _without_errors(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_errors(v) for k, v in value.items() if k != "error"}
    if isinstance(value, list):
        return [_without_errors(v) for v in value]
    return value


def _candidate_set(webrtc: Any) -> list[list[Any]]:
    candidates = webrtc.get("candidates") if isinstance(webrtc, Mapping) else None
    seen: dict[str, list[Any]] = {}
    for c in candidates or []:
        if not isinstance(c, Mapping):
            continue
        address = c.get("address")
        if isinstance(address, str) and address.endswith(".local"):
            address = "mdns"
        item = [c.get("type"), c.get("protocol"), address]
        seen[canonical_json(item)] = item
    return [seen[k] for k in sorted(seen)]


def hash_material(report: Mapping[str, Any]) -> dict[str, Any]:
    """The stable part of a report that the fingerprint hash covers (see above)."""
    raw_scopes = report.get("scopes")
    scopes: dict[str, Any] = {}
    for name in SCOPE_NAMES:
        scope = raw_scopes.get(name) if isinstance(raw_scopes, Mapping) else None
        scopes[name] = (
            {k: v for k, v in scope.items() if k != "timezone_offset"}
            if isinstance(scope, Mapping)
            else {}
        )
    headers = report.get("headers")
    material = {
        "version": report.get("version"),
        "scopes": scopes,
        "headers": identity_headers(headers) if isinstance(headers, Mapping) else {},
        "screen": report.get("screen"),
        "media": report.get("media"),
        "misc": report.get("misc"),
        "webrtc": _candidate_set(report.get("webrtc")),
    }
    result: dict[str, Any] = _without_errors(material)
    return result


def _js_number(value: float) -> str:
    """`value` as JavaScript's Number.prototype.toString writes it (ECMA-262 Number::toString)."""
    if not math.isfinite(value):
        return "null"  # what JSON.stringify makes of NaN and the infinities
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _js_number(-value)
    # repr gives the shortest digits that round-trip, as JavaScript's algorithm does.
    _sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # noqa: S101 - finite by the check above
    digits = "".join(map(str, digit_tuple))
    k = len(digits)  # ECMA-262's k (digit count) and n (decimal point position)
    n = k + exponent
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return text


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, numbers as JavaScript writes them.

    Equal to canonical() in static/collect.js, so both sides hash the same bytes.
    """
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        # From 1e21 on JavaScript writes integers in exponent form.
        return str(value) if abs(value) < 10**21 else _js_number(float(value))
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, str):
        # Same escapes as JSON.stringify: quote, backslash, control characters,
        # and (well-formed JSON.stringify) lone surrogates.
        text = json.dumps(value, ensure_ascii=False)
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        inner = ",".join(f"{canonical_json(str(k))}:{canonical_json(v)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def fingerprint_hash(report: Mapping[str, Any]) -> str:
    """SHA-256 hex of the stable part of an inspector report; equal to the page's own `hash`."""
    data = canonical_json(hash_material(report)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def device_hash(device: Any) -> str:
    """SHA-256 hex of a report's device signals (`report["device"]["main"]`).

    Equal to deviceHash() in static/collect.js: the canonical JSON of the
    page's device signals with every "error" key left out. Screen, window,
    languages, time zone and user agent are not among the signals.
    """
    data = canonical_json(_without_errors(device if device is not None else {}))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


# --- the server ---------------------------------------------------------------


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    # A fixed port would let a stale server or another user's process answer;
    # port 0 and no address reuse rule that out.
    allow_reuse_address = False

    inspector: InspectorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a browser that drops a
        # connection mid-request is not worth a line on the person's terminal.
        return


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd
    server_version = "station-inspector"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    _common_headers: ClassVar[dict[str, str]] = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }

    def log_message(self, format: str, *args: Any) -> None:
        # Silence: the CLI's output stays clean, and URLs (set-state) may carry test values.
        return

    # -- helpers --

    def _host_ok(self) -> bool:
        # Refusing other Host values defeats DNS rebinding: a web page the
        # persona visits cannot reach this server through a name of its own.
        return self.headers.get("Host") == self.server.inspector.netloc

    def _send(
        self,
        status: HTTPStatus,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Mapping[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in self._common_headers.items():
            self.send_header(name, value)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    # -- verbs --

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._send(HTTPStatus.MISDIRECTED_REQUEST)
            return
        url = urlsplit(self.path)
        if url.path == "/headers":
            self._send_json(HTTPStatus.OK, echo_headers(list(self.headers.items())))
            return
        if url.path == "/fonts.json":
            self._send_json(HTTPStatus.OK, {"families": list(self.server.inspector.probe_fonts())})
            return
        if url.path == "/favicon.ico":
            # Browsers ask for it unprompted; a 404 would show as a console error.
            self._send(HTTPStatus.NO_CONTENT)
            return
        route = _ROUTES.get(url.path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        name, content_type = route
        extra: dict[str, str] = {}
        cookies: list[str] = []
        if content_type == _HTML:
            extra["Content-Security-Policy"] = _CSP
            extra["Accept-CH"] = _ACCEPT_CH
            extra["Critical-CH"] = _CRITICAL_CH
        if url.path == "/set-state":
            try:
                cookies = _http_only_cookies(url.query)
            except UsageError:
                self._send(HTTPStatus.BAD_REQUEST, b"bad state\n", "text/plain; charset=utf-8")
                return
        self._send(HTTPStatus.OK, self.server.inspector.static[name], content_type, extra, cookies)

    def do_POST(self) -> None:
        status, report = self._receive_report()
        if report is None:
            # The body may be unread; it must not be taken for the next request.
            self.close_connection = True
            self._send(status)
            return
        inspector = self.server.inspector
        inspector._store_report(report)
        try:
            checks = inspector.check_report(report)
        except Exception as exc:  # a malformed report still counts as received
            answer: dict[str, Any] = {"checks": None, "error": f"{type(exc).__name__}: {exc}"}
        else:
            answer = {
                "checks": [
                    {**check.as_json(), "title": inspector.title(check.name)} for check in checks
                ],
                "error": None,
            }
        self._send_json(status, answer)

    def _receive_report(self) -> tuple[HTTPStatus, dict[str, Any] | None]:  # noqa: PLR0911 - one guard per refusal
        if not self._host_ok():
            return HTTPStatus.MISDIRECTED_REQUEST, None
        if urlsplit(self.path).path != "/report":
            return HTTPStatus.NOT_FOUND, None
        # A JSON content type forces a CORS preflight on any cross-origin
        # sender, which this server never answers; a stray Origin is refused too.
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.server.inspector.origin:
            return HTTPStatus.FORBIDDEN, None
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, None
        length_text = self.headers.get("Content-Length") or ""
        if not length_text.isdigit():
            return HTTPStatus.LENGTH_REQUIRED, None
        if not 0 < int(length_text) <= MAX_REPORT_BYTES:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, None
        try:
            report = json.loads(self.rfile.read(int(length_text)))
        except (ValueError, UnicodeDecodeError):
            return HTTPStatus.BAD_REQUEST, None
        if not isinstance(report, dict):
            return HTTPStatus.BAD_REQUEST, None
        return HTTPStatus.OK, report


def _http_only_cookies(query: str) -> list[str]:
    """Set-Cookie lines for `?http_cookie=name=value`: HttpOnly, which page scripts cannot set."""
    lines = []
    for pair in parse_qs(query).get("http_cookie", []):
        name, sep, value = pair.partition("=")
        if not sep or not _COOKIE_TOKEN.match(name) or not _COOKIE_TOKEN.match(value):
            raise UsageError(_("bad cookie in set-state query"))
        lines.append(f"{name}={value}; Path=/; HttpOnly; SameSite=Strict")
    return lines


class InspectorServer:
    """The inspector site on 127.0.0.1 and an ephemeral port, served from a daemon thread.

    With the persona's `fingerprint` and the browser's `engine_major`, the
    checks compare the report with them, as `station check` does; without,
    only what a report must agree with itself (see `checks.run_checks`).

    Example:
        with InspectorServer(fingerprint=fp, engine_major=browser.major) as server:
            page.goto(server.url)
            report = server.wait_for_report(timeout=30)
            checks = server.check_report(report)
    """

    def __init__(
        self,
        *,
        fingerprint: Fingerprint | None = None,
        engine_major: int | None = None,
        real_window: bool = False,
        language: str | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        # The page's language: `language` ("en", "sv"), else station's locale at start().
        self.language = language
        self.engine_major = engine_major
        # A headed desktop session: the page has the real window (checks.run_checks).
        self.real_window = real_window
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._report: dict[str, Any] | None = None
        self.static: dict[str, bytes] = {}
        self._fonts_lock = threading.Lock()
        self._installed_fonts: FontInventory | None = None
        self._gettext: Callable[[str], str] = lambda message: message

    # -- lifecycle --

    def start(self) -> InspectorServer:
        if self._httpd is not None:
            raise StateError(_("the inspector server is already running"))
        self._choose_language()
        self.static = _load_static()
        self.static["index.html"] = render_index(
            self.static["index.html"], self._gettext, self.language or "en"
        )
        try:
            httpd = _Httpd((HOST, 0), _Handler)
        except OSError as exc:
            raise BrowserError(
                _("cannot start the inspector server on {address}: {error}").format(
                    address=HOST, error=exc
                )
            ) from exc
        httpd.inspector = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="station-inspector",
            daemon=True,
        )
        self._thread.start()
        return self

    def _choose_language(self) -> None:
        from outreach_station import i18n

        code = self.language or i18n.language()
        catalogue = None
        if code != "en":
            try:
                catalogue = i18n.parse_po(i18n.catalogue_path(code).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                code = "en"  # English rather than a page with no words
        self.language = code
        self._gettext = (lambda message: message) if catalogue is None else catalogue.gettext

    def title(self, name: str) -> str:
        """A check's name in the page's language."""
        from outreach_station.inspector.checks import title_of

        return title_of(name, self._gettext)

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> InspectorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            raise StateError(_("the inspector server is not running"))
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def netloc(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.netloc}"

    @property
    def url(self) -> str:
        """The inspector page, like `http://127.0.0.1:PORT/`."""
        return f"{self.origin}/"

    def page_url(self, *, stun: str | None = None) -> str:
        """The inspector page; `stun` ("host:port") gives WebRTC a STUN server to ask."""
        if stun is None:
            return self.url
        return f"{self.url}?{urlencode({'stun': stun})}"

    # -- fonts --

    def installed_fonts(self) -> tuple[str, ...]:
        """The font families installed on the machine, read once per server (at first use).

        Lazily: most servers (and `station --help`) never need them, and
        fontconfig's tools take a moment.
        """
        return self._font_inventory().families

    def unmeasurable_fonts(self) -> frozenset[str]:
        """The installed families no page can find by measuring text (fonts.TEXT_PROBE)."""
        fonts = self._font_inventory()
        return frozenset(fonts.families) - frozenset(fonts.measurable)

    def _font_inventory(self) -> FontInventory:
        with self._fonts_lock:
            if self._installed_fonts is None:
                from outreach_station.fonts import inventory

                self._installed_fonts = inventory()
            return self._installed_fonts

    def probe_fonts(self) -> tuple[str, ...]:
        """The families each scope looks for: the installed ones and the commonly probed names."""
        from outreach_station.fonts import COMMON_FAMILIES

        return tuple(sorted({*self.installed_fonts(), *COMMON_FAMILIES}))

    # -- reports --

    def check_report(self, report: Mapping[str, Any]) -> list[Check]:
        """The coherence checks over `report`: what `station check` reports and the page shows.

        One function for both, so the demo page and `station check` cannot
        disagree. The installed fonts are the list the page probed with.
        """
        from outreach_station.inspector.checks import run_checks

        return run_checks(
            report,
            fingerprint=self.fingerprint,
            engine_major=self.engine_major,
            # Only the persona font check reads them; without a fingerprint
            # there is no reason to ask fontconfig.
            installed_fonts=self.installed_fonts() if self.fingerprint is not None else None,
            unmeasurable_fonts=self.unmeasurable_fonts() if self.fingerprint is not None else (),
            real_window=self.real_window,
        )

    def _store_report(self, report: dict[str, Any]) -> None:
        with self._cond:
            self._report = report
            self._cond.notify_all()

    def last_report(self) -> dict[str, Any] | None:
        """The last report a page posted, or None."""
        with self._cond:
            return self._report

    def clear_report(self) -> None:
        """Forget the last report, so that `wait_for_report` waits for the next load."""
        with self._cond:
            self._report = None

    def wait_for_report(self, timeout: float) -> dict[str, Any]:
        """The last report, waiting up to `timeout` seconds for one to arrive."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._report is not None, timeout=timeout):
                raise BrowserError(
                    _("the inspector page sent no report within {seconds} s").format(
                        seconds=f"{timeout:g}"
                    )
                )
            assert self._report is not None  # noqa: S101 - guaranteed by wait_for
            return self._report
