"""Moving in: `station team push` moves a laptop's own personas into the team store.

A persona made before the laptop joined a team lives in the laptop's own
registry (SQLite under the station home) and its sealed store under the
persona's directory, sealed with a data key the laptop's vault keeps. A
push moves each one that is not retired, one at a time, and keeps its id:

1. under the persona's local lock (open here: refused, close it first), a
   profile a crashed session left open is sealed first (`workspace.recover`),
   so nothing of it stays behind;
2. the persona's row, kit details and proxy are added on the server in one
   transaction, hidden from every laptop (`moving_in`) until step 5, so that
   nobody opens it empty or promotes it meanwhile;
3. its data key (the vault's, unchanged) is wrapped with HPKE for the
   verified roster, as a team session wraps a new key (`TeamKeys`); the
   server never sees the key or the profile in plain form;
4. the laptop's newest sealed generation is uploaded as a team close
   uploads one (`sync.upload_sealed`: only the blobs the server lacks, then
   the manifest committed with a lease token; progress in bytes);
5. the persona is shown to the team, with its status (active becomes standby
   when the team already has an active persona of its platform), one audit
   record goes to the team's trail (`team.persona_pushed`), and the laptop's
   own row is retired with the reason "moved to team ...", so that it is
   never opened from the laptop's own registry again.

Each step can be done again: a push cut off anywhere (server lost, process
killed) is continued by the next, which finds what the server already has;
until step 5 the persona is still the laptop's, sealed as before. Because the
id is kept, the persona's directory is from then on the team cache of it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from outreach_station.context import Notify, Station, quiet, using
from outreach_station.errors import (
    EnvironmentProblem,
    IntegrityError,
    StateError,
    StationError,
)
from outreach_station.i18n import _

if TYPE_CHECKING:
    from outreach_station.personas import Persona
    from outreach_station.storage import Store
    from outreach_station.storage.postgres import PostgresStore
    from outreach_station.team.opening import TeamKeys
    from outreach_station.team.sync import LocalCopy, ProgressCallback
    from outreach_station.vault import PassphraseCallback, Vault

Outcome = Literal["pushed", "refused"]


@dataclass(frozen=True)
class PushedPersona:
    """What the push did with one of the laptop's personas."""

    persona_id: str
    platform: str
    label: str
    local_status: str
    outcome: Outcome
    status: str = ""  # in the team, once pushed
    generation: int = 0  # the sealed generation on the server (0: never sealed)
    blobs_sent: int = 0
    bytes_sent: int = 0
    recovered: bool = False  # a crashed session's profile was sealed first
    problem: str = ""  # why it was refused, or why it went in as standby
    exit_code: int = 0  # of the refusal

    def to_json(self) -> dict[str, object]:
        return {
            "persona": self.persona_id,
            "platform": self.platform,
            "label": self.label,
            "local_status": self.local_status,
            "outcome": self.outcome,
            "status": self.status or None,
            "generation": self.generation,
            "blobs_sent": self.blobs_sent,
            "bytes_sent": self.bytes_sent,
            "recovered": self.recovered,
            "problem": self.problem or None,
        }


@dataclass(frozen=True)
class PushResult:
    team_id: str
    server: str
    personas: tuple[PushedPersona, ...]

    @property
    def refused(self) -> tuple[PushedPersona, ...]:
        return tuple(p for p in self.personas if p.outcome == "refused")


def _host() -> str:
    import socket

    return socket.gethostname() or "unknown-host"


def push(
    *,
    station: Station | None = None,
    notify: Notify = quiet,
    progress: Callable[[str], ProgressCallback | None] | None = None,
    passphrase_prompt: PassphraseCallback | None = None,
) -> PushResult:
    """Move this laptop's own personas into the team store (see the module's docstring).

    The laptop's vault is opened once, at the first persona to push: in
    passphrase mode `passphrase_prompt` is asked then, and a wrong
    passphrase stops the push before anything is sent.

    Refused with nothing written when the home is in no team, this laptop's
    member is not approved, or the audit log cannot take a record. A persona
    that cannot go (open here, a kit detail the team already uses, ...) is
    reported as refused and the others go on; a server lost midway stops the
    push with an `EnvironmentProblem`: what was pushed stays pushed, the rest
    is untouched here and the next push continues.
    """
    from outreach_station.team.opening import _team_keys, team_store

    with using(station, notify) as st:
        store = team_store(st)
        if store is None:
            raise StateError(
                _(
                    "this station home is not in a team, so there is nowhere to push to; "
                    "join one first (station team join URL)"
                )
            )
        keys = _team_keys(st, store)
        keys.approved_roster()  # a pending member's push would wrap keys nobody verified
        st.audit.check_appendable()  # a push without its records must not happen
        team_id = store.team_id() or ""
        local = st.local_store
        done: list[PushedPersona] = []
        vault: Vault | None = None
        for persona in local.list():
            if persona.status == "retired":
                continue  # retired here (pushed before, or done with): stays on this laptop
            if vault is None:
                vault = st.vault(passphrase_prompt)
            try:
                done.append(
                    _push_one(st, store, keys, local, vault, persona, team_id, notify, progress)
                )
            except EnvironmentProblem as exc:
                raise EnvironmentProblem(
                    _(
                        "the push stopped at persona {persona}: {exc}; what was pushed "
                        "stays pushed and nothing is lost: run station team push again "
                        "when the server is back"
                    ).format(persona=persona.id, exc=exc)
                ) from None
            except StationError as exc:
                done.append(
                    PushedPersona(
                        persona.id,
                        persona.platform,
                        persona.label,
                        persona.status,
                        "refused",
                        problem=str(exc),
                        exit_code=int(exc.exit_code),
                    )
                )
        return PushResult(team_id, store.connection.where, tuple(done))


