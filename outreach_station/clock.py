"""The current time and the text forms station stores times in.

Three forms are on disk and must stay readable, so each has its name here:

- `iso`: UTC to the second with a ``Z`` (registry, kits, workspace markers,
  reports): ``2026-11-03T09:00:00Z``;
- `iso_offset`: UTC to the second with ``+00:00`` (the `updated` column of
  persona proxies): ``2026-11-03T09:00:00+00:00``;
- `iso_micro`: UTC to the microsecond with a ``Z``, the only form in the
  audit log, parsed strictly by `parse_iso_micro` since the chain hashes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

_MICRO_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: the default clock wherever one can be injected."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``2026-11-03T09:00:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_offset(moment: datetime) -> str:
    """``2026-11-03T09:00:00+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    """A time written by `iso` or `iso_offset` (or any ISO-8601 form with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso_micro(moment: datetime) -> str:
    """``2026-11-03T09:00:00.000000Z``; a naive `moment` is refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).strftime(_MICRO_FORMAT)


def parse_iso_micro(text: str) -> datetime:
    """Exactly the form `iso_micro` writes, else `ValueError` (or `TypeError` for a non-str)."""
    return datetime.strptime(text, _MICRO_FORMAT).replace(tzinfo=UTC)
