"""Member keys in the real Secret Service and persona data keys wrapped for members (HPKE).

Laptops are separate station homes with separate keyrings: laptop A is this
process (the suite's Secret Service), laptops B and C each run in their own
D-Bus session with their own gnome-keyring (`tests.keyrings`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from outreach_station import secret_store
from outreach_station.errors import (
    EnvironmentProblem,
    ExitCode,
    IntegrityError,
    NotFoundError,
    SecurityError,
    StateError,
    StationError,
    UsageError,
)
from outreach_station.paths import StationPaths
from outreach_station.team import (
    Member,
    MemberKey,
    MemberStatus,
    WrappedKey,
    approve,
    ensure_member_key,
    forget_member_key,
    load_member_key,
    member_key_entry,
    new_data_key,
    rekey,
    remove,
    unwrap_data_key,
    wrap_data_key,
    wrap_for_members,
)
from outreach_station.vault import Vault, read_settings
from tests.keyrings import run_code_in_private_keyring

TEAM = "clinic-south"
PERSONA = "abcdefghijkl"
OTHER_PERSONA = "mnopqrstuvwx"


@pytest.fixture
def home(isolation: Path, secret_service: None) -> Iterator[StationPaths]:
    """Laptop A's station home, vault initialised; its team keys are removed afterwards."""
    paths = StationPaths(home=isolation)
    Vault.init(paths)
    yield paths
    settings = read_settings(paths)
    assert settings is not None
    for team in (TEAM, "clinic-north"):
        forget_member_key(paths, team)


