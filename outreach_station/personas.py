"""Personas as values: what a persona is and which lifecycle moves make sense.

Storage backends (`outreach_station.storage`) keep them; this module knows
nothing of where.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from outreach_station.clock import iso

if TYPE_CHECKING:
    from outreach_station.fingerprint import Fingerprint

Status = Literal["standby", "active", "blocked", "retired"]
STATUSES: tuple[Status, ...] = ("standby", "active", "blocked", "retired")

# Blocked never becomes active through a transition: only `Store.undo_rotation`
# (`station rotate --undo`, within the policy's window) brings it back, together
# with its mirror image, so a mistaken rotation need not burn a working account.
ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    "standby": frozenset({"active", "blocked", "retired"}),
    "active": frozenset({"standby", "blocked", "retired"}),
    "blocked": frozenset({"retired"}),
    "retired": frozenset(),
}


@dataclass(frozen=True)
class Persona:
    id: str
    platform: str
    label: str
    status: Status
    created: datetime
    last_opened: datetime | None
    status_changed: datetime
    status_reason: str
    fingerprint: dict[str, Any]

    @cached_property
    def presents(self) -> Fingerprint:
        """The stored fingerprint as a value, parsed once (StateError if it is damaged)."""
        from outreach_station.fingerprint import Fingerprint

        return Fingerprint.from_dict(self.fingerprint)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "label": self.label,
            "status": self.status,
            "created": iso(self.created),
            "last_opened": iso(self.last_opened) if self.last_opened else None,
            "status_changed": iso(self.status_changed),
            "status_reason": self.status_reason,
            "fingerprint": self.fingerprint,
        }
