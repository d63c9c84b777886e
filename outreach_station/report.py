"""The management report: is the organisation's online presence sustainable?

Per platform: personas created, blocks, how long personas lived until they
were blocked (median, quartiles, a histogram) and blocks per month; as text,
JSON or one self-contained HTML page with charts drawn here as inline SVG.

Aggregates only, by design: no persona id, label, kit detail or status
reason ever reaches a report, so it can be mailed to management as it is.

Where block times come from: a persona that was blocked and later retired
keeps only its *latest* status change in the registry, so the registry alone
cannot say when it was blocked. The audit trail can: every block is recorded
as a `persona.blocked` event with the persona's id and the time. So the
earliest `persona.blocked` event of a persona is its block time; a persona
with no such event but the status `blocked` (blocked before the audit trail
existed, or by a tool that does not audit) falls back to the registry's
`status_changed`. A persona retired after a block that the audit trail never
saw is not counted as blocked: nothing recorded says it was. Creation times
come from the registry, or from `persona.created` events for personas no
longer in it (shredded), so history survives a shred.
"""

from __future__ import annotations

import html
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from outreach_station import fsutil, paths
from outreach_station.audit import AuditLog
from outreach_station.clock import iso, utcnow
from outreach_station.context import Station
from outreach_station.errors import EnvironmentProblem, UsageError
from outreach_station.events import EventName
from outreach_station.i18n import N_, _, language, ngettext
from outreach_station.storage import Store, open_store

# The total's platform id in --json; translated where a person reads it.
ALL_PLATFORMS: Final = N_("All platforms")

# Lifetime histogram buckets in days: [lower, upper), the last one open.
LIFETIME_BUCKETS: Final[tuple[tuple[float, float, str], ...]] = (
    (0.0, 1.0, "<1 d"),
    (1.0, 7.0, "1-7 d"),
    (7.0, 30.0, "7-30 d"),
    (30.0, 90.0, "30-90 d"),
    (90.0, 180.0, "90-180 d"),
    (180.0, 365.0, "180-365 d"),
    (365.0, math.inf, ">=365 d"),
)

_SECONDS_PER_DAY: Final = 86400.0


def _month(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class LifetimeStats:
    """Days from creation to block: five-number summary and mean."""

    count: int
    minimum: float | None = None
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    maximum: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, days: Sequence[float]) -> LifetimeStats:
        if not days:
            return cls(count=0)
        ordered = sorted(days)
        if len(ordered) == 1:
            q1 = q3 = ordered[0]
        else:
            q1, _median, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        return cls(
            count=len(ordered),
            minimum=_round(ordered[0]),
            q1=_round(q1),
            median=_round(statistics.median(ordered)),
            q3=_round(q3),
            maximum=_round(ordered[-1]),
            mean=_round(statistics.fmean(ordered)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "min": self.minimum,
            "q1": self.q1,
            "median": self.median,
            "q3": self.q3,
            "max": self.maximum,
            "mean": self.mean,
        }


def _round(value: float) -> float:
    return round(value, 1)


@dataclass(frozen=True)
class PlatformFigures:
    """The figures of one platform (or of all platforms together)."""

    platform: str
    personas_created: int
    blocks: int
    lifetime: LifetimeStats
    # Counts per LIFETIME_BUCKETS entry, in order.
    histogram: tuple[int, ...]
    # Every month of the report's range, oldest first, zero months included.
    blocks_per_month: Mapping[str, int] = field(hash=False)
    # What people call the platform (its profile's name); the id when no profile names it.
    name: str = ""

    @property
    def title(self) -> str:
        return self.name or self.platform

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "name": self.title,
            "personas_created": self.personas_created,
            "blocks": self.blocks,
            "lifetime_days": self.lifetime.to_json(),
            "lifetime_histogram": [
                {"bucket": label, "count": count}
                for (_low, _high, label), count in zip(
                    LIFETIME_BUCKETS, self.histogram, strict=True
                )
            ],
            "blocks_per_month": dict(self.blocks_per_month),
        }


