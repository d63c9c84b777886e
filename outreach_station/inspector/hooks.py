"""What a session does with the inspector page: await its report and run the checks on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from outreach_station.errors import BrowserError
from outreach_station.i18n import _

if TYPE_CHECKING:
    from outreach_station.browser import SessionHook
    from outreach_station.inspector.checks import Check
    from outreach_station.inspector.server import InspectorServer

OnReport = Callable[[Mapping[str, Any], "list[Check]"], None]


def report_hook(server: InspectorServer, on_report: OnReport) -> SessionHook:
    """The checks `station check` runs, for any session that opens the inspector (the demo too).

    They come from `server.check_report`, the function that gives the page its
    verdicts, against the persona and engine the server was made with.
    """

    async def hook(_context: Any, _page: Any) -> None:
        import asyncio

        report = await await_report(server)
        # Off the loop: the first call reads the installed fonts (fontconfig's tools).
        checks = await asyncio.to_thread(server.check_report, report)
        on_report(report, checks)

    return hook


async def await_report(server: InspectorServer, timeout: float = 30.0) -> Mapping[str, Any]:
    """The inspector's report, awaited in short steps so a signal can end the wait at once."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (report := server.last_report()) is None:
        if loop.time() > deadline:
            raise BrowserError(
                _("the inspector page sent no report within {seconds} s").format(
                    seconds=f"{timeout:g}"
                )
            )
        await asyncio.sleep(0.05)
    return report
