"""What a rotation is about to burn, and taking the last one back.

`lifecycle.rotate` does the rotation; this module lets a person see what it
will block before it happens (`preview`) and undo a mistaken one within the
policy's `rotation.undo_minutes` (`undo`).

Nothing a rotation blocks is destroyed by the rotation: the blocked persona
keeps its data key, sealed profile, kit and proxy until retention or
`persona retire` shreds it. Retention's shortest setting (1 day) is never
shorter than the longest undo window (`policy.MAX_UNDO_MINUTES`), so
nothing is shredded while it can still be brought back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from outreach_station.context import Notify, Station, quiet, using
from outreach_station.errors import BusyError, StateError
from outreach_station.events import EventName
from outreach_station.i18n import N_, _

if TYPE_CHECKING:
    from outreach_station.personas import Persona
    from outreach_station.platforms import PlatformProfile

# What `Store.rotate` writes on the persona it brings in.
_BROUGHT_IN_BY_ROTATION = ("promoted by rotation", "created by rotation")
UNDONE_REASON = "rotation undone"


@dataclass(frozen=True)
class RotationPreview:
    """What `station rotate` would block: shown to the person before anything changes."""

    platform: PlatformProfile
    current: Persona | None
    username: str


def preview(platform_id: str, *, station: Station | None = None) -> RotationPreview:
    with using(station) as st:
        profile = st.platform(platform_id)
        current = st.store.active(profile.id)
        row = st.store.kit_row(current.id) if current is not None else None
        return RotationPreview(
            platform=profile, current=current, username=(row or {}).get("username", "")
        )


@dataclass(frozen=True)
class UndoResult:
    platform: str
    restored: Persona
    demoted: Persona


def undo(platform_id: str, *, notify: Notify = quiet, station: Station | None = None) -> UndoResult:
    """Make the persona the platform's last rotation blocked active again, the promoted one standby.

    Refused when the policy's window has passed, when undo is off, when the
    last change of the platform was not a rotation, or while the promoted
    persona is open.
    """
    from outreach_station.workspace import is_locked, platform_lock

    with using(station, notify) as st:
        profile = st.platform(platform_id)
        minutes = st.policy.rotation.undo_minutes
        if minutes <= 0:
            raise StateError(
                _("undoing a rotation is turned off by the policy (rotation.undo_minutes = 0)")
            )
        store = st.store
        with platform_lock(st.paths, profile.id, action=N_("opened or rotated")):
            st.audit.check_appendable()  # an undo without its record must not happen
            promoted = store.active(profile.id)
            blocked = _blocked_by(st, promoted)
            if promoted is None or blocked is None:
                raise StateError(
                    _(
                        "platform {platform} has no rotation to undo: its active persona was "
                        "not brought in by a rotation that blocked another"
                    ).format(platform=profile.id)
                )
            age = (store.clock() - promoted.status_changed).total_seconds()
            if age > minutes * 60:
                raise StateError(
                    _(
                        "the last rotation of {platform} was {ago:.0f} minutes ago; "
                        "it can be undone only within {minutes} minutes"
                    ).format(platform=profile.id, ago=age // 60, minutes=minutes)
                )
            if is_locked(st.paths, promoted.id):
                raise BusyError(
                    _(
                        "persona {promoted} is open; close its window, then undo the rotation"
                    ).format(promoted=promoted.id)
                )
            restored, demoted = store.undo_rotation(
                profile.id, blocked_id=blocked.id, promoted_id=promoted.id, reason=UNDONE_REASON
            )
        st.record(EventName.PERSONA_ROTATION_UNDONE, restored, demoted=demoted.id)
        return UndoResult(platform=profile.id, restored=restored, demoted=demoted)


def _blocked_by(st: Station, promoted: Persona | None) -> Persona | None:
    """The persona blocked by the rotation that brought `promoted` in, if that is what it was."""
    if promoted is None or promoted.status_reason not in _BROUGHT_IN_BY_ROTATION:
        return None
    # `Store.rotate` stamps both personas with one moment: that pairs them.
    return next(
        (
            p
            for p in st.store.list(platform=promoted.platform, status="blocked")
            if p.status_changed == promoted.status_changed
        ),
        None,
    )