def _push_one(  # noqa: PLR0917 - one call site, in order
    st: Station,
    store: PostgresStore,
    keys: TeamKeys,
    local: Store,
    vault: Vault,
    persona: Persona,
    team_id: str,
    notify: Notify,
    progress: Callable[[str], ProgressCallback | None] | None,
) -> PushedPersona:
    from outreach_station.events import EventName
    from outreach_station.team.sync import LocalCopy
    from outreach_station.workspace import SealedState, needs_recovery, persona_lock, recover

    def bar(action: str) -> ProgressCallback | None:
        return progress(action) if progress is not None else None

    notify(
        _("pushing persona {persona} ({platform})").format(
            persona=persona.id, platform=persona.platform
        )
    )
    recovered = False
    # Held throughout: a local session of it (or a second push) cannot start meanwhile.
    with persona_lock(st.paths, persona.id):
        found = store.moving_in(persona.id)
        if found is not None and (
            found[0].platform != persona.platform or found[0].created != persona.created
        ):
            raise IntegrityError(
                _(
                    "persona {persona}: the team server already has another persona with "
                    "this id (platform {platform}); nothing was pushed: report it to IT"
                ).format(persona=persona.id, platform=found[0].platform)
            )
        if found is None or found[1] is not None:
            if needs_recovery(st.paths, persona.id):
                done = recover(
                    st.paths, persona.id, vault, notify=notify, progress=bar("sealing"), store=local
                )
                recovered = done is not None and done.resealed
            _convert_format_2(st, local, vault, persona.id)
            # As an open would: a seal cut off after its manifest landed is accepted.
            SealedState(st.paths, persona.id, local).check_file()
            _check_sealed(
                LocalCopy.of(st.paths, local, persona.id), local.sealed_generation(persona.id)[0]
            )
        if found is None:
            store.begin_move_in(
                persona,
                member=keys.member_id,
                kit=local.kit_row(persona.id),
                proxy=local.proxy(persona.id),
            )
        if found is not None and found[1] is None:
            # Shown to the team by an earlier push cut off just after: the team's copy
            # may have moved on since; only this laptop's side is left to do.
            current = store.current_generation(persona.id)
            sent = (current.generation if current is not None else 0), 0, 0
        else:
            sent = _send_profile(
                st, store, keys, local, vault, persona.id, team_id, bar("uploading")
            )
        # Before the persona is shown: once shown, a team's kit reads only the server.
        moved = _move_kit_secrets(store, keys, team_id, persona.id)
        shown = store.finish_move_in(
            persona.id,
            wanted=persona.status,
            # Data, as every status reason: never translated.
            reason="moved in as standby: the team had an active persona of its platform",
        )
        demoted = persona.status == "active" and shown.status != "active"
        generation, blobs, size = sent
        st.record(
            EventName.TEAM_PERSONA_PUSHED,
            shown,
            generation=generation,
            status=shown.status,
            local_status=persona.status,
            kit_fields_moved=",".join(moved) or "none",
        )
        # Never opened from this laptop's own registry again: the team's copy is the persona.
        local.transition(persona.id, "retired", reason=f"moved to team {team_id}")
        # The secrets are the team's now, sealed on the server: one copy, not two.
        from outreach_station import secret_store
        from outreach_station.kit import secret_entry
        from outreach_station.network import TEAM_FIELD, password_entry

        for field in moved:
            entry = password_entry(persona.id) if field == TEAM_FIELD else None
            secret_store.delete(entry or secret_entry(persona.id, field), what=field)
    if demoted:
        notify(
            _(
                "persona {persona} ({platform}) went in as standby: the team already has an "
                "active persona of that platform"
            ).format(persona=persona.id, platform=persona.platform)
        )
    return PushedPersona(
        persona.id,
        persona.platform,
        persona.label,
        persona.status,
        "pushed",
        status=shown.status,
        generation=generation,
        blobs_sent=blobs,
        bytes_sent=size,
        recovered=recovered,
        problem=shown.status_reason if demoted else "",
    )


