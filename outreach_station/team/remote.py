"""Rotation from any laptop: the persona's session is closed on whichever laptop holds it.

`station rotate` in a team, once the platform's active persona is chosen:

1. a session of this laptop was closed the local way first (`lifecycle.
   close_open_session`); its lease is given back once its upload is done;
2. a lease held by another laptop gets a close request on the server, for
   that lease's token only (`PostgresStore.request_close`). The holder's
   renewing thread hears it within a second (NOTIFY) or at its next
   renewal, says it saw it (`close_seen`), and its session closes as at a
   local rotate: the browser closed, the profile resealed and uploaded with
   its token, the person told why (`team.opening`);
3. this laptop waits for the lease to be given back, telling its person
   what it waits for; then it takes the persona's lease itself for the
   rotation, so nobody opens the persona while it is blocked, and gives it
   back afterwards. Taking it moves the fencing token on: an expired lease's
   holder (a crashed or long-suspended laptop) can no longer commit to the
   blocked persona; what it sealed stays aside on that laptop.

A holder that does not say it saw the request within `ANSWER_SECONDS`
(suspended, cut off) fails the rotation: nothing is rotated, the request is
withdrawn, and the person is told who holds the persona, on which laptop,
and what to do (retry, or `station team unlock` first). Rotation never takes
a live lease on its own: that is what `team unlock` is for, on purpose and
audited with a reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from outreach_station.errors import BusyError
from outreach_station.i18n import _

if TYPE_CHECKING:
    from outreach_station.context import Notify, Station
    from outreach_station.personas import Persona
    from outreach_station.storage.postgres import Lease, PostgresStore

# How long the holder has to say it saw the request (it hears it within a second).
ANSWER_SECONDS: Final = 15.0
# How long its close may take once it said so: the browser, the reseal, the upload.
CLOSE_SECONDS: Final = 180.0
_POLL_SECONDS: Final = 0.25


class _Wait:
    """One rotation's wait for a persona's lease, with what it told the person so far."""

    def __init__(
        self, store: PostgresStore, persona_id: str, member: str, host: str, notify: Notify
    ) -> None:
        self.store = store
        self.persona_id = persona_id
        self.member = member
        self.host = host
        self.notify = notify
        self.asked: int | None = None  # the token asked to close
        self.asked_at = 0.0
        self.seen_at: float | None = None

    def ask(self, lease: Lease, reason: str) -> None:
        if self.asked == lease.token:
            return
        if self.store.request_close(
            self.persona_id, lease.token, member=self.member, host=self.host, reason=reason
        ):
            self.asked, self.asked_at, self.seen_at = lease.token, time.monotonic(), None
            self.notify(
                _(
                    "persona {persona} is open by {holder}; asked that laptop to close it "
                    "(waiting up to {seconds:.0f} s for its answer)"
                ).format(persona=self.persona_id, holder=lease.describe(), seconds=ANSWER_SECONDS)
            )

    def check(self, lease: Lease) -> None:
        """Raise when the holder did not answer, or did not finish closing, in time."""
        now = time.monotonic()
        if lease.close is not None and lease.close.seen is not None:
            if self.seen_at is None:
                self.seen_at = now
                self.notify(
                    _("{host} is closing persona {persona}: sealing and uploading its work").format(
                        host=lease.host, persona=self.persona_id
                    )
                )
            if now - self.seen_at > CLOSE_SECONDS:
                self.withdraw()
                raise BusyError(
                    _(
                        "persona {persona} is still closing on {host} after {seconds:.0f} s "
                        "(a large upload?); nothing was rotated: run station rotate again in "
                        "a while"
                    ).format(persona=self.persona_id, host=lease.host, seconds=CLOSE_SECONDS)
                )
        elif now - self.asked_at > ANSWER_SECONDS:
            self.withdraw()
            raise BusyError(
                _(
                    "persona {persona} is open by {holder} and that laptop did not answer "
                    "within {seconds:.0f} s (suspended or offline); nothing was rotated: run "
                    "station rotate again when it is back, or free the persona with station "
                    "team unlock {persona} --reason TEXT and then rotate"
                ).format(persona=self.persona_id, holder=lease.describe(), seconds=ANSWER_SECONDS)
            )

    def withdraw(self) -> None:
        # A laptop that wakes up later must not close a session nobody is waiting for.
        if self.asked is not None:
            with contextlib.suppress(Exception):
                self.store.withdraw_close(self.persona_id, self.asked)


@contextlib.contextmanager
def held_for_rotation(
    st: Station, persona: Persona, *, closed_here: bool, reason: str, notify: Notify
) -> Iterator[bool]:
    """Hold `persona`'s lease while it is rotated, its session closed wherever it is open.

    Yields whether a session on another laptop was closed for it; yields
    False at once outside a team. See the module's docstring.
    """
    from outreach_station.team.config import read_team_file
    from outreach_station.team.opening import host_name, team_store

    store = team_store(st)
    joined = read_team_file(st.paths)
    if store is None or joined is None:
        yield False
        return
    member, host = joined.member_id, host_name()
    ttl = timedelta(minutes=st.policy.team.lease_minutes)
    wait = _Wait(store, persona.id, member, host, notify)
    started = time.monotonic()
    while True:
        lease = store.lease(persona.id)
        mine = lease is not None and (lease.member, lease.host) == (member, host)
        if lease is None or lease.expired or (mine and not closed_here):
            # Free, expired, or left by a crashed session of this laptop: taken, and
            # whoever held it before is fenced off by the new token.
            with contextlib.suppress(BusyError):
                held = store.acquire_lease(persona.id, member=member, host=host, ttl=ttl)
                break
        elif mine:
            # This laptop's own session was just closed; it gives the lease back after
            # its upload.
            if time.monotonic() - started > CLOSE_SECONDS:
                raise BusyError(
                    _(
                        "persona {persona} is still closing on this laptop after {seconds:.0f} "
                        "s; nothing was rotated: run station rotate again in a while"
                    ).format(persona=persona.id, seconds=CLOSE_SECONDS)
                )
        else:
            wait.ask(lease, reason)
            wait.check(lease)
        time.sleep(_POLL_SECONDS)
    try:
        if wait.asked is not None:
            notify(
                _("closed the open session of persona {persona} on another laptop").format(
                    persona=persona.id
                )
            )
        yield wait.asked is not None
    finally:
        with contextlib.suppress(Exception):
            store.release_lease(persona.id, held.token)