@dataclass(frozen=True)
class Report:
    generated: datetime
    since: datetime | None
    months: tuple[str, ...]
    platforms: tuple[PlatformFigures, ...]
    total: PlatformFigures
    # How many block times came from the audit trail, how many from the registry.
    block_sources: Mapping[str, int] = field(hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "generated": iso(self.generated),
            "since": iso(self.since) if self.since else None,
            "months": list(self.months),
            "platforms": [p.to_json() for p in self.platforms],
            "total": self.total.to_json(),
            "block_time_sources": dict(self.block_sources),
        }


@dataclass
class _Life:
    platform: str
    created: datetime | None = None
    blocked: datetime | None = None
    source: str = ""


def _add_audit(lives: dict[str, _Life], log: AuditLog) -> None:
    """Creation and block times from the audit trail, in the order they happened."""
    for record in log.records():
        if record.persona is None:
            continue
        if record.event is EventName.PERSONA_CREATED:
            life = lives.setdefault(record.persona, _Life(platform=record.platform or ""))
            if life.created is None:
                life.created = record.time
        elif record.event is EventName.PERSONA_BLOCKED:
            life = lives.setdefault(record.persona, _Life(platform=record.platform or ""))
            # A persona is blocked once; a repeated event (a retried
            # command) must not move its block time later.
            if life.blocked is None or record.time < life.blocked:
                life.blocked, life.source = record.time, "audit"
        elif record.event is EventName.PERSONA_ROTATION_UNDONE and record.persona in lives:
            # `rotate --undo`: the block was a mistake, not the platform's doing.
            lives[record.persona].blocked = None


def _lives(registry: Store, log: AuditLog | None) -> dict[str, _Life]:
    lives: dict[str, _Life] = {}
    for persona in registry.list():
        lives[persona.id] = _Life(platform=persona.platform, created=persona.created)
    if log is not None:
        _add_audit(lives, log)
    for persona in registry.list(status="blocked"):
        life = lives[persona.id]
        if life.blocked is None:
            life.blocked, life.source = persona.status_changed, "registry"
    for life in lives.values():
        if not life.platform:
            life.platform = "(unknown)"
    return lives


def _months(first: datetime, last: datetime) -> tuple[str, ...]:
    year, month = first.astimezone(UTC).year, first.astimezone(UTC).month
    end = _month(last)
    found: list[str] = []
    while True:
        label = f"{year:04d}-{month:02d}"
        found.append(label)
        if label >= end:
            return tuple(found)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _figures(
    platform: str,
    lives: Iterable[_Life],
    since: datetime | None,
    months: Sequence[str],
    name: str = "",
) -> PlatformFigures:
    created = 0
    lifetimes: list[float] = []
    per_month = dict.fromkeys(months, 0)
    blocks = 0
    for life in lives:
        if life.created is not None and (since is None or life.created >= since):
            created += 1
        if life.blocked is None or (since is not None and life.blocked < since):
            continue
        blocks += 1
        per_month[_month(life.blocked)] = per_month.get(_month(life.blocked), 0) + 1
        if life.created is not None:
            # Clock steps between machines must not produce negative lives.
            seconds = max(0.0, (life.blocked - life.created).total_seconds())
            lifetimes.append(seconds / _SECONDS_PER_DAY)
    histogram = tuple(
        sum(1 for days in lifetimes if low <= days < high) for low, high, _label in LIFETIME_BUCKETS
    )
    return PlatformFigures(
        platform=platform,
        personas_created=created,
        blocks=blocks,
        lifetime=LifetimeStats.of(lifetimes),
        histogram=histogram,
        blocks_per_month=dict(sorted(per_month.items())),
        name=name,
    )


def build_report(
    registry: Store,
    log: AuditLog | None,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
    names: Mapping[str, str] | None = None,
) -> Report:
    """Aggregate the registry and the audit trail into a `Report`.

    `names` maps platform ids to the names people know them by (the
    profiles' `name`); a platform without one is shown by its id.
    """
    if since is not None and since.tzinfo is None:
        raise UsageError(_("since must be timezone-aware"))
    moment = now or utcnow()
    lives = _lives(registry, log)
    times = [
        t
        for life in lives.values()
        for t in (life.created, life.blocked)
        if t is not None and (since is None or t >= since)
    ]
    first = since if since is not None else min(times, default=None)
    months = _months(first, max([moment, *times])) if first is not None else ()
    by_platform: dict[str, list[_Life]] = {}
    for life in lives.values():
        by_platform.setdefault(life.platform, []).append(life)
    names = names or {}
    platforms = tuple(
        _figures(platform, group, since, months, names.get(platform, ""))
        for platform, group in sorted(
            by_platform.items(), key=lambda item: (names.get(item[0], item[0]).casefold(), item[0])
        )
    )
    sources = {"audit": 0, "registry": 0}
    for life in lives.values():
        if life.blocked is not None and (since is None or life.blocked >= since):
            sources[life.source] += 1
    return Report(
        generated=moment,
        since=since,
        months=months,
        platforms=platforms,
        total=_figures(ALL_PLATFORMS, lives.values(), since, months),
        block_sources=sources,
    )