def _move_kit_secrets(
    store: PostgresStore, keys: TeamKeys, team_id: str, persona_id: str
) -> tuple[str, ...]:
    """Seal the persona's kit secrets and proxy password from the keyring onto the server.

    As `persona kit --set-secret` in a team does (`team.kit_secrets`): under
    a key derived from the persona's data key, which the server holds only
    wrapped. Written again by a push that resumes; the keyring's copies are
    deleted only after the persona is the team's.
    """
    from outreach_station import secret_store
    from outreach_station.kit import SECRET_FIELDS, secret_entry
    from outreach_station.network import TEAM_FIELD, password_entry
    from outreach_station.team.kit_secrets import TeamKitSecrets

    team = TeamKitSecrets(store=store, keys=keys, team_id=team_id)
    moved = []
    # The kit's secrets, and the proxy's password under its team field.
    entries = [(field, secret_entry(persona_id, field)) for field in SECRET_FIELDS]
    entries.append((TEAM_FIELD, password_entry(persona_id)))
    for field, entry in entries:
        value = secret_store.read(entry, what=field)
        if value is not None:
            team.write(persona_id, field, value)
            moved.append(field)
    return tuple(moved)


def _check_sealed(copy: LocalCopy, generation: int) -> None:
    """Refuse a persona whose sealed profile on record is not in its store."""
    if generation and generation not in copy.blobs.manifests():
        # Never pushed as "nothing sealed": the profile on record would be lost to the team.
        raise IntegrityError(
            _(
                "persona {persona}: its sealed profile (generation {generation}) is not in "
                "{location}; nothing was pushed: put it back, or report it to IT"
            ).format(persona=copy.persona_id, generation=generation, location=copy.blobs.location)
        )


def _convert_format_2(st: Station, local: Store, vault: Vault, persona_id: str) -> None:
    """A profile still in the one-file format (2) is resealed as blobs, as its next close would.

    The server keeps blobs and manifests only. Unsealed into the persona's
    RAM-backed workspace and wiped after; a kill meanwhile leaves a workspace
    without a marker, which the next command wipes (the sealed file stands).
    """
    from outreach_station import fsutil
    from outreach_station.vault.blobs import is_manifest
    from outreach_station.workspace import SealedState, wipe, workspace_dir

    state = SealedState(st.paths, persona_id, local)
    if not state.file.exists() or is_manifest(state.file):
        return
    key = vault.data_key(persona_id)
    directory = workspace_dir(st.paths, persona_id)
    fsutil.ensure_private_dir(directory)
    try:
        unsealed = state.unseal(directory, key, None)
        state.seal(directory, key, None, since=unsealed)
    finally:
        wipe(directory)


def _send_profile(  # noqa: PLR0917 - one call site, in order
    st: Station,
    store: PostgresStore,
    keys: TeamKeys,
    local: Store,
    vault: Vault,
    persona_id: str,
    team_id: str,
    progress: ProgressCallback | None,
) -> tuple[int, int, int]:
    """Wrap the vault's key for the team and upload the newest generation: (gen, blobs, bytes)."""
    from outreach_station.storage.postgres import WrappedKeyRecord, keyring_password
    from outreach_station.team.keys import wrap_for_members
    from outreach_station.team.members import approved_members
    from outreach_station.team.sync import LocalCopy, hold, upload_sealed
    from outreach_station.vault.blobs import StoreKeys

    copy = LocalCopy.of(st.paths, local, persona_id)
    generation, _pending = local.sealed_generation(persona_id)
    server = store.current_generation(persona_id)
    if generation == 0 or not vault.has_data_key(persona_id):
        # Never sealed: nothing to send; its first team open makes its key.
        return (server.generation if server is not None else 0), 0, 0
    _check_sealed(copy, generation)
    data_key = vault.data_key(persona_id)
    if not store.wrapped_keys(persona_id):
        made = wrap_for_members(
            approved_members(keys.approved_roster()),
            data_key,
            team_id=team_id,
            persona_id=persona_id,
            key_version=1,
        )
        store.put_wrapped_keys(
            [WrappedKeyRecord(w.persona_id, w.member_id, w.key_version, w.sealed) for w in made]
        )
    team_key, version = keys.current(persona_id)
    if not hmac.compare_digest(team_key, data_key):
        raise IntegrityError(
            _(
                "persona {persona}: the team server holds another key for it than this "
                "laptop's; nothing was pushed: report it to IT"
            ).format(persona=persona_id)
        )
    connection = store.connection

    def connect() -> PostgresStore:
        from outreach_station.storage.postgres import PostgresStore

        return PostgresStore(connection, password=keyring_password(connection))

    ttl = timedelta(minutes=st.policy.team.lease_minutes)
    with hold(store, persona_id, keys.member_id, _host(), ttl, connect=connect) as lease:
        result = upload_sealed(
            store,
            copy,
            StoreKeys.derive(data_key, persona_id),
            token=lease.token,
            member=keys.member_id,
            host=_host(),
            progress=progress,
            key_version=version,
        )
    if result is not None and result.status == "pending":
        raise EnvironmentProblem(result.problem)
    return generation, (result.blobs_sent if result else 0), (result.bytes_sent if result else 0)


__all__ = ["PushResult", "PushedPersona", "push"]