def _encodings(secret: bytes) -> list[bytes]:
    """The ways a 32-byte key could end up written: raw, hex, base64, base32."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        base64.b32encode(secret).rstrip(b"="),
        base64.b32encode(secret).lower().rstrip(b"="),
    ]


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(form in data for form in _encodings(secret)):
                found.append(path)
    return found


def _private(key: MemberKey) -> bytes:
    return key._raw_private()  # the test needs the secret to look for it


def _team(*keys: MemberKey) -> list[Member]:
    """Approved members for `keys` (the first founds the team and approves the others)."""
    founder = Member.founder(keys[0].public_key, display_name="Worker 0", host="laptop-0")
    roster = [founder]
    for n, key in enumerate(keys[1:], start=1):
        roster.append(Member.pending(key.public_key, display_name=f"Worker {n}", host=f"l-{n}"))
        approved = approve(
            roster,
            approver_id=founder.member_id,
            member_id=roster[-1].member_id,
            team_id=TEAM,
            confirm=lambda member, code: True,
        )
        roster[-1] = approved
    return roster


# -- the member key in the OS keyring -------------------------------------------


@pytest.mark.keyring
def test_member_key_is_made_once_per_home_and_team_and_lives_only_in_the_keyring(
    home: StationPaths, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match=f"no member key for team {TEAM}"):
        load_member_key(home, TEAM)
    key = ensure_member_key(home, TEAM)
    assert ensure_member_key(home, TEAM).public_key == key.public_key
    assert load_member_key(home, TEAM).member_id == key.member_id
    settings = read_settings(home)
    assert settings is not None
    entry = member_key_entry(settings.station_id, TEAM)
    assert entry == f"team-member-key/{settings.station_id}/{TEAM}"
    stored = keyring.get_password(secret_store.SERVICE, entry)
    assert stored is not None and base64.b64decode(stored) == _private(key)
    # Another team gets another key, in its own entry.
    other = ensure_member_key(home, "clinic-north")
    assert other.public_key != key.public_key and other.member_id != key.member_id
    # Nothing under the test's whole directory (station home included) holds
    # the private key in any encoding, nor does the key's repr.
    (home.home / "scan-control").write_bytes(_private(key).hex().encode())
    assert _files_holding(tmp_path, _private(key)) == [home.home / "scan-control"]
    (home.home / "scan-control").unlink()
    assert _files_holding(tmp_path, _private(key)) == []
    assert _files_holding(tmp_path, _private(other)) == []
    for form in _encodings(_private(key)):
        assert form.decode("latin-1") not in repr(key)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)
    assert forget_member_key(home, TEAM) is True
    assert forget_member_key(home, TEAM) is False
    with pytest.raises(NotFoundError):
        load_member_key(home, TEAM)


@pytest.mark.keyring
def test_two_station_homes_get_separate_keys(home: StationPaths, tmp_path: Path) -> None:
    second = StationPaths(home=tmp_path / "second-home")
    Vault.init(second)
    try:
        assert ensure_member_key(second, TEAM).member_id != ensure_member_key(home, TEAM).member_id
    finally:
        forget_member_key(second, TEAM)
        settings = read_settings(second)
        assert settings is not None
        secret_store.delete(settings.keyring_entry, what="master key")


JOIN_SCRIPT = """
import sys
from outreach_station import paths
from outreach_station.team import ensure_member_key
sys.stdin.read(1)  # all start together
print(ensure_member_key(paths.current(), sys.argv[1]).member_id)
"""


@pytest.mark.keyring
def test_concurrent_first_joins_on_one_home_make_one_key(home: StationPaths) -> None:
    env = {**os.environ, "STATION_HOME": str(home.home)}
    joins = [
        subprocess.Popen(
            [sys.executable, "-c", JOIN_SCRIPT, TEAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    for join in joins:
        assert join.stdin is not None
        join.stdin.write("go")
        join.stdin.close()
    results = []
    for join in joins:
        assert join.stdout is not None and join.stderr is not None
        results.append((join.stdout.read(), join.stderr.read()))
        join.wait(timeout=60)
    assert [join.returncode for join in joins] == [0] * 6, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {load_member_key(home, TEAM).member_id}


def test_a_home_without_a_vault_is_told_to_init_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    bare = StationPaths(home=tmp_path / "bare")
    with pytest.raises(StateError, match="station init") as caught:
        ensure_member_key(bare, TEAM)
    assert caught.value.exit_code == ExitCode.STATE
    assert not bare.home.exists()


@pytest.mark.parametrize("team", ["", "../x", "a b", "x" * 65, "team/one"])
def test_malformed_team_ids_are_refused(team: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="malformed team id"):
        MemberKey.generate(team)
    with pytest.raises(UsageError, match="malformed team id"):
        member_key_entry("0123456789abcdef", team)


def test_no_keyring_is_a_clear_error_and_writes_nothing(isolation: Path, no_keyring: None) -> None:
    paths = StationPaths(home=isolation)
    paths.home.mkdir()
    # A vault settings file as `station init` in passphrase mode leaves it.
    (paths.home / "vault.json").write_text(
        json.dumps({"format": 1, "mode": "passphrase", "station_id": "0123456789abcdef"})
    )
    before = sorted(p.relative_to(paths.home) for p in paths.home.rglob("*"))
    with pytest.raises(EnvironmentProblem, match="no usable OS keyring") as caught:
        ensure_member_key(paths, TEAM)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    assert sorted(p.relative_to(paths.home) for p in paths.home.rglob("*")) == before


LOCKED_SCRIPT = r"""
import json, secretstorage
from outreach_station import paths
from outreach_station.errors import StationError
from outreach_station.team import ensure_member_key
from outreach_station.vault import Vault

Vault.init()
connection = secretstorage.dbus_init()
collection = secretstorage.get_default_collection(connection)
before = len(list(collection.get_all_items()))
collection.lock()
try:
    ensure_member_key(paths.current(), "clinic-south")
    result = {"raised": None}
except StationError as exc:
    result = {"raised": type(exc).__name__, "message": str(exc), "code": int(exc.exit_code)}
result["before"] = before
result["after"] = len(list(collection.get_all_items()))
print(json.dumps(result))
"""


@pytest.mark.keyring
def test_locked_keyring_is_a_clear_error_and_creates_no_key(tmp_path: Path) -> None:
    done = run_code_in_private_keyring(tmp_path, LOCKED_SCRIPT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["raised"] == "EnvironmentProblem", result
    assert result["code"] == ExitCode.ENVIRONMENT
    assert "locked" in result["message"] and "unlock" in result["message"].lower()
    assert "\n" not in result["message"]
    assert result["after"] == result["before"] == 1  # the master key only


# -- two laptops, separate keyrings -----------------------------------------------

LAPTOP_SCRIPT = r"""
import base64, hashlib, json, pathlib
from outreach_station import paths
from outreach_station.errors import StationError
from outreach_station.team import WrappedKey, ensure_member_key, unwrap_data_key
from outreach_station.vault import Vault

