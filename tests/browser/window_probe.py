"""Run in a child process: open one headed window and report what the person and the page see.

`python -m tests.browser.window_probe station|plain URL OUT.json [LABEL PLATFORM_NAME [new-window]]`

station: station's own launch (build_launch, run_session) of a fresh persona
         on a fresh profile, named LABEL · PLATFORM_NAME when given.
plain:   Chromium with nothing but its profile directory, the sandbox setting
         it needs for this account, and the pipe Playwright talks over.

A child process, so that a test can run it in a private mount namespace
that holds a managed Chromium policy (nothing is installed in /etc).
It writes: the window's chrome height (outerHeight - innerHeight), what the
page, an iframe and a worker see (PAGE_PROBE), the page's screenshot-free
view of itself, and the names of the display's visible windows. With
`new-window`, it then presses Ctrl+N in the browser's window, as a person
would, and writes the names of all the browser's windows (`all_windows`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Everything a page, a frame or a worker could read that might carry the
# window's name or the profile's colour.
PAGE_PROBE = """async () => {
  const SYSTEM_COLOURS = ['AccentColor', 'AccentColorText', 'ActiveText', 'ButtonBorder',
    'ButtonFace', 'ButtonText', 'Canvas', 'CanvasText', 'Field', 'FieldText', 'GrayText',
    'Highlight', 'HighlightText', 'LinkText', 'Mark', 'MarkText', 'SelectedItem',
    'SelectedItemText', 'VisitedText', 'ActiveBorder', 'ActiveCaption', 'AppWorkspace',
    'Background', 'ButtonHighlight', 'ButtonShadow', 'CaptionText', 'InactiveBorder',
    'InactiveCaption', 'InactiveCaptionText', 'InfoBackground', 'InfoText', 'Menu',
    'MenuText', 'Scrollbar', 'ThreeDDarkShadow', 'ThreeDFace', 'ThreeDHighlight',
    'ThreeDLightShadow', 'ThreeDShadow', 'Window', 'WindowFrame', 'WindowText'];
  const MEDIA = ['(prefers-color-scheme: dark)', '(prefers-color-scheme: light)',
    '(prefers-contrast: more)', '(prefers-contrast: less)', '(forced-colors: active)',
    '(prefers-reduced-transparency: reduce)', '(inverted-colors: inverted)',
    '(display-mode: browser)', '(display-mode: standalone)', '(color-gamut: p3)'];
  function scope(win) {
    const doc = win.document;
    const el = doc.createElement('div');
    doc.body.appendChild(el);
    const colours = {};
    for (const name of SYSTEM_COLOURS) {
      el.style.color = name;
      colours[name] = win.getComputedStyle(el).color;
    }
    const box = doc.createElement('input');
    box.type = 'checkbox';
    doc.body.appendChild(box);
    const accent = win.getComputedStyle(box).accentColor;
    const nav = {};
    for (const key in win.navigator) {
      const value = win.navigator[key];
      if (['string', 'number', 'boolean'].includes(typeof value)) nav[key] = value;
    }
    return {
      title: doc.title, name: win.name, webdriver: win.navigator.webdriver,
      media: MEDIA.map(q => [q, win.matchMedia(q).matches]), colours, accent, nav,
      meta: [...doc.querySelectorAll('meta')].map(m => m.outerHTML),
      dark: win.matchMedia('(prefers-color-scheme: dark)').matches,
    };
  }
  const frame = document.querySelector('iframe');
  const code = `
    const nav = {};
    for (const key in navigator) {
      const value = navigator[key];
      if (['string', 'number', 'boolean'].includes(typeof value)) nav[key] = value;
    }
    const dark = typeof matchMedia === 'function'
      ? matchMedia('(prefers-color-scheme: dark)').matches : null;
    postMessage({name: self.name, webdriver: navigator.webdriver, nav, dark});`;
  const worker = new Worker(URL.createObjectURL(new Blob([code])), {type: 'classic'});
  const fromWorker = await new Promise(r => { worker.onmessage = e => r(e.data); });
  return {
    chrome: outerHeight - innerHeight, outer: [outerWidth, outerHeight],
    page: scope(window), iframe: scope(frame.contentWindow), worker: fromWorker,
  };
}"""


def window_names() -> list[str]:
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "."],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    names = []
    for window in found:
        name = subprocess.run(
            ["xdotool", "getwindowname", window], capture_output=True, text=True, check=False
        ).stdout.strip()
        if name:
            names.append(name)
    return names


def _xdotool(*args: str) -> list[str]:
    return subprocess.run(
        ["xdotool", *args], capture_output=True, text=True, check=False
    ).stdout.split("\n")


def _browser_windows(pid: str) -> list[str]:
    return [w for w in _xdotool("search", "--onlyvisible", "--pid", pid, "--name", ".") if w]


async def press_new_window() -> list[str]:
    """Ctrl+N in the browser's window, as the person presses it; every browser window's name."""
    first = next(w for w in _xdotool("search", "--onlyvisible", "--name", ".") if w)
    pid = _xdotool("getwindowpid", first)[0].strip()
    before = len(_browser_windows(pid))
    _xdotool("windowfocus", "--sync", first)
    _xdotool("key", "--clearmodifiers", "ctrl+n")
    for _ in range(100):
        if len(_browser_windows(pid)) > before:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # the new window's title settles after its first paint
    return [_xdotool("getwindowname", w)[0].strip() for w in _browser_windows(pid)]


async def measure(page: Any, new_window: bool = False) -> dict[str, Any]:
    await page.wait_for_load_state("load")
    await asyncio.sleep(2)  # the window's bars settle after the first paint
    seen: dict[str, Any] = await page.evaluate(PAGE_PROBE)
    seen["windows"] = window_names()
    if new_window:
        seen["all_windows"] = await press_new_window()
    return seen


async def plain(url: str, scratch: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from outreach_station.browser import find_browser

    args = ["--remote-debugging-pipe", "--no-first-run", "--password-store=basic"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # as station does, and only then
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(scratch / "plain"),
            executable_path=str(find_browser().path),
            headless=False,
            ignore_default_args=True,
            args=[*args, "about:blank"],
            no_viewport=True,
        )
        page = context.pages[0] if context.pages else await context.new_page()
        await page.goto(url)
        seen = await measure(page)
        await context.close()
        return seen


async def station(
    url: str, scratch: Path, label: str, platform_name: str, new_window: bool = False
) -> dict[str, Any]:
    from outreach_station.appearance import appearance_for
    from outreach_station.browser import build_launch, find_browser, run_session
    from outreach_station.fingerprint import generate
    from outreach_station.platforms import PlatformProfile

    platform_id = "-".join(platform_name.lower().split()) or "window-probe"
    platform = PlatformProfile(id=platform_id, name=platform_name or "Probe", start_url=url)
    # One device pixel per CSS pixel, so outer and inner heights share a unit.
    fingerprint = dataclasses.replace(generate(platform), device_scale_factor=1.0)
    (scratch / "profile").mkdir(mode=0o700)
    spec = build_launch(
        browser=find_browser(),
        fingerprint=fingerprint,
        user_data_dir=scratch / "profile",
        home=scratch / "home",
        headless=False,
        appearance=appearance_for(
            label=label,
            persona_id="probeprobe23",
            platform_id=platform.id,
            platform_name=platform_name,
        )
        if label
        else None,
    )
    seen: dict[str, Any] = {}

    async def hook(_context: Any, page: Any) -> None:
        seen.update(await measure(page, new_window))

    await run_session(spec, url, hook=hook, close_after_hook=True)
    seen["preferences"] = json.loads((scratch / "profile" / "Default" / "Preferences").read_text())
    return seen


def main() -> None:
    mode, url, out = sys.argv[1:4]
    label, platform_name, extra = [*sys.argv[4:7], "", "", ""][:3]
    with tempfile.TemporaryDirectory() as scratch:
        if mode == "plain":
            seen = asyncio.run(plain(url, Path(scratch)))
        else:
            seen = asyncio.run(
                station(url, Path(scratch), label, platform_name, extra == "new-window")
            )
    Path(out).write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
