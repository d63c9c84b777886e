"""The clipboard: copy a secret, check it arrived, and clear it later if unchanged.

A secret revealed to the clipboard (`station persona kit --reveal`) must not
stay there: a detached clearer empties the clipboard after a delay, but only
if it still holds that secret, so something the person copied since is left
alone. The clearer learns the secret only as a keyed digest, on stdin.

Run as ``python -m outreach_station.clipboard clear-clipboard`` this module is
that detached clearer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from outreach_station import paths
from outreach_station.errors import EnvironmentProblem, StationError
from outreach_station.i18n import _


@dataclass(frozen=True)
class ClipboardTool:
    """A command-line clipboard program and how to copy, read and clear with it."""

    name: str
    copy: tuple[str, ...]
    paste: tuple[str, ...]
    clear: tuple[str, ...]
    # Whether `clear` reads its (empty) new content from stdin.
    clear_reads_stdin: bool = False


@dataclass(frozen=True)
class ClipboardCopy:
    """What a clipboard reveal did: which tool, and when the clearer acts."""

    tool: str
    clear_after: float
    clearer_pid: int


def find_clipboard(env: Mapping[str, str] | None = None) -> ClipboardTool | None:
    """The clipboard program for this session, Wayland first, or None."""
    env = os.environ if env is None else env
    if env.get("WAYLAND_DISPLAY") and (wl_copy := shutil.which("wl-copy")):
        wl_paste = shutil.which("wl-paste")
        if wl_paste:
            return ClipboardTool(
                name="wl-copy",
                copy=(wl_copy,),
                paste=(wl_paste, "--no-newline"),
                clear=(wl_copy, "--clear"),
            )
    if env.get("DISPLAY"):
        if xclip := shutil.which("xclip"):
            return ClipboardTool(
                name="xclip",
                copy=(xclip, "-selection", "clipboard", "-in"),
                paste=(xclip, "-selection", "clipboard", "-out"),
                clear=(xclip, "-selection", "clipboard", "-in"),
                clear_reads_stdin=True,
            )
        if xsel := shutil.which("xsel"):
            return ClipboardTool(
                name="xsel",
                copy=(xsel, "--clipboard", "--input"),
                paste=(xsel, "--clipboard", "--output"),
                clear=(xsel, "--clipboard", "--clear"),
            )
    return None


def keyed_digest(salt: bytes, data: bytes) -> str:
    # Keyed, so the value handed to the clearer says nothing about the secret.
    return hmac.new(salt, data, hashlib.sha256).hexdigest()


def copy_to_clipboard(tool: ClipboardTool, data: bytes) -> None:
    """Put `data` on the clipboard (via stdin, never argv) and check it arrived."""
    try:
        # The tools fork a child that serves the selection; it inherits stdout and
        # stderr, so pipes there would keep run() waiting until the selection is lost.
        done = subprocess.run(
            tool.copy,
            input=data,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(
            _("{name} failed ({error})").format(name=tool.name, error=type(exc).__name__)
        ) from None
    if done.returncode != 0:
        raise EnvironmentProblem(
            _(
                "{name} could not set the clipboard (exit code {returncode}); "
                "is the display reachable? Add --print to print the secret instead"
            ).format(name=tool.name, returncode=done.returncode)
        )
    # The serving child may take a moment to own the selection.
    deadline = time.monotonic() + 2.0
    while read_clipboard(tool) != data:
        if time.monotonic() > deadline:
            _run_clear(tool)
            raise EnvironmentProblem(
                _(
                    "{name} did not keep the secret on the clipboard; add --print to "
                    "print it instead"
                ).format(name=tool.name)
            )
        time.sleep(0.05)


def read_clipboard(tool: ClipboardTool) -> bytes | None:
    """The clipboard's content, or None if it cannot be read (empty, no owner)."""
    try:
        done = subprocess.run(
            tool.paste, capture_output=True, timeout=5, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _run_clear(tool: ClipboardTool) -> None:
    # Best effort: a clipboard that cannot be cleared cannot be helped from here.
    with suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            tool.clear,
            input=b"" if tool.clear_reads_stdin else None,
            stdin=None if tool.clear_reads_stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def clear_if_unchanged(tool: ClipboardTool, salt: bytes, digest: str) -> bool:
    """Clear the clipboard if it still holds the secret whose keyed digest is `digest`.

    Something the person copied since is left alone.
    """
    current = read_clipboard(tool)
    if current is None or not hmac.compare_digest(keyed_digest(salt, current), digest):
        return False
    _run_clear(tool)
    return True


def start_clearer(tool: ClipboardTool, salt: bytes, digest: str, after: float) -> int:
    """Start the detached clearer and return its pid.

    Only the tool's name and the delay go into argv; the salt and keyed digest
    travel on stdin. The helper forks once more and returns, so the clearer
    belongs to no one here and outlives this process and its terminal.
    """
    env = dict(os.environ)
    # A source checkout is not on sys.path by default in a fresh interpreter.
    package_root = str(paths.PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    argv = [
        sys.executable,
        "-m",
        "outreach_station.clipboard",
        "clear-clipboard",
        "--tool",
        tool.name,
        "--after",
        f"{after:g}",
    ]
    try:
        helper = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd="/",
        )
        out, _err = helper.communicate(f"{salt.hex()} {digest}\n".encode("ascii"), timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(
            _(
                "could not start the clipboard clearer ({error}); the clipboard was cleared again"
            ).format(error=type(exc).__name__)
        ) from None
    text = out.decode("ascii", "replace").strip()
    if helper.returncode != 0 or not text.isdigit():
        raise EnvironmentProblem(
            _("the clipboard clearer did not start; the clipboard was cleared again")
        )
    return int(text)


def _tool_by_name(name: str) -> ClipboardTool:
    tool = find_clipboard()
    if tool is None or tool.name != name:
        raise EnvironmentProblem(_("clipboard tool {name} is not available").format(name=name))
    return tool


def _clearer_main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m outreach_station.clipboard")
    sub = parser.add_subparsers(dest="command", required=True)
    clear = sub.add_parser("clear-clipboard", help="clear the clipboard later if unchanged")
    clear.add_argument("--tool", required=True, choices=("wl-copy", "xclip", "xsel"))
    clear.add_argument("--after", required=True, type=float)
    args = parser.parse_args(argv)
    salt_hex, _sep, digest = sys.stdin.readline().strip().partition(" ")
    salt = bytes.fromhex(salt_hex)
    tool = _tool_by_name(args.tool)
    sys.stdin.close()
    child = os.fork()
    if child:
        # The parent's one line tells the starter who will do the clearing.
        sys.stdout.write(f"{child}\n")
        sys.stdout.flush()
        return 0
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    time.sleep(max(0.0, args.after))
    try:
        clear_if_unchanged(tool, salt, digest)
    finally:
        # The forked copy must not run the parent's exit handlers a second time.
        os._exit(0)


def copy_and_clear_later(tool: ClipboardTool, data: bytes, after: float) -> ClipboardCopy:
    """Put `data` on the clipboard and start the clearer; cleared at once if that fails."""
    copy_to_clipboard(tool, data)
    salt = secrets.token_bytes(32)
    try:
        pid = start_clearer(tool, salt, keyed_digest(salt, data), after)
    except StationError:
        _run_clear(tool)
        raise
    return ClipboardCopy(tool=tool.name, clear_after=after, clearer_pid=pid)


if __name__ == "__main__":
    try:
        sys.exit(_clearer_main(sys.argv[1:]))
    except (StationError, ValueError) as exc:
        sys.stderr.write(f"clipboard clearer: {exc}\n")
        sys.exit(1)
