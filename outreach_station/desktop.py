"""Desktop launchers: open a platform's persona from the desktop, without a terminal.

`install` writes one XDG desktop entry per platform IT allows, named and
coloured like the persona's window (appearance.platform_colour), and an icon
in that colour. A launcher runs this module (`python -m outreach_station.desktop
open PLATFORM`), which runs `station open PLATFORM` and, when it fails, shows
the error line as a desktop notification: with no terminal, a message on
stderr would reach nobody.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from outreach_station import fsutil
from outreach_station.errors import EnvironmentProblem, UsageError
from outreach_station.i18n import _
from outreach_station.platforms import PlatformProfile

PREFIX: Final = "outreach-station-"
APP_NAME: Final = "Outreach station"
# Desktop entries are read by the desktop as text: one line per key.
_MAX_NAME: Final = 80


@dataclass(frozen=True)
class Launcher:
    platform: str
    entry: Path
    icon: Path

    def to_json(self) -> dict[str, str]:
        return {"platform": self.platform, "entry": str(self.entry), "icon": str(self.icon)}


def data_home() -> Path:
    """$XDG_DATA_HOME, or ~/.local/share: where a user's launchers and icons go."""
    raw = os.environ.get("XDG_DATA_HOME", "")
    return Path(raw) if raw and os.path.isabs(raw) else Path.home() / ".local" / "share"


def _exec_arg(text: str) -> str:
    """Quote one Exec argument as the Desktop Entry Specification asks."""
    if text and all(c.isalnum() or c in "/._-+=:," for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
    escaped = escaped.replace("$", "\\$")
    return f'"{escaped}"'


def _entry_value(text: str) -> str:
    """A value for a desktop entry's string key: one line, escapes as the spec defines."""
    flat = " ".join(text.split())[:_MAX_NAME]
    return flat.replace("\\", "\\\\")


def entry_text(profile: PlatformProfile, *, python: str, icon: Path) -> str:
    command = " ".join(
        _exec_arg(part) for part in (python, "-m", "outreach_station.desktop", "open", profile.id)
    )
    name = _entry_value(profile.name)
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Version=1.4",
            f"Name={name}",
            f"GenericName={APP_NAME}",
            f"Comment=Open {name} in its persona's own browser",
            f"Comment[sv]=Öppna {name} i personans egen webbläsare",
            # '%' starts a field code in Exec: a literal one is doubled.
            f"Exec={command.replace('%', '%%')}",
            f"Icon={icon}",
            "Terminal=false",
            "Categories=Network;",
            "StartupNotify=true",
            f"X-Outreach-Station-Platform={profile.id}",
            "",
        ]
    )


def icon_svg(profile: PlatformProfile) -> str:
    """A rounded square in the platform's colour with its initial: recognisable in a dock."""
    from html import escape

    from outreach_station.appearance import platform_colour

    initial = escape((profile.name.strip() or profile.id)[:1].upper())
    colour = platform_colour(profile.id).hex
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">'
        f'<rect x="2" y="2" width="60" height="60" rx="12" fill="{colour}"/>'
        '<text x="32" y="44" font-family="sans-serif" font-size="34" font-weight="bold" '
        f'text-anchor="middle" fill="#ffffff">{initial}</text></svg>\n'
    )


def _write(path: Path, text: str, mode: int) -> None:
    fsutil.ensure_private_dir(path.parent, ours=False)
    try:
        tmp = fsutil.write_temp(path, text.encode("utf-8"), mode=mode)
        fsutil.replace_with(tmp, path)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot write {path}: {reason}").format(path=path, reason=exc.strerror)
        ) from None


def install(
    profiles: Iterable[PlatformProfile], *, where: Path | None = None, python: str | None = None
) -> tuple[Launcher, ...]:
    """Write a launcher and an icon for each platform; launchers of other platforms go."""
    base = where or data_home()
    apps = base / "applications"
    icons = base / "icons" / "hicolor" / "scalable" / "apps"
    interpreter = python or sys.executable
    made: list[Launcher] = []
    for profile in profiles:
        icon = icons / f"{PREFIX}{profile.id}.svg"
        entry = apps / f"{PREFIX}{profile.id}.desktop"
        _write(icon, icon_svg(profile), 0o644)
        # Desktops run only entries they trust; the owner's executable bit is that mark.
        _write(entry, entry_text(profile, python=interpreter, icon=icon), 0o755)
        made.append(Launcher(platform=profile.id, entry=entry, icon=icon))
    keep = {launcher.entry.name for launcher in made}
    for stale in _ours(apps):
        if stale.name not in keep:
            remove_launcher(stale, icons)
    return tuple(made)


def _ours(apps: Path) -> list[Path]:
    return sorted(apps.glob(f"{PREFIX}*.desktop")) if apps.is_dir() else []


def remove_launcher(entry: Path, icons: Path) -> None:
    entry.unlink(missing_ok=True)
    (icons / (entry.stem + ".svg")).unlink(missing_ok=True)


def uninstall(*, where: Path | None = None) -> tuple[str, ...]:
    """Remove every launcher station wrote; returns the platforms they were for."""
    base = where or data_home()
    apps = base / "applications"
    icons = base / "icons" / "hicolor" / "scalable" / "apps"
    gone = []
    for entry in _ours(apps):
        gone.append(entry.stem.removeprefix(PREFIX))
        remove_launcher(entry, icons)
    return tuple(gone)


# --- the launcher's side --------------------------------------------------------------


def notify(summary: str, body: str) -> bool:
    """Show a desktop notification; False when the desktop has no notification service."""
    if shutil.which("notify-send"):
        done = subprocess.run(
            ["notify-send", "--app-name", APP_NAME, "--urgency", "critical", summary, body],
            check=False,
            capture_output=True,
            timeout=10,
        )
        return done.returncode == 0
    if shutil.which("gdbus"):
        call = [
            *("gdbus", "call", "--session", "--dest", "org.freedesktop.Notifications"),
            *("--object-path", "/org/freedesktop/Notifications"),
            *("--method", "org.freedesktop.Notifications.Notify"),
            *(APP_NAME, "0", "", summary, body, "[]", "{'urgency': <byte 2>}", "-1"),
        ]
        done = subprocess.run(
            call,
            check=False,
            capture_output=True,
            timeout=10,
        )
        return done.returncode == 0
    return False


def error_line(stderr: str) -> str:
    """The one line station printed for its error, without the 'station: error:' prefix."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("station: error: "):
            return line.removeprefix("station: error: ")
    return _("station stopped unexpectedly; open a terminal and run the same station command")


def run_launcher(platform_id: str) -> int:
    """What a launcher runs: `station open PLATFORM`, with a failure shown as a notification."""
    from outreach_station.ids import validate_platform_id

    try:
        validate_platform_id(platform_id)
    except UsageError as exc:
        notify(_("Outreach station"), exc.message)
        return 2
    done = subprocess.run(
        [sys.executable, "-m", "outreach_station", "open", platform_id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        notify(_("Could not open {platform}").format(platform=platform_id), error_line(done.stderr))
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "open":
        print("usage: python -m outreach_station.desktop open PLATFORM", file=sys.stderr)
        return 2
    return run_launcher(args[1])


if __name__ == "__main__":
    raise SystemExit(main())