Vault.init()
key = ensure_member_key(paths.current(), TEAM)
secret = key._raw_private()
forms = [secret, secret.hex().encode(), base64.b64encode(secret)]
home = paths.current().home
files = [p for p in home.rglob("*") if p.is_file()]
leaked = [str(p) for p in files if any(f in p.read_bytes() for f in forms)]
out = {"public_key": key.public_key.hex(), "member_id": key.member_id, "leaked": leaked,
       "results": []}
for row in json.loads(pathlib.Path(WRAPS).read_text()):
    wrapped = WrappedKey(
        persona_id=row["persona_id"], member_id=row["member_id"],
        key_version=row["key_version"], sealed=bytes.fromhex(row["sealed"]),
    )
    try:
        data_key = unwrap_data_key(
            wrapped, key, persona_id=row["persona_id"], key_version=row["key_version"]
        )
        out["results"].append({"ok": hashlib.sha256(data_key).hexdigest()})
    except StationError as exc:
        msg = str(exc)
        out["results"].append({"error": type(exc).__name__, "message": msg,
                               "key_in_message": any(f.decode("latin-1") in msg for f in forms)})
print(json.dumps(out))
"""


class Laptop:
    """Another laptop: its own station home and keyring, below its own directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.wraps_file = root / "wraps.json"
        self.wraps_file.write_text("[]")
        self.public_key = b""
        self.member_id = ""

    def run(self, wraps: list[WrappedKey]) -> list[dict[str, object]]:
        """Unwrap each of `wraps` on this laptop; the digest of each key, or the refusal."""
        rows = [
            {
                "persona_id": w.persona_id,
                "member_id": w.member_id,
                "key_version": w.key_version,
                "sealed": w.sealed.hex(),
            }
            for w in wraps
        ]
        self.wraps_file.write_text(json.dumps(rows))
        code = LAPTOP_SCRIPT.replace("TEAM", repr(TEAM)).replace(
            "WRAPS", repr(str(self.wraps_file))
        )
        done = run_code_in_private_keyring(self.root, code)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["leaked"] == []
        if self.member_id:
            assert out["member_id"] == self.member_id  # the key stayed in its keyring
        self.public_key = bytes.fromhex(out["public_key"])
        self.member_id = out["member_id"]
        results: list[dict[str, object]] = out["results"]
        return results


def _digest(data_key: bytes) -> str:
    return hashlib.sha256(data_key).hexdigest()


@pytest.mark.keyring
def test_two_laptops_share_a_persona_key_and_a_pending_or_removed_one_cannot_read_it(
    home: StationPaths, tmp_path: Path
) -> None:
    a_key = ensure_member_key(home, TEAM)
    laptop_b = Laptop(tmp_path / "laptop-b")
    laptop_c = Laptop(tmp_path / "laptop-c")
    laptop_b.run([])  # join: B's key is made in B's keyring
    laptop_c.run([])
    a = Member.founder(a_key.public_key, display_name="Anna", host="laptop-a")
    b = Member.pending(laptop_b.public_key, display_name="Britt", host="laptop-b")
    c = Member.pending(laptop_c.public_key, display_name="Cecilia", host="laptop-c")
    shown: list[str] = []

    def confirm(member: Member, code: str) -> bool:
        shown.append(code)
        return True

    b = approve(
        [a, b, c], approver_id=a_key.member_id, member_id=b.member_id, team_id=TEAM, confirm=confirm
    )
    assert shown == [b.safety_code(TEAM)]
    roster = [a, b, c]  # C stays pending

    data_key = new_data_key()
    wraps = wrap_for_members(roster, data_key, team_id=TEAM, persona_id=PERSONA, key_version=1)
    assert sorted(w.member_id for w in wraps) == sorted([a.member_id, b.member_id])
    by_member = {w.member_id: w for w in wraps}
    assert unwrap_data_key(by_member[a.member_id], a_key, persona_id=PERSONA, key_version=1) == (
        data_key
    )
    # B unwraps its own wrap on its own laptop; A's wrap is refused there.
    got = laptop_b.run([by_member[b.member_id], by_member[a.member_id]])
    assert got[0] == {"ok": _digest(data_key)}
    assert got[1]["error"] == "SecurityError"
    # C, pending, has no wrap: every wrap there is, even relabelled as C's, is refused.
    relabelled = [dataclasses.replace(w, member_id=laptop_c.member_id) for w in wraps]
    got = laptop_c.run(list(wraps) + relabelled)
    assert [r["error"] for r in got] == ["SecurityError"] * 2 + ["IntegrityError"] * 2
    assert not any(r["key_in_message"] for r in got)
    with pytest.raises(SecurityError, match="only for approved members"):
        wrap_data_key(data_key, member=c, team_id=TEAM, persona_id=PERSONA, key_version=1)

    # B is removed; the persona is re-keyed at its next seal.
    removed_b = remove(roster, remover_id=a_key.member_id, member_id=b.member_id)
    roster = [a, removed_b, c]
    new_key = new_data_key()
    rekeyed = rekey(
        roster, team_id=TEAM, persona_id=PERSONA, old_key=data_key, old_version=1, new_key=new_key
    )
    assert rekeyed.key_version == 2
    assert [w.member_id for w in rekeyed.wraps] == [a.member_id]
    assert unwrap_data_key(rekeyed.wraps[0], a_key, persona_id=PERSONA, key_version=2) == new_key
    stolen = [dataclasses.replace(w, member_id=removed_b.member_id) for w in rekeyed.wraps]
    got = laptop_b.run(list(rekeyed.wraps) + stolen + [by_member[b.member_id]])
    assert got[0]["error"] == "SecurityError"
    assert got[1]["error"] == "IntegrityError"
    assert all(_digest(new_key) not in str(r) for r in got)
    # What removal cannot undo (docs/team.md): the wrap B held before its
    # removal still opens the old key, and with it every generation sealed then.
    assert got[2] == {"ok": _digest(data_key)}


