"""What a persona presents that no switch can set: applied per page through the protocol.

Only what the engine then keeps coherent in every scope belongs here. Today
that is the outer window of a headless desktop persona: headless Chromium
gives every window it opens the size it likes (with the --user-agent switch,
the viewport plus a phantom 8x131 px frame, larger than the emulated screen),
and `Browser.setWindowBounds` is the one way to make the outer window that of
a maximised browser on the persona's screen. Workers have no window, so there
is nothing for them to contradict. See docs/fingerprints.md.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from playwright.async_api import BrowserContext, Page


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