def management_report(
    *, since: datetime | None = None, clock: Callable[[], datetime] = utcnow
) -> Report:
    """The report for the current station home and its configured audit log.

    In a team, the team's: its personas on the server and its one audit trail
    (every laptop's records), so a block on any laptop is counted.
    """
    from outreach_station.team.config import team_connection

    with Station.load() as station:
        catalogue = station.catalogue
        names = {platform_id: profile.name for platform_id, profile in catalogue.platforms.items()}
        if team_connection(station) is not None:
            return build_report(station.store, station.audit, since=since, now=clock(), names=names)
        with open_store(paths.current(), clock=clock) as registry:
            return build_report(registry, station.audit, since=since, now=clock(), names=names)


# ---------------------------------------------------------------- text


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _whole(value: float | None) -> str:
    """Days as people say them: whole days, "<1" under a day."""
    if value is None:
        return "-"
    return "<1" if value < 1 else str(round(value))


def _days(value: float) -> str:
    if value < 1:
        return _("less than a day")
    whole = round(value)
    return ngettext("{n} day", "{n} days", whole).format(n=whole)


def _title(fig: PlatformFigures) -> str:
    """The platform's name, or "All platforms" in the reader's language for the total."""
    if not fig.name and fig.platform == ALL_PLATFORMS:
        return _(ALL_PLATFORMS)
    return fig.title


def summary(fig: PlatformFigures) -> str:
    """One platform's figures as a sentence a manager reads without statistics."""
    opening = ngettext(
        "{platform}: {n} persona created, ",
        "{platform}: {n} personas created, ",
        fig.personas_created,
    ).format(platform=_title(fig), n=fig.personas_created)
    life = fig.lifetime
    if fig.blocks == 0:
        return opening + _("none blocked.")
    opening += ngettext("{n} blocked.", "{n} blocked.", fig.blocks).format(n=fig.blocks)
    if (
        life.median is None
        or life.q1 is None
        or life.q3 is None
        or life.minimum is None
        or life.maximum is None
    ):
        return opening + _(" When they were created is not known, so not how long they lasted.")
    if life.count == 1:
        return opening + _(" The blocked persona lasted {days}.").format(days=_days(life.median))
    low, high = _whole(life.q1), _whole(life.q3)
    if low == high:
        middle = _days(life.q1) if low == "<1" else _("about {days}").format(days=_days(life.q1))
    else:
        middle = _("between {low} and {high}").format(low=low, high=_days(life.q3))
    counted = (
        ""
        if life.count == fig.blocks
        else _(" (of the {n} whose start is known)").format(n=life.count)
    )
    extremes = (
        ""
        if _whole(life.minimum) == _whole(life.maximum)
        else _(" (shortest {shortest}, longest {longest})").format(
            shortest=_days(life.minimum), longest=_days(life.maximum)
        )
    )
    return opening + _(
        " Half of the blocked personas{counted} lasted {middle}; a typical one lasted "
        "{typical}{extremes}."
    ).format(counted=counted, middle=middle, typical=_days(life.median), extremes=extremes)


def _source_note(report: Report) -> str:
    """Say plainly when some block days are less certain; nothing when all are recorded."""
    guessed = report.block_sources.get("registry", 0)
    if not guessed:
        return ""
    return ngettext(
        "For {n} block the audit trail holds no record, so the day the persona list last "
        "changed that persona is used.",
        "For {n} blocks the audit trail holds no record, so the day the persona list last "
        "changed that persona is used.",
        guessed,
    ).format(n=guessed)