# -- tampering and moving wraps ----------------------------------------------------


@pytest.fixture
def pair() -> tuple[MemberKey, Member]:
    key = MemberKey.generate(TEAM)
    return key, Member.founder(key.public_key, display_name="Anna", host="laptop-a")


def test_a_wrap_is_bound_to_its_persona_member_version_and_team(
    pair: tuple[MemberKey, Member],
) -> None:
    key, member = pair
    data_key = new_data_key()
    wrapped = wrap_data_key(
        data_key, member=member, team_id=TEAM, persona_id=PERSONA, key_version=3
    )
    assert unwrap_data_key(wrapped, key, persona_id=PERSONA, key_version=3) == data_key
    # Served under another persona or version, the labels give it away ...
    for persona, version in ((OTHER_PERSONA, 3), (PERSONA, 2), (PERSONA, 4)):
        with pytest.raises(SecurityError, match="refusing it") as caught:
            unwrap_data_key(wrapped, key, persona_id=persona, key_version=version)
        assert caught.value.exit_code == ExitCode.SECURITY
    # ... and relabelled to match, authentication does.
    for persona, version in ((OTHER_PERSONA, 3), (PERSONA, 2), (PERSONA, 4)):
        moved = dataclasses.replace(wrapped, persona_id=persona, key_version=version)
        with pytest.raises(IntegrityError, match="failed authentication") as caught_moved:
            unwrap_data_key(moved, key, persona_id=persona, key_version=version)
        assert caught_moved.value.exit_code == ExitCode.INTEGRITY
    # The same laptop's key of another team cannot open this team's wraps.
    other_team = MemberKey("clinic-north", _private(key))  # the same key pair, another team's label
    with pytest.raises(IntegrityError, match="failed authentication"):
        unwrap_data_key(wrapped, other_team, persona_id=PERSONA, key_version=3)
    # Another member's key, the wrap relabelled for it.
    thief = MemberKey.generate(TEAM)
    with pytest.raises(SecurityError, match="not this laptop's"):
        unwrap_data_key(wrapped, thief, persona_id=PERSONA, key_version=3)
    with pytest.raises(IntegrityError, match="failed authentication"):
        unwrap_data_key(
            dataclasses.replace(wrapped, member_id=thief.member_id),
            thief,
            persona_id=PERSONA,
            key_version=3,
        )


def test_two_wraps_swapped_between_personas_are_refused(pair: tuple[MemberKey, Member]) -> None:
    key, member = pair
    first = wrap_data_key(
        new_data_key(), member=member, team_id=TEAM, persona_id=PERSONA, key_version=1
    )
    second = wrap_data_key(
        new_data_key(), member=member, team_id=TEAM, persona_id=OTHER_PERSONA, key_version=1
    )
    swapped_first = dataclasses.replace(first, sealed=second.sealed)
    swapped_second = dataclasses.replace(second, sealed=first.sealed)
    with pytest.raises(IntegrityError):
        unwrap_data_key(swapped_first, key, persona_id=PERSONA, key_version=1)
    with pytest.raises(IntegrityError):
        unwrap_data_key(swapped_second, key, persona_id=OTHER_PERSONA, key_version=1)


