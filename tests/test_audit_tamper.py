"""Every way of tampering with the audit log that we know of is caught by `station audit verify`.

The log is seeded through the core API (as station writes it), then changed
the way a staff member with write access to their own files could change it.
Several of these leave a valid shorter or rewritten chain, which only the
keyed anchor of the chain's head can expose.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api
from outreach_station.audit import GENESIS, AuditLog, record_hash
from outreach_station.errors import ExitCode, IntegrityError

SEEDED = 8


def _seed() -> Path:
    for number in range(SEEDED):
        api.audit("persona.opened", None, shift=number)
    return api.audit_log().path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, records: list[dict[str, Any]], *, rehash: bool = False) -> None:
    """Write records back in canonical form; with `rehash`, renumber and re-chain them all."""
    if rehash:
        prev = GENESIS
        for seq, record in enumerate(records, start=1):
            record["seq"], record["prev"] = seq, prev
            record["hash"] = record_hash(record)
            prev = record["hash"]
    lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records]
    path.write_text("".join(line + "\n" for line in lines))


def _edit_field(path: Path) -> None:
    records = _records(path)
    records[3]["detail"] = {"shift": 99}
    _write(path, records)


def _edit_and_rehash_one(path: Path) -> None:
    records = _records(path)
    records[3]["detail"] = {"shift": 99}
    records[3]["hash"] = record_hash(records[3])
    _write(path, records)


def _delete_middle(path: Path) -> None:
    records = _records(path)
    del records[4]
    _write(path, records)


def _insert(path: Path) -> None:
    records = _records(path)
    forged = dict(records[2], detail={"shift": 42})
    forged["hash"] = record_hash(forged)
    records.insert(3, forged)
    _write(path, records)


def _reorder(path: Path) -> None:
    records = _records(path)
    records[2], records[3] = records[3], records[2]
    _write(path, records)


def _duplicate(path: Path) -> None:
    records = _records(path)
    records.insert(5, dict(records[4]))
    _write(path, records)


def _cut_tail(count: int) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        _write(path, _records(path)[:-count])

    return cut


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _rewrite_to_end(path: Path) -> None:
    records = _records(path)
    records[3]["detail"] = {"shift": 99}
    _write(path, records, rehash=True)


def _renumber_rehash(path: Path) -> None:
    records = _records(path)
    del records[2]
    _write(path, records, rehash=True)


def _rewrite_last(path: Path) -> None:
    records = _records(path)
    records[-1]["detail"] = {"shift": 99}
    _write(path, records, rehash=True)


def _damaged_last_line(path: Path) -> None:
    with path.open("ab") as file:
        file.write(b'{"seq":9,"garbage"\n')


def _cut_mid_line(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-20])


def _fresh_chain(path: Path) -> None:
    # A whole new log of the same length, as if the day had gone differently.
    records = _records(path)
    for record in records:
        record["event"] = "persona.closed"
    _write(path, records, rehash=True)


def _other_station(path: Path) -> None:
    other = AuditLog(path.parent / "other-station.jsonl")
    for number in range(SEEDED):
        other.append("persona.opened", detail={"shift": number})
    shutil.move(other.path, path)


TAMPERINGS: dict[str, Callable[[Path], None]] = {
    "edit-field": _edit_field,
    "edit-and-rehash-one": _edit_and_rehash_one,
    "delete-middle": _delete_middle,
    "insert": _insert,
    "reorder": _reorder,
    "duplicate": _duplicate,
    "truncate-tail-1": _cut_tail(1),
    "truncate-tail-2": _cut_tail(2),
    "truncate-tail-5": _cut_tail(5),
    "empty": _empty,
    "delete-file": _delete,
    "rewrite-to-end": _rewrite_to_end,
    "renumber-and-rehash": _renumber_rehash,
    "rewrite-last-record": _rewrite_last,
    "damaged-last-line": _damaged_last_line,
    "cut-mid-line": _cut_mid_line,
    "fresh-chain-same-length": _fresh_chain,
    "other-stations-log": _other_station,
}


def test_untampered_log_verifies(runner: Any) -> None:
    path = _seed()
    result = runner.invoke(["audit", "verify"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"Audit log intact: {SEEDED} records in {path}"


@pytest.mark.parametrize("tamper", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampering_is_detected(tamper: str, runner: Any) -> None:
    path = _seed()
    TAMPERINGS[tamper](path)
    result = runner.invoke(["audit", "verify"])
    assert result.exit_code == ExitCode.INTEGRITY, (tamper, result.stdout)
    message = result.stderr.strip()
    assert message.startswith(f"station: error: audit log {path}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        ("truncate-tail-1", "1 record missing from the end"),
        ("truncate-tail-5", "5 records missing from the end"),
        ("empty", f"{SEEDED} records missing from the end"),
        ("delete-file", f"{SEEDED} records missing from the end"),
        ("rewrite-to-end", "record 4 does not match the anchor"),
        ("renumber-and-rehash", "record 3 does not match the anchor"),
        ("other-stations-log", "record 1 does not match the anchor"),
    ],
)
def test_verify_names_what_is_wrong(tamper: str, says: str, runner: Any) -> None:
    path = _seed()
    TAMPERINGS[tamper](path)
    result = runner.invoke(["audit", "verify"])
    assert says in result.stderr, result.stderr


def test_doctor_does_not_call_a_deleted_log_ok() -> None:
    from outreach_station.doctor import check_audit

    path = _seed()
    path.unlink()
    finding = check_audit(path)
    assert finding.verdict == "fail", finding
    assert f"{SEEDED} records missing from the end" in finding.detail


@pytest.mark.parametrize("tamper", ["truncate-tail-2", "delete-file", "damaged-last-line"])
def test_restart_sets_a_damaged_log_aside_and_records_it(tamper: str, runner: Any) -> None:
    path = _seed()
    TAMPERINGS[tamper](path)
    damaged = path.read_bytes() if path.exists() else None
    assert runner.invoke(["persona", "new", "demo"]).exit_code == ExitCode.INTEGRITY

    result = runner.invoke(["audit", "restart"])

    assert result.exit_code == 0, result.stderr
    kept = sorted(path.parent.glob("audit.jsonl.broken-*"))
    if damaged is None:
        assert kept == []
        assert result.stdout.startswith("Damaged audit log was missing; a new log starts")
    else:
        assert [k.read_bytes() for k in kept] == [damaged]  # evidence kept as it was
        assert result.stdout.startswith(f"Damaged audit log kept as {kept[0]}; a new log starts")
    (first,) = _records(path)
    assert first["event"] == "audit.restarted"
    assert first["seq"] == 1
    assert runner.invoke(["audit", "verify"]).exit_code == 0
    assert runner.invoke(["persona", "new", "demo"]).exit_code == 0
    assert runner.invoke(["audit", "verify"]).exit_code == 0


def test_restart_refuses_an_intact_log(runner: Any) -> None:
    path = _seed()
    before = path.read_bytes()
    result = runner.invoke(["audit", "restart"])
    assert result.exit_code == ExitCode.STATE
    assert result.stderr.strip() == (
        f"station: error: audit log {path} is intact; there is nothing to restart"
    )
    assert path.read_bytes() == before
    assert list(path.parent.glob("audit.jsonl.broken-*")) == []


def test_an_edited_anchor_is_refused() -> None:
    import sqlite3

    from outreach_station import paths

    path = _seed()
    _cut_tail(2)(path)
    with sqlite3.connect(paths.current().audit_anchor) as conn:
        # Someone who also edits the anchor's file to match the cut log: the MAC gives it away.
        conn.execute("UPDATE anchors SET count = count - 2")
        conn.execute("DELETE FROM hashes WHERE seq > ?", (SEEDED - 2,))
    log = api.audit_log()
    with pytest.raises(IntegrityError, match="fails its MAC check"):
        log.verify()
    with sqlite3.connect(paths.current().audit_anchor) as conn:
        conn.execute("DELETE FROM anchors")
    with pytest.raises(IntegrityError, match="is missing although the OS keyring holds its key"):
        log.verify()