def _short(title: str, width: int) -> str:
    return title if len(title) <= width else title[: width - 1].rstrip() + "\u2026"


def _when(moment: datetime) -> str:
    """Local time with its zone, as people read it (JSON keeps UTC)."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _scope(report: Report) -> str:
    if report.since:
        return _("since {date}").format(date=f"{report.since.astimezone():%Y-%m-%d}")
    return _("all time")


_TABLE_HEADERS: Final = (
    N_("PLATFORM"),
    N_("CREATED"),
    N_("BLOCKED"),
    N_("TYPICAL DAYS"),
    N_("MIDDLE HALF"),
    N_("SHORTEST"),
    N_("LONGEST"),
)


def _row(fig: PlatformFigures, width: int) -> list[str]:
    life = fig.lifetime
    low, high = _whole(life.q1), _whole(life.q3)
    middle = low if low == high else f"{low}-{high}"
    return [
        _short(_title(fig), width),
        str(fig.personas_created),
        str(fig.blocks),
        _whole(life.median),
        middle,
        _whole(life.minimum),
        _whole(life.maximum),
    ]


def render_text(report: Report) -> str:
    """Sentences first, then the table and blocks per month, for the terminal."""
    lines = [
        _("Persona report, {scope} (made {when})").format(
            scope=_scope(report), when=_when(report.generated)
        ),
        "",
    ]
    if not report.platforms:
        return "\n".join([*lines, _("no personas yet; nothing to report")])
    lines += [summary(fig) for fig in (*report.platforms, report.total)]
    lines += [""]
    rows = [_row(fig, 28) for fig in (*report.platforms, report.total)]
    lines += _table([_(header) for header in _TABLE_HEADERS], rows)
    lines += [
        "",
        _(
            "Days from a persona's creation until the platform blocked it. TYPICAL: half lasted "
            "longer, half shorter. MIDDLE HALF: the middle half of the personas lasted this long."
        ),
    ]
    if report.months:
        lines += ["", _("Blocks per month")]
        month_headers = [
            _("MONTH"),
            *(_short(fig.title, 16).upper() for fig in report.platforms),
            _("TOTAL"),
        ]
        month_rows = [
            [
                month,
                *(str(fig.blocks_per_month.get(month, 0)) for fig in report.platforms),
                str(report.total.blocks_per_month.get(month, 0)),
            ]
            for month in report.months
        ]
        lines += _table(month_headers, month_rows)
    note = _source_note(report)
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for index, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


# ---------------------------------------------------------------- HTML

# Distinguishable for the common colour-vision deficiencies (Okabe & Ito).
_PALETTE: Final = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
)

_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1a1a1a; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3rem 0.8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; }
.note { color: #555; font-size: 0.9rem; }
svg { display: block; margin: 0.5rem 0; max-width: 100%; height: auto; }
svg text { font-family: system-ui, sans-serif; font-size: 11px; fill: #1a1a1a; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(value: int) -> int:
    if value <= 5:
        return max(value, 1)
    magnitude = int(10 ** int(math.log10(value)))
    for step in (1, 2, 5):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bar_chart_svg(
    title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]
) -> str:
    """A grouped bar chart as an inline SVG element (no script, no external reference)."""
    left, right, top, bottom = 44, 16, 40, 64
    per_bar = 12
    group = max(28, per_bar * max(len(series), 1) + 10)
    plot_w = max(520, group * max(len(categories), 1))
    plot_h = 200
    width, height = left + plot_w + right, top + plot_h + bottom
    peak = _nice_max(max((v for _name, values in series for v in values), default=0))
    tick_step = max(1, peak // 5) if peak > 5 else 1
    parts = [
        f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
    ]
    for index, (name, _values) in enumerate(series):
        x = left + index * 130
        colour = _PALETTE[index % len(_PALETTE)]
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="17">{_e(name)}</text>')
    for tick in range(0, peak + 1, tick_step):
        y = top + plot_h - plot_h * tick / peak
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    slot = plot_w / max(len(categories), 1)
    for c_index, category in enumerate(categories):
        x0 = left + c_index * slot + (slot - per_bar * len(series)) / 2
        for s_index, (name, values) in enumerate(series):
            value = values[c_index]
            bar_h = plot_h * value / peak
            bar_x = x0 + s_index * per_bar
            colour = _PALETTE[s_index % len(_PALETTE)]
            parts.append(
                f'<rect x="{bar_x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{per_bar - 2}" '
                f'height="{bar_h:.1f}" fill="{colour}"><title>{_e(name)}, {_e(category)}: '
                f"{value}</title></rect>"
            )
        label_x = left + c_index * slot + slot / 2
        label_y = top + plot_h + 14
        parts.append(
            f'<text x="{label_x:.1f}" y="{label_y}" text-anchor="end" '
            f'transform="rotate(-40 {label_x:.1f} {label_y})">{_e(category)}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#333"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """One self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""
    rows = []
    for fig in (*report.platforms, report.total):
        css = ' class="total"' if fig is report.total else ""
        cells = _row(fig, 60)
        rows.append(f"<tr{css}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{_e(h)}</th>"
        for h in (
            _("Platform"),
            _("Personas created"),
            _("Blocked"),
            _("Typical lifetime (days)"),
            _("Middle half (days)"),
            _("Shortest"),
            _("Longest"),
        )
    )
    months_chart = bar_chart_svg(
        _("Blocks per month"),
        report.months,
        [
            (fig.title, [fig.blocks_per_month.get(m, 0) for m in report.months])
            for fig in report.platforms
        ],
    )
    lifetime_chart = bar_chart_svg(
        _("Persona lifetime until block (number of personas per lifetime range)"),
        [label for _low, _high, label in LIFETIME_BUCKETS],
        [(fig.title, list(fig.histogram)) for fig in report.platforms],
    )
    sentences = "".join(f"<li>{_e(summary(fig))}</li>" for fig in report.platforms)
    note = _source_note(report)
    scope_note = _(
        "Scope: {scope}. Made {when}. Totals only: no persona, account or person is named."
    ).format(scope=_scope(report), when=_when(report.generated))
    lifetime_note = _(
        "Lifetime: days from a persona's creation until the platform blocked it. Typical: "
        "half lasted longer, half shorter. Middle half: the middle half of the personas "
        "lasted this long."
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{language()}">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(_('Outreach station: persona report'))}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{_e(_('Outreach personas: how long they last'))}</h1>",
            f'<p class="note">{_e(scope_note)}</p>',
            f"<h2>{_e(_('In short'))}</h2>",
            f"<ul>{sentences}</ul>" if sentences else f"<p>{_e(_('No personas yet.'))}</p>",
            f"<p>{_e(summary(report.total))}</p>" if report.platforms else "",
            f"<h2>{_e(_('Per platform'))}</h2>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
            f'<p class="note">{_e(lifetime_note)}{(" " + _e(note)) if note else ""}</p>',
            f"<h2>{_e(_('Blocks per month'))}</h2>",
            months_chart if report.months else f"<p>{_e(_('No data yet.'))}</p>",
            f"<h2>{_e(_('Lifetime until block'))}</h2>",
            lifetime_chart,
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report_file(path: Path, content: str, *, force: bool = False) -> Path:
    """Write `content` to `path` atomically; refuse an existing file unless `force`.

    The file appears complete or not at all: it is written beside its target
    and then linked (no overwrite) or renamed (overwrite) into place.
    """
    target = path.expanduser()
    directory = target.parent if str(target.parent) else Path()
    if target.is_dir():
        raise UsageError(
            _("{path} is a directory; give a file name such as report.html").format(path=target)
        )
    if target.exists() and not force:
        raise UsageError(
            _("{path} already exists; add --force to overwrite it").format(path=target)
        )
    # A report for management is an ordinary document, not a private file.
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp = fsutil.write_temp(target, content.encode("utf-8"), mode=0o666 & ~umask)
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot write in {path}: {reason}").format(path=directory, reason=exc.strerror)
        ) from None
    try:
        if force:
            fsutil.replace_with(tmp, target)
        elif not fsutil.link_new(tmp, target, without_links=True):
            raise UsageError(
                _("{path} already exists; add --force to overwrite it").format(path=target)
            )
    except OSError as exc:
        raise EnvironmentProblem(
            _("cannot write {path}: {reason}").format(path=target, reason=exc.strerror)
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