def test_every_flipped_byte_and_every_truncation_is_refused(pair: tuple[MemberKey, Member]) -> None:
    key, member = pair
    data_key = new_data_key()
    wrapped = wrap_data_key(
        data_key, member=member, team_id=TEAM, persona_id=PERSONA, key_version=1
    )
    secret_forms = [f.decode("latin-1") for f in _encodings(_private(key)) + _encodings(data_key)]
    messages = set()
    for index in range(len(wrapped.sealed)):
        sealed = bytearray(wrapped.sealed)
        sealed[index] ^= 0x01
        with pytest.raises(IntegrityError) as caught:
            unwrap_data_key(
                dataclasses.replace(wrapped, sealed=bytes(sealed)),
                key,
                persona_id=PERSONA,
                key_version=1,
            )
        messages.add(str(caught.value))
    for cut in (0, 1, 8, 40, len(wrapped.sealed) - 1):
        with pytest.raises(IntegrityError) as caught:
            unwrap_data_key(
                dataclasses.replace(wrapped, sealed=wrapped.sealed[:cut]),
                key,
                persona_id=PERSONA,
                key_version=1,
            )
        messages.add(str(caught.value))
    with pytest.raises(IntegrityError):
        unwrap_data_key(
            dataclasses.replace(wrapped, sealed=wrapped.sealed + b"\x00"),
            key,
            persona_id=PERSONA,
            key_version=1,
        )
    for message in messages:
        assert "\n" not in message
        assert PERSONA in message and key.member_id in message
        assert not any(form in message for form in secret_forms)
    assert wrapped.sealed.hex() not in repr(wrapped)
    assert not any(form in repr(key) for form in secret_forms)
    assert repr(key) == f"MemberKey(team={TEAM!r}, member={key.member_id!r})"


def test_no_error_of_the_team_keys_quotes_key_material(pair: tuple[MemberKey, Member]) -> None:
    key, member = pair
    data_key = new_data_key()
    forms = [f.decode("latin-1") for f in _encodings(_private(key)) + _encodings(data_key)]
    raised: list[StationError] = []
    attempts = [
        lambda: wrap_data_key(
            data_key[:31], member=member, team_id=TEAM, persona_id=PERSONA, key_version=1
        ),
        lambda: wrap_data_key(
            data_key, member=member, team_id=TEAM, persona_id="../x", key_version=1
        ),
        lambda: wrap_data_key(
            data_key, member=member, team_id=TEAM, persona_id=PERSONA, key_version=0
        ),
        lambda: rekey(
            [member],
            team_id=TEAM,
            persona_id=PERSONA,
            old_key=data_key,
            old_version=1,
            new_key=data_key,
        ),
        lambda: rekey(
            [dataclasses.replace(member, status=MemberStatus.REMOVED)],
            team_id=TEAM,
            persona_id=PERSONA,
            old_key=data_key,
            old_version=1,
            new_key=new_data_key(),
        ),
    ]
    for attempt in attempts:
        with pytest.raises(StationError) as caught:
            attempt()
        raised.append(caught.value)
    assert [type(e) for e in raised] == [
        UsageError,
        UsageError,
        UsageError,
        SecurityError,
        StateError,
    ]
    for error in raised:
        assert not any(form in str(error) for form in forms)
        assert not any(form in repr(error) for form in forms)


def test_rekey_makes_the_next_version_for_approved_members_only(
    pair: tuple[MemberKey, Member],
) -> None:
    key, member = pair
    pending = Member.pending(MemberKey.generate(TEAM).public_key, display_name="New", host="l")
    old, new = new_data_key(), new_data_key()
    result = rekey(
        [member, pending], team_id=TEAM, persona_id=PERSONA, old_key=old, old_version=7, new_key=new
    )
    assert (result.persona_id, result.key_version) == (PERSONA, 8)
    assert [w.member_id for w in result.wraps] == [member.member_id]
    assert unwrap_data_key(result.wraps[0], key, persona_id=PERSONA, key_version=8) == new
    with pytest.raises(IntegrityError):
        unwrap_data_key(
            dataclasses.replace(result.wraps[0], key_version=7),
            key,
            persona_id=PERSONA,
            key_version=7,
        )
