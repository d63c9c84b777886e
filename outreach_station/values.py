"""Values from people and from disk: checked on the way in, escaped on the way out.

A label or reason is typed by a person and later printed to other people's
terminals; a settings file is named by a person or found in a config
directory. Both are bounded here, in one place, so that no value can carry
terminal escape codes, hide its text behind direction overrides, fill the
disk, or make station read from a device or a pipe for ever.

Stored text is also escaped whenever it is printed (`printable`), because
the registry and the audit log are plain files that can be edited by hand.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Final

from outreach_station.errors import ConfigError, UsageError
from outreach_station.i18n import _

MAX_LABEL_LENGTH: Final = 64
MAX_REASON_LENGTH: Final = 500
MAX_URL_LENGTH: Final = 2048
# Policy files, profiles and the user config are a few kB; a MiB is generous.
MAX_SETTINGS_FILE_BYTES: Final = 1 << 20

# Cc: C0/C1 controls (escape codes, newlines); Zl/Zp: line and paragraph
# separators, which some terminals treat as newlines.
_CONTROL_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp"})
# Cf: format characters, among them the bidi overrides (U+202E) that make a
# text read differently from what it holds, and zero-width characters; Co,
# Cs, Cn: private use, lone surrogates and unassigned code points.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Co", "Cs", "Cn"})
_UNSAFE_CATEGORIES: Final = _CONTROL_CATEGORIES | _INVISIBLE_CATEGORIES


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def text_problem(text: str) -> str | None:
    """Why `text` is not plain printable text, or None if it is."""
    for char in text:
        category = unicodedata.category(char)
        if category in _CONTROL_CATEGORIES:
            return _("contains control characters")
        if category in _INVISIBLE_CATEGORIES:
            return _("contains invisible or direction-changing characters")
    return None


def validate_label(label: str, *, what: str = "--label") -> str:
    """A persona label: a short note for staff, printable characters only."""
    problem = text_problem(label)
    if problem is None and len(label) > MAX_LABEL_LENGTH:
        problem = _("longer than {limit} characters").format(limit=MAX_LABEL_LENGTH)
    if problem is not None:
        raise UsageError(
            _("{what} {problem}; use at most {limit} printable characters").format(
                what=what, problem=problem, limit=MAX_LABEL_LENGTH
            )
        )
    return label


def validate_reason(reason: str, *, what: str = "--reason") -> str:
    """The reason recorded for a lifecycle change: one printable line."""
    problem = text_problem(reason)
    if problem is None and len(reason) > MAX_REASON_LENGTH:
        problem = _("longer than {limit} characters").format(limit=MAX_REASON_LENGTH)
    if problem is not None:
        raise UsageError(
            _(
                "{what} {problem}; describe it in one line of at most {limit} printable characters"
            ).format(what=what, problem=problem, limit=MAX_REASON_LENGTH)
        )
    return reason


def url_is_plain(url: str) -> bool:
    """A URL of bounded length with no spaces, controls or invisible characters."""
    return len(url) <= MAX_URL_LENGTH and not any(c.isspace() or _unsafe(c) for c in url)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    """`value` as text with every control and invisible character escaped (\\x1b, \\u202e)."""
    text = str(value)
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def printable_lines(value: object) -> str:
    """Like `printable`, but line breaks stay: for messages of one line per problem."""
    return "\n".join(printable(line) for line in str(value).split("\n"))


_JSON_UNSAFE: Final = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in range(0x7F, 0xA0)) + "\u2028\u2029\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)


def json_safe(text: str) -> str:
    """JSON text (from json.dumps) with the characters a terminal acts on escaped.

    json.dumps escapes C0 controls itself; DEL, C1 controls and format
    characters such as bidi overrides it leaves as they are when
    ensure_ascii is off. Escaped as \\uXXXX they mean the same to a parser.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def read_settings_file(path: Path, *, limit: int = MAX_SETTINGS_FILE_BYTES) -> bytes | None:
    """The bytes of a small regular file, or None if there is none.

    Refuses (ConfigError, naming the file) a device, pipe, socket or
    directory, and anything over `limit`: such a path would make station
    read for ever, wait for a writer, or fill memory. The file is opened
    non-blocking so that even a named pipe cannot stall the open itself.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(
            _("{path}: cannot read: {reason}").format(path=path, reason=exc.strerror or exc)
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                _("{path}: not a regular file; give the path of a TOML file").format(path=path)
            )
        too_big = ConfigError(
            _("{path}: larger than {size} MiB, too large for a station settings file").format(
                path=path, size=limit // (1 << 20) or 1
            )
        )
        if info.st_size > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        # Read to at most one byte past the limit: a file that grows meanwhile is still bounded.
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise too_big
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(
            _("{path}: cannot read: {reason}").format(path=path, reason=exc.strerror or exc)
        ) from None
    finally:
        os.close(fd)
