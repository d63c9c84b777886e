"""The inspector site, driven by real headless Chromium through Playwright."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from outreach_station.errors import BrowserError
from outreach_station.fonts import COMMON_FAMILIES, inventory
from outreach_station.inspector import SCOPE_NAMES, InspectorServer, fingerprint_hash
from outreach_station.inspector.checks import run_checks
from outreach_station.inspector.server import canonical_json, cookie_names, echo_headers
from tests.proxies import StunServer as _StunServer

CHROMIUM = "/usr/bin/chromium"
BASE_ARGS = [
    "--disable-blink-features=AutomationControlled",
    "--no-sandbox",  # the tests run as root
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

browser = pytest.mark.browser
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright


@pytest.fixture(autouse=True)
def _station_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def server() -> Iterator[InspectorServer]:
    with InspectorServer() as srv:
        yield srv


@contextmanager
def chromium(
    pw: Playwright,
    profile: Path,
    *args: str,
    env: dict[str, str | float | bool] | None = None,
    init_script: str | None = None,
) -> Iterator[BrowserContext]:
    context = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        ignore_default_args=["--enable-automation"],
        args=[*BASE_ARGS, *args],
        no_viewport=True,  # the window, not Playwright's emulation, decides the sizes
        env=env,
    )
    try:
        if init_script:
            context.add_init_script(init_script)
        yield context
    finally:
        context.close()


def inspect(
    context: BrowserContext, server: InspectorServer, url: str | None = None
) -> dict[str, Any]:
    """Load the inspector page in the context's first tab and return the report the server got."""
    server.clear_report()
    page = tab(context)
    page.goto(url or server.url)
    report = server.wait_for_report(timeout=30)
    page.locator("body[data-ready='1']").wait_for(state="attached", timeout=10_000)
    return report


def set_state(context: BrowserContext, server: InspectorServer, query: str) -> None:
    page = tab(context)
    page.goto(f"{server.url}set-state?{query}")
    page.locator("body[data-ready='1']").wait_for(state="attached", timeout=10_000)


