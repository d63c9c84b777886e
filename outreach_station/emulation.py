"""What a persona presents that no switch can set: applied per page through the protocol.

Only what the engine then keeps coherent in every scope belongs here: things
of the window and the screen, which workers do not have, so there is nothing
for them to contradict. See docs/fingerprints.md.

- Headless desktop (`install_window`): headless Chromium gives every window
  it opens the size it likes (with the --user-agent switch, the viewport plus
  a phantom 8x131 px frame, larger than the emulated screen), and
  `Browser.setWindowBounds` is the one way to make the outer window that of a
  maximised browser on the persona's screen.
- Headed desktop (`install_screen`): the page keeps the real window, so that
  nothing runs off a laptop display smaller than the persona's screen; the
  persona's screen and pixel ratio are set per page, and windows are kept
  within that screen.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from playwright.async_api import BrowserContext, CDPSession, Page


async def set_outer_window(context: BrowserContext, page: Page, size: tuple[int, int]) -> None:
    """Give `page`'s window the outer size `size`, at the screen's top-left like a maximised one."""
    from playwright.async_api import Error as PlaywrightError

    with contextlib.suppress(PlaywrightError):
        session = await context.new_cdp_session(page)
        try:
            window = await session.send("Browser.getWindowForTarget")
            bounds = {"left": 0, "top": 0, "width": size[0], "height": size[1]}
            await session.send(
                "Browser.setWindowBounds", {"windowId": window["windowId"], "bounds": bounds}
            )
        finally:
            with contextlib.suppress(PlaywrightError):
                await session.detach()


async def install_window(context: BrowserContext, size: tuple[int, int] | None) -> None:
    """Set the outer window of every page now open and of every page opened later."""
    if size is None:
        return
    import asyncio

    pending: set[asyncio.Task[None]] = set()

    def on_page(page: Page) -> None:
        # Kept referenced until done: the event loop holds only weak references to tasks.
        task = asyncio.ensure_future(set_outer_window(context, page, size))
        pending.add(task)
        task.add_done_callback(pending.discard)

    context.on("page", on_page)
    for page in context.pages:
        await set_outer_window(context, page, size)


@dataclass(frozen=True)
class ScreenEmulation:
    """The screen a headed desktop persona presents while its window stays the real one."""

    width: int
    height: int
    ratio: float
    # The persona's maximised outer window: the most a window may take.
    window: tuple[int, int]


_REAL_AREA = "[screen.availLeft, screen.availTop, screen.availWidth, screen.availHeight]"
# How often a headed window is measured against the persona's screen.
WINDOW_CHECK_SECONDS = 1.0


class ScreenGuard:
    """Keeps every page's screen override attached and every window within the persona's screen.

    CDP emulation lasts as long as the session that set it, so each page's
    session stays attached for the page's life. A person who maximises a
    window on a display larger than the persona's screen would show a window
    larger than the screen; the guard puts it back to the persona's size.
    """

    def __init__(self, context: BrowserContext, screen: ScreenEmulation) -> None:
        self._context = context
        self._screen = screen
        self._sessions: dict[Page, CDPSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> ScreenGuard:
        import asyncio

        self._context.on("page", self._on_page)
        for page in self._context.pages:
            await self.present(page, fit_window=True)
        self._watch = asyncio.ensure_future(self._keep_windows())
        return self

    def _on_page(self, page: Page) -> None:
        import asyncio

        # A tab or a window a page opens keeps the size it was given (a small
        # sign-in popup stays small); only a window larger than the screen is
        # put back, by _keep_windows.
        task = asyncio.ensure_future(self.present(page, fit_window=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def present(self, page: Page, *, fit_window: bool) -> None:
        """The persona's screen for `page`; with `fit_window`, its window sized to the display."""
        from playwright.async_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            session = await self._context.new_cdp_session(page)
            # The real display's free area, read before the override hides it.
            real = await session.send(
                "Runtime.evaluate", {"expression": _REAL_AREA, "returnByValue": True}
            )
            await session.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    # 0 x 0: the page keeps the real window's size (resizable by hand).
                    "width": 0,
                    "height": 0,
                    "deviceScaleFactor": self._screen.ratio,
                    "mobile": False,
                    "screenWidth": self._screen.width,
                    "screenHeight": self._screen.height,
                },
            )
            self._sessions[page] = session
            page.on("close", self._forget)
            if not fit_window:
                return
            left, top, free_w, free_h = real["result"]["value"]
            want_w, want_h = self._screen.window
            await self._set_window(
                session,
                {
                    "left": left,
                    "top": top,
                    "width": min(want_w, free_w),
                    "height": min(want_h, free_h),
                },
            )

    def _forget(self, page: Page) -> None:
        self._sessions.pop(page, None)

    async def _set_window(self, session: CDPSession, bounds: dict[str, int]) -> None:
        window = await session.send("Browser.getWindowForTarget")
        current = window["bounds"]
        if current.get("windowState", "normal") != "normal":
            await session.send(
                "Browser.setWindowBounds",
                {"windowId": window["windowId"], "bounds": {"windowState": "normal"}},
            )
        await session.send(
            "Browser.setWindowBounds", {"windowId": window["windowId"], "bounds": bounds}
        )

    async def _keep_windows(self) -> None:
        import asyncio

        from playwright.async_api import Error as PlaywrightError

        while True:
            await asyncio.sleep(WINDOW_CHECK_SECONDS)
            for session in list(self._sessions.values()):
                with contextlib.suppress(PlaywrightError):
                    window = await session.send("Browser.getWindowForTarget")
                    bounds = window["bounds"]
                    if (
                        bounds.get("width", 0) > self._screen.width
                        or bounds.get("height", 0) > self._screen.height
                    ):
                        want_w, want_h = self._screen.window
                        await self._set_window(
                            session,
                            {
                                "width": min(want_w, self._screen.width),
                                "height": min(want_h, self._screen.height),
                            },
                        )

    async def close(self) -> None:
        from playwright.async_api import Error as PlaywrightError

        for task in (*self._tasks, *([self._watch] if self._watch else [])):
            task.cancel()
        for session in list(self._sessions.values()):
            with contextlib.suppress(PlaywrightError):
                await session.detach()
        self._sessions.clear()


async def install_screen(
    context: BrowserContext, screen: ScreenEmulation | None
) -> ScreenGuard | None:
    """Present `screen` on every page now open and opened later (headed desktop only)."""
    if screen is None:
        return None
    return await ScreenGuard(context, screen).start()
