"""What a person reads, in English or in Swedish, as the locale says.

English is the source text and the fallback. The Swedish catalogue is a
gettext catalogue, `locale/sv/LC_MESSAGES/outreach_station.po`, shipped in
the package and read directly (no compile step, nothing binary in the
repository): only a Swedish locale reads it, so English costs nothing at
start-up.

Messages use named `str.format` fields, and the translation keeps the same
fields: `_("closed ({who})").format(who=...)`. `N_` marks text that is
translated later, where it is used (module constants, tables).

The language is chosen as gettext chooses it: the first of `LANGUAGE` (a
colon-separated list), `LC_ALL`, `LC_MESSAGES` and `LANG` that is set; a
Swedish value (`sv`, `sv_SE.UTF-8`, `sv_FI`) gives Swedish, anything else
English. tests/test_i18n.py holds every message in the package to having a
Swedish translation with the same fields.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

DOMAIN = "outreach_station"
LOCALE_DIR = Path(__file__).parent / "locale"
TRANSLATED = ("sv",)
_LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def _language_of(value: str) -> str:
    # "sv_SE.UTF-8@euro" -> "sv"
    for mark in ("_", ".", "@", "-"):
        value = value.split(mark, 1)[0]
    return value.lower()


def language(environ: dict[str, str] | None = None) -> str:
    """ "sv" when the locale asks for Swedish, else "en"."""
    env = os.environ if environ is None else environ
    setting = ""
    for name in _LOCALE_VARIABLES:
        if env.get(name):
            setting = env[name]
            break
    # gettext ignores LANGUAGE when the locale is C or POSIX (English by definition).
    if env.get("LANGUAGE") and _language_of(setting) not in ("c", "posix"):
        for entry in env["LANGUAGE"].split(":"):
            code = _language_of(entry)
            if code in TRANSLATED or code == "en":
                return code
    code = _language_of(setting)
    return code if code in TRANSLATED else "en"


def catalogue_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


class Catalogue:
    """A parsed .po catalogue: singular messages and plural forms."""

    def __init__(
        self, messages: dict[str, str], plurals: dict[tuple[str, str], tuple[str, ...]]
    ) -> None:
        self.messages = messages
        self.plurals = plurals

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self.plurals.get((singular, plural))
        if not forms or not all(forms):
            return singular if n == 1 else plural
        # Swedish and English share one rule: "nplurals=2; plural=(n != 1);".
        return forms[0] if n == 1 else forms[min(1, len(forms) - 1)]


def _unquote(text: str) -> str:
    body = text.strip()
    if len(body) < 2 or body[0] != '"' or body[-1] != '"':
        raise ValueError(f"not a quoted string: {body[:40]!r}")
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    out: list[str] = []
    chars = iter(body[1:-1])
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in escapes:
                raise ValueError(f"unknown escape \\{nxt}")
            out.append(escapes[nxt])
        else:
            out.append(ch)
    return "".join(out)


def _entries(text: str) -> list[tuple[dict[str, str], bool]]:
    """The entries of a .po text: their keywords with whole strings, and whether fuzzy."""
    entries: list[tuple[dict[str, str], bool]] = []
    fields: dict[str, str] = {}
    fuzzy = False
    key = ""
    for number, raw in enumerate([*text.splitlines(), ""], 1):
        line = raw.strip()
        starts_entry = not line or (line.startswith("#") and "msgid" in fields)
        if starts_entry or (line.startswith("msgid ") and "msgid" in fields):
            if fields:
                entries.append((fields, fuzzy))
            fields, fuzzy, key = {}, False, ""
        if not line:
            continue
        try:
            if line.startswith("#"):
                fuzzy = fuzzy or (line.startswith("#,") and "fuzzy" in line)
            elif line.startswith('"'):
                if not key:
                    raise ValueError("a string outside an entry")
                fields[key] += _unquote(line)
            else:
                key, _space, rest = line.partition(" ")
                fields[key] = _unquote(rest)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return entries


def parse_po(text: str) -> Catalogue:
    """Parse a gettext .po catalogue; fuzzy entries are left out, as gettext does."""
    messages: dict[str, str] = {}
    plurals: dict[tuple[str, str], tuple[str, ...]] = {}
    for entry, is_fuzzy in _entries(text):
        msgid = entry.get("msgid", "")
        if is_fuzzy or not msgid:
            continue  # the header (msgid "") and unfinished translations
        if "msgid_plural" in entry:
            forms = tuple(entry.get(f"msgstr[{i}]", "") for i in range(2))
            plurals[(msgid, entry["msgid_plural"])] = forms
        else:
            messages[msgid] = entry.get("msgstr", "")
    return Catalogue(messages, plurals)


@cache
def _catalogue(code: str) -> Catalogue | None:
    if code == "en":
        return None
    try:
        return parse_po(catalogue_path(code).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # English rather than no message at all


def _active() -> Catalogue | None:
    return _catalogue(language())


def _(message: str) -> str:
    """`message` in the reader's language."""
    catalogue = _active()
    return message if catalogue is None else catalogue.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """`singular` or `plural` for `n`, in the reader's language."""
    catalogue = _active()
    if catalogue is None:
        return singular if n == 1 else plural
    return catalogue.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark `message` for translation where it is used, not here."""
    return message
