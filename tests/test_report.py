"""The management report, on a constructed history in a real registry and audit log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach_station import api, kit, paths, report
from outreach_station.audit import AuditLog
from outreach_station.errors import EnvironmentProblem, UsageError
from outreach_station.events import EventName
from outreach_station.storage.sqlite import SqliteStore as Registry
from tests.fixtures import Clock

FP = {"version": 1}
NOW = datetime(2026, 4, 30, 12, 0, tzinfo=UTC)


@dataclass
class History:
    registry: Registry
    log: AuditLog
    persona_ids: list[str]


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)


@pytest.fixture
def history(clock: Clock) -> Iterator[History]:
    """Two platforms with known lifetimes.

    alpha: blocked after 2, 10 and 30 days (registry only, no audit events).
    beta: b1 blocked after 5 days (audit) and retired 35 days later; b2
    still active; b3 shredded (only in the audit log), blocked after 89 days.
    """
    clock.now = _at("2026-01-01")
    log = AuditLog(api.audit_log().path, clock=clock)
    ids: list[str] = []
    with Registry(paths.current().registry, clock=clock) as reg:

        def make(platform: str, created: str, label: str) -> str:
            clock.now = _at(created)
            persona = reg.create(platform, fingerprint=FP, label=label, standby=True)
            ids.append(persona.id)
            return persona.id

        def block(persona_id: str, day: str, *, audited: bool) -> None:
            clock.now = _at(day)
            reg.transition(persona_id, "blocked", reason="zebra reason")
            if audited:
                log.append(EventName.PERSONA_BLOCKED, persona=persona_id, platform="beta")

        a1 = make("alpha", "2026-01-01", "ZEBRA-LABEL-1")
        a2 = make("alpha", "2026-01-20", "ZEBRA-LABEL-2")
        a3 = make("alpha", "2026-02-01", "ZEBRA-LABEL-3")
        block(a1, "2026-01-03", audited=False)
        block(a2, "2026-01-30", audited=False)
        block(a3, "2026-03-03", audited=False)

        b1 = make("beta", "2026-02-10", "ZEBRA-LABEL-4")
        make("beta", "2026-03-01", "ZEBRA-LABEL-5")
        block(b1, "2026-02-15", audited=True)
        clock.now = _at("2026-02-20")
        # A retried command must not move the block time.
        log.append(EventName.PERSONA_BLOCKED, persona=b1, platform="beta")
        clock.now = _at("2026-03-22")
        reg.transition(b1, "retired", reason="zebra retired")

        # b3 was shredded: its registry row is gone, the audit trail remembers it.
        b3 = "zzzzzzzzzzzz"
        ids.append(b3)
        clock.now = _at("2026-01-05")
        log.append(EventName.PERSONA_CREATED, persona=b3, platform="beta")
        clock.now = _at("2026-04-04")
        log.append(EventName.PERSONA_BLOCKED, persona=b3, platform="beta")

        # Distinctive kit details that must never reach a report.
        kit.update_kit(
            ids[4],
            {
                "username": "zebra_user",
                "email": "zebra.kit@example.org",
                "card-label": "Zebra finance card",
                "card-last4": "9753",
            },
            registry=reg,
            log=log,
        )
        clock.now = NOW
        yield History(registry=reg, log=log, persona_ids=ids)


def _by_platform(built: report.Report) -> dict[str, report.PlatformFigures]:
    return {fig.platform: fig for fig in built.platforms}


def test_aggregates_on_a_constructed_history(history: History) -> None:
    built = report.build_report(history.registry, history.log, now=NOW)
    figures = _by_platform(built)
    alpha, beta = figures["alpha"], figures["beta"]

    assert (alpha.personas_created, alpha.blocks) == (3, 3)
    assert alpha.lifetime == report.LifetimeStats(
        count=3, minimum=2.0, q1=6.0, median=10.0, q3=20.0, maximum=30.0, mean=14.0
    )
    assert dict(alpha.blocks_per_month) == {
        "2026-01": 2,
        "2026-02": 0,
        "2026-03": 1,
        "2026-04": 0,
    }
    # Histogram buckets: <1, 1-7, 7-30, 30-90, 90-180, 180-365, >=365 days.
    assert alpha.histogram == (0, 1, 1, 1, 0, 0, 0)

    # b1's block time comes from its first audit event (5 days), not from the
    # registry, which only knows when it was retired; b3 survives its shred.
    assert (beta.personas_created, beta.blocks) == (3, 2)
    assert beta.lifetime.median == 47.0
    assert (beta.lifetime.minimum, beta.lifetime.maximum) == (5.0, 89.0)
    assert dict(beta.blocks_per_month) == {
        "2026-01": 0,
        "2026-02": 1,
        "2026-03": 0,
        "2026-04": 1,
    }
    assert beta.histogram == (0, 1, 0, 1, 0, 0, 0)

    total = built.total
    assert (total.personas_created, total.blocks, total.lifetime.median) == (6, 5, 10.0)
    assert built.months == ("2026-01", "2026-02", "2026-03", "2026-04")
    assert dict(built.block_sources) == {"audit": 2, "registry": 3}


def test_median_of_three_blocked_after_2_10_30_days(tmp_path: Path) -> None:
    clock = Clock(_at("2026-05-01"))
    with Registry(tmp_path / "r.sqlite3", clock=clock) as reg:
        for days in (30, 2, 10):
            clock.now = _at("2026-05-01")
            persona = reg.create("demo", fingerprint=FP, standby=True)
            clock.now = _at("2026-05-01") + timedelta(days=days)
            reg.transition(persona.id, "blocked")
        built = report.build_report(reg, None, now=_at("2026-07-01"))
    assert built.total.lifetime.median == 10.0
    assert built.total.lifetime.count == 3


def test_since_limits_creations_and_blocks(history: History) -> None:
    since = _at("2026-02-01").replace(hour=0)
    built = report.build_report(history.registry, history.log, since=since, now=NOW)
    figures = _by_platform(built)
    assert (figures["alpha"].personas_created, figures["alpha"].blocks) == (1, 1)
    assert figures["alpha"].lifetime.median == 30.0
    assert (figures["beta"].personas_created, figures["beta"].blocks) == (2, 2)
    assert built.months == ("2026-02", "2026-03", "2026-04")
    with pytest.raises(UsageError, match="timezone-aware"):
        report.build_report(history.registry, history.log, since=datetime(2026, 1, 1))


def test_empty_registry(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.sqlite3") as reg:
        built = report.build_report(reg, None, now=NOW)
    assert built.platforms == ()
    assert built.total.blocks == 0
    assert built.total.lifetime.median is None
    assert "no personas yet" in report.render_text(built)
    assert "<svg" not in report.render_html(built).split("Blocks per month</h2>")[1][:40]


def _leaks(text: str, history: History) -> list[str]:
    found = [pid for pid in history.persona_ids if pid in text]
    found += re.findall(r"(?i)zebra|9753", text)
    return found


def test_outputs_hold_aggregates_only(history: History) -> None:
    built = report.build_report(history.registry, history.log, now=NOW)
    for rendered in (
        json.dumps(built.to_json()),
        report.render_text(built),
        report.render_html(built),
    ):
        assert _leaks(rendered, history) == []


def test_html_is_self_contained_and_draws_the_data(history: History) -> None:
    page = report.render_html(report.build_report(history.registry, history.log, now=NOW))
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for external in ("http", "src=", "href=", "<script", "url(", "@import", "<link", "<img"):
        assert external not in lowered, external
    assert lowered.count("<svg") == 2
    assert "<style>" in page
    # Bars carry their values: blocks per month and the lifetime histogram.
    assert "<title>alpha, 2026-01: 2</title>" in page
    assert "<title>beta, 2026-04: 1</title>" in page
    assert "<title>alpha, 30-90 d: 1</title>" in page
    assert "<td>alpha</td><td>3</td><td>3</td><td>10</td><td>6-20</td>" in page


def test_text_table(history: History) -> None:
    text = report.render_text(report.build_report(history.registry, history.log, now=NOW))
    lines = text.splitlines()
    assert re.fullmatch(r"Persona report, all time \(made 2026-04-\d\d \d\d:\d\d \S+\)", lines[0])
    header = next(i for i, line in enumerate(lines) if line.startswith("PLATFORM"))
    assert lines[header].split() == [
        "PLATFORM",
        "CREATED",
        "BLOCKED",
        "TYPICAL",
        "DAYS",
        "MIDDLE",
        "HALF",
        "SHORTEST",
        "LONGEST",
    ]
    assert lines[header + 2].split() == ["alpha", "3", "3", "10", "6-20", "2", "30"]
    assert lines[header + 3].split() == ["beta", "3", "2", "47", "26-68", "5", "89"]
    assert lines[header + 4].split() == ["All", "platforms", "6", "5", "10", "5-30", "2", "89"]
    assert "2026-01  2      0     2" in text
    # No statistics words a manager has to look up.
    for jargon in ("Q1", "Q3", "MEDIAN", "registry"):
        assert jargon not in text, jargon


def test_sentences_a_manager_reads(history: History) -> None:
    built = report.build_report(
        history.registry, history.log, now=NOW, names={"alpha": "Alpha Classifieds"}
    )
    text = report.render_text(built)
    assert (
        "Alpha Classifieds: 3 personas created, 3 blocked. Half of the blocked personas lasted "
        "between 6 and 20 days; a typical one lasted 10 days (shortest 2 days, longest 30 days)."
    ) in text
    # A platform no profile names is shown by its id.
    assert "beta: 3 personas created, 2 blocked." in text
    # Three block days come from the persona list, not the audit trail: said in plain words.
    assert "For 3 blocks the audit trail holds no record" in text
    page = report.render_html(built)
    assert "<td>Alpha Classifieds</td><td>3</td><td>3</td><td>10</td><td>6-20</td>" in page
    assert "<title>Alpha Classifieds, 2026-01: 2</title>" in page
    assert [fig.title for fig in built.platforms] == ["Alpha Classifieds", "beta"]
    assert built.to_json()["platforms"][0] == {
        **built.to_json()["platforms"][0],
        "platform": "alpha",
        "name": "Alpha Classifieds",
    }


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ((), "x: 2 personas created, none blocked."),
        ((0.5,), "x: 2 personas created, 1 blocked. The blocked persona lasted less than a day."),
        ((3.0, 3.2), "lasted about 3 days; a typical one lasted 3 days"),
    ],
)
def test_sentence_edges(days: tuple[float, ...], expected: str) -> None:
    fig = report.PlatformFigures(
        platform="x",
        personas_created=2,
        blocks=len(days),
        lifetime=report.LifetimeStats.of(days),
        histogram=(),
        blocks_per_month={},
    )
    assert expected in report.summary(fig)


# ---------------------------------------------------------------- writing the file


def test_write_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    assert report.write_report_file(target, "first") == target
    assert target.read_text() == "first"

    with pytest.raises(UsageError, match="already exists; add --force"):
        report.write_report_file(target, "second")
    assert target.read_text() == "first"

    report.write_report_file(target, "third", force=True)
    assert target.read_text() == "third"
    # No temporary files left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_refuses_directories_and_missing_parents(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        report.write_report_file(tmp_path, "x")
    with pytest.raises(EnvironmentProblem, match="cannot write in"):
        report.write_report_file(tmp_path / "missing" / "r.html", "x")
    assert list(tmp_path.iterdir()) == []
