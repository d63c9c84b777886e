from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outreach_station.audit import (
    GENESIS,
    AuditLog,
    EventName,
    default_path,
    parse_since,
    record_hash,
)
from outreach_station.errors import IntegrityError, SecurityError, UsageError
from outreach_station.paths import StationPaths
from tests.fixtures import Clock

START = datetime(2026, 11, 3, 9, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FIELDS = ["seq", "time", "user", "host", "event", "persona", "platform", "detail", "prev", "hash"]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATION_HOME", str(tmp_path / "home"))


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "audit.jsonl"


def independent_hash(record: dict[str, Any]) -> str:
    """The hash as the module docstring tells IT to compute it, written out again here."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_five(path: Path) -> list[str]:
    log = AuditLog(path, clock=Clock(START, MINUTE))
    log.append(EventName.VAULT_INITIALISED)
    log.append("persona.created", persona="p-1", platform="instagram", detail={"reason": "new"})
    log.append("persona.opened", persona="p-1", platform="instagram")
    log.append("persona.closed", persona="p-1", platform="instagram", detail={"seconds": 90})
    log.append("persona.retired", persona="p-1", platform="instagram")
    return path.read_text("utf-8").splitlines(keepends=True)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), "utf-8")


# --- round trip ------------------------------------------------------------


def test_append_then_read_and_verify_round_trip(log_path: Path) -> None:
    log = AuditLog(log_path, clock=Clock(START, MINUTE))
    first = log.append(
        EventName.PERSONA_CREATED,
        persona="p-1",
        platform="instagram",
        detail={"reason": "new", "count": 3, "headed": True},
    )
    second = log.append("kit.secret_revealed", persona="p-1", detail={"field": "password"})
    third = log.append("policy.loosening_ignored")

    assert log.records() == [first, second, third]
    assert [r.seq for r in (first, second, third)] == [1, 2, 3]
    assert first.prev == GENESIS
    assert second.prev == first.hash
    assert third.prev == second.hash
    assert first.time == START
    assert second.time == START + timedelta(minutes=1)

    lines = log_path.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == ""  # every record ends with a newline
    records = [json.loads(line) for line in lines[:-1]]
    assert [list(r) for r in records] == [FIELDS] * 3
    assert records[0]["time"] == "2026-11-03T09:00:00.000000Z"
    assert records[0]["event"] == "persona.created"
    assert records[0]["detail"] == {"count": 3, "headed": True, "reason": "new"}
    assert records[2]["persona"] is None and records[2]["platform"] is None
    assert records[0]["user"] and records[0]["host"]
    for record in records:
        assert record["hash"] == independent_hash(record) == record_hash(record)

    result = log.verify()
    assert (result.ok, result.count, result.first_bad_line, result.reason) == (True, 3, None, None)
    assert result.last_hash == third.hash


def test_events_are_frozen_values(log_path: Path) -> None:
    event = AuditLog(log_path).append("persona.opened", persona="p-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.detail["x"] = 1  # type: ignore[index]
    assert hash(event) == hash(AuditLog(log_path).records()[0])


def test_file_is_0600_and_new_dirs_are_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "audit.jsonl"
    old_umask = os.umask(0o022)
    try:
        AuditLog(path).append("vault.initialised")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_default_path_is_in_the_station_logs_dir(tmp_path: Path) -> None:
    assert default_path() == StationPaths(home=tmp_path / "home").logs / "audit.jsonl"
    assert default_path(StationPaths(home=tmp_path / "x")) == tmp_path / "x/logs/audit.jsonl"


def test_reading_a_missing_log_creates_nothing(log_path: Path) -> None:
    log = AuditLog(log_path)
    assert log.records() == []
    result = log.verify()
    assert (result.ok, result.count, result.first_bad_line) == (True, 0, None)
    assert not log_path.parent.exists()


def test_symlinked_log_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(SecurityError, match="symbolic link"):
        AuditLog(link).append("vault.initialised")
    assert target.read_text() == ""


# --- tampering -------------------------------------------------------------


def test_edited_field_is_detected_at_its_line(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[2] = lines[2].replace('"persona":"p-1"', '"persona":"p-2"')
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line, result.count) == (False, 3, 2)
    assert result.reason is not None and "hash does not match" in result.reason


def test_edited_record_with_recomputed_hash_breaks_the_next_link(log_path: Path) -> None:
    lines = write_five(log_path)
    record = json.loads(lines[2])
    record["persona"] = "p-2"
    record["hash"] = independent_hash(record)
    lines[2] = json.dumps(record, separators=(",", ":")) + "\n"
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line) == (False, 4)
    assert result.reason is not None and "prev does not match the hash of line 3" in result.reason


def test_whitespace_only_edit_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[1] = lines[1].replace('"seq":2,', '"seq": 2,')
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line) == (False, 2)
    assert result.reason is not None and "canonical" in result.reason


def test_deleted_record_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    del lines[2]
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line, result.count) == (False, 3, 2)
    assert result.reason is not None
    assert "prev does not match" in result.reason and "seq is 4, expected 3" in result.reason


def test_deleted_first_record_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    write_lines(log_path, lines[1:])
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line, result.count) == (False, 1, 0)
    assert result.reason is not None and "genesis" in result.reason


def test_inserted_forged_record_with_valid_hash_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    before = json.loads(lines[1])
    forged: dict[str, Any] = {
        "seq": 3,
        "time": "2026-11-03T09:01:30.000000Z",
        "user": before["user"],
        "host": before["host"],
        "event": "persona.shredded",
        "persona": "p-1",
        "platform": "instagram",
        "detail": {},
        "prev": before["hash"],
    }
    forged["hash"] = independent_hash(forged)
    lines.insert(2, json.dumps(forged, separators=(",", ":")) + "\n")
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    # The forgery itself chains correctly onto line 2; the record after it cannot.
    assert (result.ok, result.first_bad_line, result.count) == (False, 4, 3)
    assert result.reason is not None and "prev does not match the hash of line 3" in result.reason


def test_swapped_records_are_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line, result.count) == (False, 2, 1)
    assert result.reason is not None and "seq is 3, expected 2" in result.reason


def test_last_line_cut_midway_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[4] = lines[4][: len(lines[4]) // 2]
    write_lines(log_path, lines)
    log = AuditLog(log_path)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.count) == (False, 5, 4)
    assert result.reason is not None and "incomplete" in result.reason
    assert [r.seq for r in log.records()] == [1, 2, 3, 4]


def test_last_line_without_newline_only_is_detected(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[4] = lines[4].rstrip("\n")
    write_lines(log_path, lines)
    result = AuditLog(log_path).verify()
    assert (result.ok, result.first_bad_line) == (False, 5)


def test_clean_tail_cut_needs_an_anchor(log_path: Path) -> None:
    lines = write_five(log_path)
    last = json.loads(lines[4])
    anchor = (last["seq"], last["hash"])
    log = AuditLog(log_path)
    assert log.verify(anchor=anchor).ok

    write_lines(log_path, lines[:4])
    # The documented limit: a shorter chain is a valid chain...
    assert log.verify().ok
    # ...but not one that contains the anchored record.
    result = log.verify(anchor=anchor)
    assert (result.ok, result.first_bad_line, result.count) == (False, 5, 4)
    assert result.reason is not None and "missing" in result.reason


def test_anchor_detects_a_full_rewrite(log_path: Path) -> None:
    lines = write_five(log_path)
    anchor = (3, json.loads(lines[2])["hash"])
    prev = GENESIS
    rewritten = []
    for line in lines:  # rewrite every hash from the start: the chain is valid again
        record = json.loads(line)
        record["user"] = "someone-else"
        record["prev"] = prev
        record["hash"] = prev = independent_hash(record)
        rewritten.append(json.dumps(record, separators=(",", ":")) + "\n")
    write_lines(log_path, rewritten)
    log = AuditLog(log_path)
    assert log.verify().ok
    result = log.verify(anchor=anchor)
    assert (result.ok, result.first_bad_line) == (False, 3)
    assert result.reason is not None and "does not match the anchor" in result.reason


def test_append_after_a_crash_keeps_the_fragment_and_continues_the_chain(log_path: Path) -> None:
    lines = write_five(log_path)
    fragment = lines[4][:40]
    write_lines(log_path, [*lines[:4], fragment])
    log = AuditLog(log_path, clock=Clock(START + timedelta(hours=1), MINUTE))
    new = log.append("persona.recovered", persona="p-1")

    assert new.seq == 5
    assert new.prev == json.loads(lines[3])["hash"]
    text = log_path.read_text("utf-8")
    assert text.startswith("".join(lines[:4]) + fragment + "\n")  # evidence kept, not rewritten
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 5)
    assert [r.seq for r in log.records()] == [1, 2, 3, 4, 5]
    assert log.records()[-1] == new


def test_append_refuses_to_chain_onto_an_altered_last_record(log_path: Path) -> None:
    lines = write_five(log_path)
    lines[4] = lines[4].replace("persona.retired", "persona.blocked")
    write_lines(log_path, lines)
    before = log_path.read_bytes()
    with pytest.raises(IntegrityError, match="damaged at line 5"):
        AuditLog(log_path).append("persona.opened", persona="p-1")
    assert log_path.read_bytes() == before


# --- concurrency -----------------------------------------------------------


def _append_many(path: str, worker: int, count: int, start: Any) -> None:
    start.wait()
    log = AuditLog(Path(path))
    for i in range(count):
        log.append("persona.opened", persona=f"p-{worker}", detail={"worker": worker, "i": i})


def test_concurrent_appends_from_four_processes_make_one_chain(log_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [
        ctx.Process(target=_append_many, args=(str(log_path), w, 50, start)) for w in range(4)
    ]
    for process in workers:
        process.start()
    time.sleep(0.5)  # let every child import and reach the start line
    start.set()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0

    log = AuditLog(log_path)
    result = log.verify()
    assert (result.ok, result.count, result.reason) == (True, 200, None)
    records = log.records()
    assert [r.seq for r in records] == list(range(1, 201))
    assert len({r.hash for r in records}) == 200
    for worker in range(4):
        mine = [r.detail["i"] for r in records if r.detail["worker"] == worker]
        assert mine == list(range(50))  # each process's own order is kept
    assert len(log_path.read_bytes().split(b"\n")) == 201


# --- what the API refuses --------------------------------------------------


@pytest.mark.parametrize(
    "detail",
    [
        {"url": "x"},
        {"page_url": "x"},
        {"visited_urls": "x"},
        {"password": "hunter2"},
        {"new_password": "hunter2"},
        {"passphrase": "hunter2"},
        {"secret": "hunter2"},
        {"session_token": "hunter2"},
        {"cookies": "hunter2"},
        {"cookie": "hunter2"},
        {"card": "hunter2"},
        {"card_number": "hunter2"},
        {"api_key": "hunter2"},
        {"page_content": "hunter2"},
        {"Reason": "x"},  # not snake_case
        {"": "x"},
    ],
)
def test_forbidden_detail_keys_are_refused_and_nothing_written(
    log_path: Path, detail: dict[str, object]
) -> None:
    with pytest.raises(UsageError) as caught:
        AuditLog(log_path).append("kit.updated", persona="p-1", detail=detail)
    assert "hunter2" not in str(caught.value)
    assert not log_path.exists()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("https://example.org/inbox", "URL"),
        ("see http://127.0.0.1:8000/x", "URL"),
        ("www.example.org", "URL"),
        ("example.com/some/profile", "URL"),
        ("mailto:someone@example.org", "URL"),
        ("4111 1111 1111 1111", "card number"),
        ("4111-1111-1111-1111", "card number"),
        ("card 4111111111111111 exp", "card number"),
        (4111111111111111, "card number"),
        ("x" * 201, "longer than"),
        ("two\nlines", "control"),
        ({"nested": "no"}, "string, integer or boolean"),
        (["a"], "string, integer or boolean"),
        (1.5, "string, integer or boolean"),
        (None, "string, integer or boolean"),
        (2**60, "out of range"),
        ("half a surrogate \ud800", "not valid Unicode"),
    ],
)
def test_forbidden_detail_values_are_refused_without_echoing_them(
    log_path: Path, value: object, why: str
) -> None:
    AuditLog(log_path).append("vault.initialised")
    before = log_path.read_bytes()
    with pytest.raises(UsageError, match=why) as caught:
        AuditLog(log_path).append("policy.violation", detail={"reason": value})
    assert "4111" not in str(caught.value) and "example" not in str(caught.value)
    assert log_path.read_bytes() == before


def test_too_many_detail_keys_are_refused(log_path: Path) -> None:
    with pytest.raises(UsageError, match="more than 12 keys"):
        AuditLog(log_path).append("kit.updated", detail={f"k{i}": i for i in range(13)})
    assert not log_path.exists()


def test_harmless_details_are_accepted(log_path: Path) -> None:
    detail = {
        "reason": "rotated after block",
        "field": "password",  # naming which kit field was revealed is not the secret
        "key_id": "k-3",
        "session_seconds": 5400,
        "size_bytes": 2_500_000,
        "security_level": "high",
        "recovered_from": "/run/user/1000/outreach-station/p-1",
        "ok": False,
    }
    event = AuditLog(log_path).append("persona.rotated", persona="p-1", detail=detail)
    assert dict(event.detail) == detail
    assert AuditLog(log_path).verify().ok


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"event": "persona.hacked"}, "unknown audit event"),
        ({"event": "persona.opened", "persona": "https://x.org/p"}, "persona must be"),
        ({"event": "persona.opened", "platform": "a b"}, "platform must be"),
        ({"event": "persona.opened", "persona": "p" * 65}, "persona must be"),
    ],
)
def test_bad_event_or_ids_are_refused(log_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        AuditLog(log_path).append(**kwargs)
    assert not log_path.exists()


# --- filters ---------------------------------------------------------------


def test_persona_and_since_filters(log_path: Path) -> None:
    log = AuditLog(log_path, clock=Clock(START, timedelta(hours=1)))
    a1 = log.append("persona.created", persona="p-a")  # 09:00
    b1 = log.append("persona.created", persona="p-b")  # 10:00
    a2 = log.append("persona.opened", persona="p-a")  # 11:00
    n = log.append("policy.violation")  # 12:00

    assert log.records(persona="p-a") == [a1, a2]
    assert log.records(persona="p-b") == [b1]
    assert log.records(persona="p-none") == []
    assert log.records(since=START + timedelta(hours=2)) == [a2, n]  # inclusive
    assert log.records(since=START + timedelta(hours=1, seconds=1)) == [a2, n]
    # An aware time in another zone means the same instant.
    cet = datetime(2026, 11, 3, 11, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Stockholm"))
    assert log.records(since=cet) == [n]
    assert log.records(persona="p-a", since=START + timedelta(minutes=1)) == [a2]
    with pytest.raises(UsageError, match="timezone-aware"):
        log.records(since=datetime(2026, 11, 3, 9, 0))  # naive on purpose


def test_records_skip_malformed_lines_but_verify_names_them(log_path: Path) -> None:
    lines = write_five(log_path)
    lines.insert(2, "not json at all\n")
    write_lines(log_path, lines)
    log = AuditLog(log_path)
    assert [r.seq for r in log.records()] == [1, 2, 3, 4, 5]
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.reason) == (False, 3, "not valid JSON")


def test_parse_since(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    try:
        assert parse_since("2026-11-03T09:00Z") == datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
        assert parse_since("2026-11-03T09:00+02:00") == datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
        # Stockholm is UTC+1 in November: local midnight is 23:00 UTC the day before.
        assert parse_since("2026-11-03") == datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
        assert parse_since("2026-11-03T10:15") == datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
        with pytest.raises(UsageError, match="YYYY-MM-DD"):
            parse_since("last tuesday")
        with pytest.raises(UsageError):
            parse_since("2026-13-01")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
