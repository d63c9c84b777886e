"""Every message a person reads exists in Swedish, with the same fields.

The source scan (tests/i18n_scan.py) finds each message in the package;
the catalogue must translate every one of them, keep its `{fields}`, and
hold no message twice or none that the code no longer has.
"""

from __future__ import annotations

import string

import pytest

from outreach_station import i18n
from tests.i18n_scan import Finding, scan

Scan = tuple[set[str], set[tuple[str, str]], list[Finding]]

CATALOGUE = i18n.catalogue_path("sv")


def _fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


@pytest.fixture(scope="module")
def source() -> Scan:
    return scan()


@pytest.fixture(scope="module")
def catalogue() -> i18n.Catalogue:
    return i18n.parse_po(CATALOGUE.read_text(encoding="utf-8"))


def test_no_message_reaches_a_person_untranslated(source: Scan) -> None:
    _messages, _plurals, findings = source
    assert [f"{f.path}:{f.line}: {f.text}" for f in findings] == []


def test_every_message_has_a_swedish_translation_with_the_same_fields(
    source: Scan, catalogue: i18n.Catalogue
) -> None:
    messages, plurals, _findings = source
    missing = sorted(m for m in messages if not catalogue.messages.get(m))
    assert missing == []
    missing_plurals = sorted(p for p in plurals if not all(catalogue.plurals.get(p, ("",))))
    assert missing_plurals == []
    for message in messages:
        assert _fields(catalogue.messages[message]) == _fields(message), message
    for (singular, plural), forms in catalogue.plurals.items():
        for form in forms:
            assert _fields(form) <= _fields(singular) | _fields(plural) | {"n"}, singular


def test_the_catalogue_holds_no_message_twice_and_none_the_code_lost(source: Scan) -> None:
    messages, plurals, _findings = source
    ids: list[str] = []
    text = CATALOGUE.read_text(encoding="utf-8")
    # The whole msgid of every entry, continuation lines included.
    entries = i18n.parse_po(text)
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if any(line.startswith("msgid ") for line in lines):
            start = next(i for i, line in enumerate(lines) if line.startswith("msgid "))
            parts = [lines[start][len("msgid ") :]]
            for line in lines[start + 1 :]:
                if not line.startswith('"'):
                    break
                parts.append(line)
            ids.append("".join(i18n._unquote(p) for p in parts))
    duplicates = sorted({m for m in ids if m and ids.count(m) > 1})
    assert duplicates == []
    stale = sorted(set(entries.messages) - messages)
    assert stale == []
    assert set(entries.plurals) - plurals == set()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "sv_SE.UTF-8"}, "sv"),
        ({"LC_ALL": "sv_FI.UTF-8", "LANG": "en_GB.UTF-8"}, "sv"),
        ({"LC_MESSAGES": "sv_SE", "LANG": "en_US.UTF-8"}, "sv"),
        ({"LANGUAGE": "sv:en", "LANG": "en_US.UTF-8"}, "sv"),
        ({"LANGUAGE": "en", "LANG": "sv_SE.UTF-8"}, "en"),
        ({"LANGUAGE": "de:sv", "LANG": "de_DE.UTF-8"}, "sv"),
        ({"LANGUAGE": "sv", "LANG": "C.UTF-8"}, "en"),  # gettext: C means English
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_language_follows_the_locale_as_gettext_does(
    environ: dict[str, str], expected: str
) -> None:
    assert i18n.language(environ) == expected


def test_parse_po_reads_continuations_escapes_plurals_and_skips_fuzzy() -> None:
    catalogue = i18n.parse_po(
        'msgid ""\nmsgstr "Language: sv\\n"\n\n'
        '#: a.py:1\nmsgid "one "\n"line\\n"\nmsgstr "en "\n"rad\\n"\n\n'
        '#, fuzzy\nmsgid "guess"\nmsgstr "gissning"\n\n'
        'msgid "{n} persona"\nmsgid_plural "{n} personas"\n'
        'msgstr[0] "{n} persona"\nmsgstr[1] "{n} personor"\n\n'
        'msgid "say \\"hi\\""\nmsgstr "säg \\"hej\\""\n'
    )
    assert catalogue.gettext("one line\n") == "en rad\n"
    assert catalogue.gettext("guess") == "guess"  # fuzzy: not trusted
    assert catalogue.gettext('say "hi"') == 'säg "hej"'
    assert catalogue.ngettext("{n} persona", "{n} personas", 1) == "{n} persona"
    assert catalogue.ngettext("{n} persona", "{n} personas", 3) == "{n} personor"
    assert catalogue.gettext("not there") == "not there"


def test_a_broken_catalogue_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        i18n.parse_po('msgid "a"\nmsgstr "b\\q"\n')


def test_a_swedish_locale_reads_the_catalogue_and_english_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalogue = i18n.parse_po(CATALOGUE.read_text(encoding="utf-8"))
    message, swedish = next((m, s) for m, s in catalogue.messages.items() if s and s != m)
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "sv_SE.UTF-8")
    assert i18n._(message) == swedish
    assert i18n._("a message the catalogue lacks") == "a message the catalogue lacks"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert i18n._(message) == message