def read_verdicts(page: Page) -> dict[str, Any]:
    """The verdict table as the page renders it: the summary line and each row's four cells."""
    summary = page.locator("#verdict-summary").inner_text()
    rows = page.locator("#verdict-table tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    return {"summary": summary, "rows": rows}


def tab(context: BrowserContext) -> Page:
    return context.pages[0] if context.pages else context.new_page()


def all_scopes(report: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: report["scopes"][name][key] for name in SCOPE_NAMES}


# --- pure Python parts ---------------------------------------------------------


def test_cookie_names_never_return_values() -> None:
    assert cookie_names("a=1; b=two=2;  c=") == ["a", "b", "c"]
    # A cookie set without "=" travels as its bare value: that is not a name.
    assert cookie_names("lonelyvalue; x=1") == ["(unnamed)", "x"]
    echoed = echo_headers([("Cookie", "sid=hunter2; theme=dark"), ("User-Agent", "UA")])
    assert echoed == {"cookie": "sid; theme", "user-agent": "UA"}


def test_python_hash_covers_stable_fields_only() -> None:
    report: dict[str, Any] = {
        "version": 1,
        "scopes": {
            n: {"user_agent": "UA", "timezone_offset": 0, "error": None} for n in SCOPE_NAMES
        },
        "headers": {"user-agent": "UA", "host": "127.0.0.1:1", "cookie": "a"},
        "screen": {"width": 800, "device_pixel_ratio": 1.25},
        "media": {},
        "misc": {},
        "webrtc": {"candidates": [{"type": "host", "protocol": "udp", "address": "x.local"}]},
        "storage": {"cookies": ["a"]},
        "meta": {"collected_at": "t0"},
    }
    base = fingerprint_hash(report)
    assert re.fullmatch(r"[0-9a-f]{64}", base)

    def changed(path: list[str], value: Any) -> str:
        copy = json.loads(json.dumps(report))
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return fingerprint_hash(copy)

    # Things that change between visits of one persona leave the hash alone.
    assert changed(["meta", "collected_at"], "t1") == base
    assert changed(["storage", "cookies"], ["a", "b"]) == base
    assert changed(["headers", "host"], "127.0.0.1:2") == base
    assert changed(["headers", "cookie"], "b") == base
    assert changed(["scopes", "main", "timezone_offset"], 60) == base
    assert changed(["scopes", "main", "error"], "boom") == base
    assert (
        changed(
            ["webrtc", "candidates"],
            [{"type": "host", "protocol": "udp", "address": "y.local"}] * 2,
        )
        == base
    )
    # Identity changes it.
    assert changed(["scopes", "iframe", "user_agent"], "UA2") != base
    assert changed(["headers", "user-agent"], "UA2") != base
    assert changed(["screen", "device_pixel_ratio"], 1.5) != base
    assert (
        changed(
            ["webrtc", "candidates"],
            [{"type": "srflx", "protocol": "udp", "address": "203.0.113.7"}],
        )
        != base
    )


# --- the server ------------------------------------------------------------------


def test_server_binds_loopback_only_and_stays_quiet(
    server: InspectorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = server.address
    assert host == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{port}/"
    # Another loopback address reaches every socket bound to 0.0.0.0 but not ours.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 200
    assert "This is what a website sees of this persona" in body
    assert "Sec-CH-UA-Full-Version-List" in (response.getheader("Accept-CH") or "")
    assert "Sec-CH-UA-Platform-Version" in (response.getheader("Critical-CH") or "")
    assert not re.search(r"(src|href)=\"(https?:)?//", body), "no external resources"
    conn.request("GET", "/nope")
    missing = conn.getresponse()
    missing.read()
    assert missing.status == 404
    # A name other than 127.0.0.1:PORT (DNS rebinding) is refused.
    conn.request("GET", "/headers", headers={"Host": f"attacker.example:{port}"})
    assert conn.getresponse().status == 421
    conn.close()
    # A client that hangs up mid-request must not print a traceback either.
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    raw.sendall(b"GET / HT")
    raw.close()

    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_fonts_list_is_the_installed_families_and_the_common_names(
    server: InspectorServer,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/fonts.json")
    response = conn.getresponse()
    listed = json.loads(response.read())["families"]
    conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert listed == sorted({*inventory().families, *COMMON_FAMILIES})
    assert listed == list(server.probe_fonts())


def test_report_endpoint_refuses_cross_origin_and_non_json(server: InspectorServer) -> None:
    answers: list[bytes] = []

    def post(body: bytes, headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/report", body=body, headers=headers)
        response = conn.getresponse()
        answers.append(response.read())
        conn.close()
        return response.status

    good = json.dumps({"version": 1, "hash": "x"}).encode()
    # A form post or text/plain beacon from a website the persona visits.
    assert post(good, {"Content-Type": "text/plain"}) == 415
    assert post(good, {"Content-Type": "application/json", "Origin": "https://evil.example"}) == 403
    assert post(b"[1, 2]", {"Content-Type": "application/json"}) == 400
    assert post(b"{not json", {"Content-Type": "application/json"}) == 400
    assert server.last_report() is None
    with pytest.raises(BrowserError, match="no report"):
        server.wait_for_report(timeout=0.2)

    assert post(good, {"Content-Type": "application/json", "Origin": server.origin}) == 200
    assert server.wait_for_report(timeout=1) == {"version": 1, "hash": "x"}
    # The answer is the checks over the report (no persona given: only self-agreement).
    checks = [c.as_json() for c in run_checks({"version": 1, "hash": "x"})]
    assert json.loads(answers[-1]) == {"checks": checks, "error": None}

    # A report the checks cannot read is still received; the answer says why there are none.
    odd = json.dumps({"version": 1, "scopes": 5}).encode()
    assert post(odd, {"Content-Type": "application/json"}) == 200
    assert server.wait_for_report(timeout=1) == {"version": 1, "scopes": 5}
    answer = json.loads(answers[-1])
    assert answer["checks"] is None and answer["error"].startswith("AttributeError")


# --- in Chromium ---------------------------------------------------------------


@browser
@needs_chromium
def test_report_arrives_from_all_five_scopes(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    from outreach_station.fonts import write_config

    # The font file station writes for a persona that presents the machine's fonts.
    config = tmp_path / "config"
    write_config(config, ())
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    with chromium(pw, tmp_path / "profile", env=env) as context:
        report = inspect(context, server)
        page = context.pages[0]
        in_page = page.evaluate("window.__stationReport")
        heading = page.locator("h1").inner_text()
        table_text = page.locator("#results").inner_text()
        verdicts = read_verdicts(page)

    assert report["version"] == 1
    assert set(report["scopes"]) == set(SCOPE_NAMES)
    for name, scope in report["scopes"].items():
        assert scope["error"] is None, name
        assert "Mozilla/5.0" in scope["user_agent"], name
        assert scope["ua_data"]["high_entropy"]["ua_full_version"], name
    assert report["scopes"]["main"]["webdriver"] is False
    # Worker values come from the workers themselves: WorkerNavigator has no webdriver.
    for name in ("dedicated_worker", "shared_worker", "service_worker"):
        assert report["scopes"][name]["webdriver"] is None, name
    assert in_page == report
    assert heading == "This is what a website sees of this persona"
    assert "service worker" in table_text
    # Headers show the client hints the page asked for.
    assert report["headers"]["sec-ch-ua-full-version-list"]
    assert report["headers"]["user-agent"] == report["scopes"]["main"]["user_agent"]
    for key in ("width", "height", "avail_width", "device_pixel_ratio", "outer_width"):
        assert isinstance(report["screen"][key], int | float), key
    assert report["media"]["device_width"] == report["screen"]["width"]
    assert report["media"]["resolution_dppx"] == report["screen"]["device_pixel_ratio"]
    assert all(c["type"] and c["protocol"] for c in report["webrtc"]["candidates"])
    assert re.fullmatch(r"[0-9a-f]{64}", report["misc"]["canvas_hash"])
    # The inspector removes its own service worker again.
    assert report["storage"]["service_workers"] == 0
    # Fonts, measured with the same code in every scope: with the font file of
    # a persona that presents the machine's fonts, every installed family.
    fonts = all_scopes(report, "fonts")
    assert fonts == dict.fromkeys(SCOPE_NAMES, fonts["main"])
    assert fonts["main"] == sorted(fonts["main"])
    # Every installed family a page can measure is found (one with no character of the
    # probe text, such as Noto Sans Tamil Supplement, cannot be), and nothing not probed.
    measurable = set(server.installed_fonts()) - server.unmeasurable_fonts()
    assert measurable <= set(fonts["main"]) <= set(server.probe_fonts())
    assert fingerprint_hash(report) == report["hash"]
    # The page shows the server's checks, which with no persona only ask for agreement.
    checks = server.check_report(report)
    assert verdicts["rows"] == sorted(
        ([c.name, "pass" if c.ok else "FAIL", c.expected, c.seen] for c in checks),
        key=lambda row: row[1] == "pass",
    )
    passed = sum(c.ok for c in checks)
    assert verdicts["summary"] == f"{passed} of {len(checks)} checks pass"


@browser
@needs_chromium
def test_user_agent_switch_reaches_every_scope_and_the_headers(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) StationTest/7.7"
    with chromium(pw, tmp_path / "profile", f"--user-agent={ua}") as context:
        report = inspect(context, server)

    assert all_scopes(report, "user_agent") == dict.fromkeys(SCOPE_NAMES, ua)
    assert {n: s["http"]["user-agent"] for n, s in report["scopes"].items()} == dict.fromkeys(
        SCOPE_NAMES, ua
    )
    assert report["headers"]["user-agent"] == ua


@browser
@needs_chromium
def test_language_switches_show_in_languages_and_accept_language(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    with chromium(pw, tmp_path / "profile", "--lang=sv-SE", "--accept-lang=sv-SE,sv,en") as context:
        report = inspect(context, server)

    assert all_scopes(report, "languages") == {n: ["sv-SE", "sv", "en"] for n in SCOPE_NAMES}
    assert all_scopes(report, "language") == dict.fromkeys(SCOPE_NAMES, "sv-SE")
    assert report["headers"]["accept-language"] == "sv-SE,sv;q=0.9,en;q=0.8"
    for scope in report["scopes"].values():
        assert scope["http"]["accept-language"] == "sv-SE,sv;q=0.9,en;q=0.8"


@browser
@needs_chromium
@pytest.mark.parametrize(("zone", "offset"), [("Asia/Tokyo", -540), ("America/Sao_Paulo", 180)])
def test_tz_environment_shows_in_every_scope(
    pw: Playwright, server: InspectorServer, tmp_path: Path, zone: str, offset: int
) -> None:
    with chromium(pw, tmp_path / "profile", env={**os.environ, "TZ": zone}) as context:
        report = inspect(context, server)

    assert all_scopes(report, "time_zone") == dict.fromkeys(SCOPE_NAMES, zone)
    assert all_scopes(report, "timezone_offset") == dict.fromkeys(SCOPE_NAMES, offset)


@browser
@needs_chromium
def test_hash_is_stable_for_a_profile_and_moves_with_identity(
    pw: Playwright, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    hashes: list[str] = []
    with InspectorServer() as server, chromium(pw, profile, "--window-size=1000,700") as context:
        first = inspect(context, server)
        hashes.append(first["hash"])
        # What the person stores is not identity: a cookie and storage keys change nothing.
        set_state(context, server, "cookie=visited=1&local=seen=1")
        second = inspect(context, server)
        hashes.append(second["hash"])
    assert second["storage"]["cookies"] == ["visited"]
    assert second["storage"]["local_storage"] == ["seen"]
    # The same profile reopened, served from another port.
    with InspectorServer() as server, chromium(pw, profile, "--window-size=1000,700") as context:
        hashes.append(inspect(context, server)["hash"])
    assert len(set(hashes)) == 1, hashes
    assert fingerprint_hash(first) == hashes[0]

    with (
        InspectorServer() as server,
        chromium(
            pw,
            profile,
            "--window-size=1000,700",
            "--user-agent=Mozilla/5.0 (X11; Linux x86_64) Other/1.0",
        ) as context,
    ):
        other_ua = inspect(context, server)
    with InspectorServer() as server, chromium(pw, profile, "--window-size=1100,750") as context:
        other_size = inspect(context, server)

    assert other_ua["hash"] != hashes[0]
    assert other_size["screen"]["outer_width"] != first["screen"]["outer_width"]
    assert other_size["hash"] != hashes[0]
    assert fingerprint_hash(other_ua) == other_ua["hash"]
    assert fingerprint_hash(other_size) == other_size["hash"]


@browser
@needs_chromium
def test_python_canonical_json_equals_the_pages(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    values: list[Any] = [
        0,
        -0.0,
        1,
        -7,
        1.25,
        0.1 + 0.2,
        1e-7,
        1.5e-5,
        0.000001,
        123456789.125,
        1e21,
        2.5e22,
        2**53 + 2,
        1e20,
        True,
        False,
        None,
        "plain",
        'quote " backslash \\ tab \t newline \n nul \x00 del \x7f',
        "Åäö 中文 \U0001f310 \u2028",
        {"b": [1, {"z": 1, "a": None}], "a": "x", "A": 2, "_": 1.5},
        [],
        {},
    ]
    with chromium(pw, tmp_path / "profile") as context:
        inspect(context, server)
        page = context.pages[0]
        in_js = page.evaluate("values => values.map(v => station.canonical(v))", values)
    assert in_js == [canonical_json(v) for v in values]


@browser
@needs_chromium
def test_cookie_and_storage_values_never_reach_the_report(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    state = (
        "cookie=visible_cookie=SECRETVALUE1&http_cookie=httponly_cookie=SECRETVALUE2"
        "&local=local_key=SECRETVALUE3&session=session_key=SECRETVALUE4&indexeddb=station-db"
    )
    with chromium(pw, tmp_path / "profile") as context:
        set_state(context, server, state)
        page = tab(context)
        # A cookie set without "=" has no name; its text is a value.
        page.evaluate("document.cookie = 'SECRETVALUE5; path=/'")
        report = inspect(context, server)
        shown = page.locator("body").inner_text()

    storage = report["storage"]
    assert storage["cookies"] == ["(unnamed)", "visible_cookie"]
    assert storage["local_storage"] == ["local_key"]
    assert storage["session_storage"] == ["session_key"]
    assert storage["indexeddb"] == ["station-db"]
    # The HttpOnly cookie is invisible to scripts but travels in the Cookie header, by name.
    assert set(report["headers"]["cookie"].split("; ")) == {
        "visible_cookie",
        "httponly_cookie",
        "(unnamed)",
    }
    assert "SECRETVALUE" not in json.dumps(report)
    assert "SECRETVALUE" not in shown


@browser
@needs_chromium
def test_a_failing_scope_is_recorded_and_the_rest_still_reported(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    # As in browsers without shared workers (Chrome on Android).
    no_shared = "delete window.SharedWorker"
    with chromium(pw, tmp_path / "profile", init_script=no_shared) as context:
        report = inspect(context, server)

    failed = report["scopes"]["shared_worker"]
    assert "SharedWorker" in failed["error"]
    assert failed["user_agent"] is None
    for name in SCOPE_NAMES:
        if name != "shared_worker":
            assert report["scopes"][name]["error"] is None, name
            assert report["scopes"][name]["user_agent"], name
    assert fingerprint_hash(report) == report["hash"]


@browser
@needs_chromium
def test_a_value_faked_in_the_page_only_is_marked_as_disagreeing(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    # What a per-page override (such as a CDP emulation) does: workers keep the truth.
    fake = "Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', {get: () => 64})"
    with chromium(pw, tmp_path / "profile", init_script=fake) as context:
        report = inspect(context, server)
        page = tab(context)
        cores = page.locator(
            "tr", has=page.locator("th", has_text=re.compile("^hardware_concurrency$"))
        )
        user_agent = page.locator("tr", has=page.locator("th", has_text=re.compile("^user_agent$")))
        cores_class, ua_class = cores.get_attribute("class"), user_agent.get_attribute("class")
        cores_text = cores.inner_text()

    values = all_scopes(report, "hardware_concurrency")
    assert values["main"] == values["iframe"] == 64
    assert values["dedicated_worker"] == values["shared_worker"] == values["service_worker"] != 64
    assert cores_class == "disagree"
    assert "differs" in cores_text
    assert ua_class != "disagree"


@browser
@needs_chromium
def test_webrtc_reports_what_a_stun_server_reveals(
    pw: Playwright, server: InspectorServer, tmp_path: Path
) -> None:
    stun = _StunServer()
    address = stun.address
    try:
        with chromium(pw, tmp_path / "profile") as context:
            report = inspect(context, server, server.page_url(stun=address))
    finally:
        stun.close()

    webrtc = report["webrtc"]
    assert webrtc["stun"] == address
    assert stun.requests > 0
    srflx = [c for c in webrtc["candidates"] if c["type"] == "srflx"]
    assert srflx, webrtc
    assert {c["address"] for c in srflx} == {_StunServer.MAPPED}
    assert all(c["protocol"] == "udp" for c in srflx)
