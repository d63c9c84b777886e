"""The rest of a persona's life across laptops: standby pool, kit, status, retention, shredding.

Laptop A is this process (the suite's Secret Service); laptop B is another
station home in a child process with its own keyring (`test_team_open`). One
private PostgreSQL per test; one Chromium start in all (B opens the persona
it promoted).
"""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths
from outreach_station.errors import ExitCode
from outreach_station.storage.postgres import PostgresStore
from tests.fixtures import install_policy
from tests.team import test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB
from tests.team.test_team_open import _B_CLI, _join_b, _run_b

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.keyring]

_PASSWORD = "correct horse battery staple 7"

# Laptop B opens a given persona of site-one headless and closes it at once.
_B_OPEN_PERSONA = """
import os, sys
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from outreach_station import api
async def hook(_context, page):
    await page.evaluate("1")
api.open_platform("site-one", persona_id=sys.argv[1], headless=True, hook=hook,
                  close_after_hook=True, notify=lambda m: print(m, file=sys.stderr))
"""


def _new(runner: Any, *args: str) -> str:
    made = runner.invoke(["persona", "new", "site-one", *args])
    assert made.exit_code == 0, made.output
    return str(made.stdout.split()[0])


def _status(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    (row,) = [r for r in json.loads(done.stdout) if r["platform"] == "site-one"]
    return dict(row)


# Laptop B: the login Playwright would give the persona's proxy; says only whether
# its password is the one expected (a password never goes to the test's output).
_B_PROXY = """
import hashlib, os, sys
from pathlib import Path
from outreach_station import paths
paths.set_test_system_root(Path(os.environ["T_ROOT"]))
from outreach_station import network
setting = network.parse_proxy_url("http://outreach@127.0.0.1:3128")
login = network.playwright_proxy(setting, sys.argv[1])
seen = hashlib.sha256(login["password"].encode()).hexdigest()
print(login["server"], login["username"], seen == sys.argv[2])
"""


def test_a_proxy_password_set_on_a_is_sealed_on_the_server_and_logs_in_on_b(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    from outreach_station import secret_store
    from outreach_station.network import password_entry

    install_policy(system_policy, ALLOW_JOIN)
    _join_b(runner, laptop_a, laptop_b)
    persona = _new(runner)
    proxy = runner.invoke(
        ["persona", "proxy", persona, "http://outreach@127.0.0.1:3128"], input=_PASSWORD + "\n"
    )
    assert proxy.exit_code == 0, proxy.output
    in_keyring = secret_store.read(password_entry(persona), what="proxy password") is not None
    assert not in_keyring  # (a bool: a failure never prints the password)
    with laptop_a.owner_store() as owner:
        rows = owner._conn.execute("SELECT field, sealed FROM kit_secrets").fetchall()
    assert [r[0] for r in rows] == ["proxy-password"]
    assert _PASSWORD.encode() not in bytes(rows[0][1])

    expected = hashlib.sha256(_PASSWORD.encode()).hexdigest()
    login = _run_b(laptop_b, _B_PROXY, persona, expected)
    assert login.returncode == 0, login.stderr
    assert login.stdout.split() == ["http://127.0.0.1:3128", "outreach", "True"]

    cleared = runner.invoke(["persona", "proxy", persona, "--clear"])
    assert cleared.exit_code == 0, cleared.output
    with laptop_a.owner_store() as owner:
        assert owner._conn.execute("SELECT count(*) FROM kit_secrets").fetchone() == (0,)


def test_b_status_counts_as_standby_pool_and_names_who_holds_what(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    a, _b = _join_b(runner, laptop_a, laptop_b)
    active = _new(runner)
    standby = _new(runner, "--standby")
    with laptop_a.member_store() as store:
        held = store.acquire_lease(
            active, member=a, host=socket.gethostname(), ttl=timedelta(minutes=5)
        )

    row = _status(_run_b(laptop_b, _B_CLI, "status", "--json"))
    assert (row["active"], row["standby"]) == (active, 1)
    assert row["open"] == [active]
    assert standby not in row["open"]
    assert row["held"] == [
        {
            "persona": active,
            "member": a,
            "name": "Anna",  # as A joined
            "host": socket.gethostname(),
            "since": held.since.isoformat(),
        }
    ]
    assert row["warnings"] == []
    table = _run_b(laptop_b, _B_CLI, "status")
    assert table.returncode == 0, table.stderr
    # The table names the holder as colleagues know them, by the name they joined with.
    assert f"{active} (Anna on {socket.gethostname()})" in table.stdout


def test_a_kit_secret_is_sealed_on_the_server_and_b_reveals_it(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    a, b = _join_b(runner, laptop_a, laptop_b)
    persona = _new(runner)
    kit = runner.invoke(["persona", "kit", persona, "--set", "username=anna.outreach"])
    assert kit.exit_code == 0, kit.output
    secret = runner.invoke(
        ["persona", "kit", persona, "--set-secret", "password"], input=_PASSWORD + "\n"
    )
    assert secret.exit_code == 0, secret.output

    shown = _run_b(laptop_b, _B_CLI, "persona", "kit", persona, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["username"] == "anna.outreach"
    assert view["secrets"] == {"password": "set", "totp-seed": "not set"}
    revealed = _run_b(
        laptop_b, _B_CLI, "persona", "kit", persona, "--reveal", "password", "--print"
    )
    assert revealed.returncode == 0, revealed.stderr
    assert revealed.stdout.strip() == _PASSWORD
    with laptop_a.owner_store() as owner:
        rows = owner._conn.execute("SELECT * FROM kit_secrets").fetchall()
        # The persona's key was made for the secret, wrapped for both members.
        assert {w.member_id for w in owner.wrapped_keys(persona)} == {a, b}
    # On the server the secret is sealed: one row, no plaintext in it; not in A's keyring.
    assert len(rows) == 1
    assert _PASSWORD.encode() not in repr(rows).encode()
    assert _PASSWORD not in repr(rows)
    from outreach_station import secret_store
    from outreach_station.kit import secret_entry

    assert secret_store.read(secret_entry(persona, "password"), what="password") is None

    # A sealed secret moved to another persona's row is refused, loudly, never shown.
    other = _new(runner, "--standby")
    seed = runner.invoke(
        ["persona", "kit", other, "--set-secret", "totp-seed"], input="JBSWY3DPEHPK3PXP\n"
    )
    assert seed.exit_code == 0, seed.output
    with laptop_a.owner_store() as owner:
        owner._conn.execute(
            "INSERT INTO kit_secrets (persona_id, field, key_version, sealed) "
            "SELECT %s, field, key_version, sealed FROM kit_secrets WHERE persona_id = %s",
            (other, persona),
        )
    moved = runner.invoke(["persona", "kit", other, "--reveal", "password", "--print"])
    assert moved.exit_code == ExitCode.INTEGRITY, moved.output
    assert _PASSWORD not in moved.output
    assert moved.stderr.strip().splitlines()[-1] == (
        f"station: error: the password of persona {other} on the team server does not "
        "authenticate; it was changed outside station: report it to IT"
    )


@pytest.mark.browser
def test_b_rotates_to_as_standby_opens_it_and_a_retire_shreds_it_everywhere(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    a, b = _join_b(runner, laptop_a, laptop_b)
    first = _new(runner)
    standby = _new(runner, "--standby")

    rotated = _run_b(
        laptop_b, _B_CLI, "rotate", "site-one", "--reason", "blocked", "--yes", "--json"
    )
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["active"] == standby
    opened = _run_b(laptop_b, _B_OPEN_PERSONA, standby)
    assert opened.returncode == 0, opened.stderr
    b_cache = laptop_b.root / "home" / "personas" / standby
    assert any(b_cache.rglob("*")), "B keeps a sealed copy"
    with laptop_a.member_store() as store:
        assert {w.member_id for w in store.wrapped_keys(standby)} == {a, b}
        assert store.current_generation(standby) is not None
        held = store.acquire_lease(standby, member=b, host="laptop-b", ttl=timedelta(minutes=5))

    refused = runner.invoke(["persona", "retire", standby, "--yes"])
    assert refused.exit_code == ExitCode.BUSY, refused.output
    since = held.since.astimezone().strftime("%Y-%m-%d %H:%M")
    assert refused.stderr.strip().splitlines()[-1] == (
        f"station: error: persona {standby} is open by Bo ({b}) on laptop-b since "
        f"{since}; "
        "try again when they close it, or free it with station team unlock if that laptop "
        "is lost"
    )
    with laptop_a.member_store() as store:
        assert store.get(standby).status == "active"
        assert len(store.wrapped_keys(standby)) == 2
        assert store.release_lease(standby, held.token)

    retired = runner.invoke(["persona", "retire", standby, "--yes", "--json"])
    assert retired.exit_code == 0, retired.output
    assert json.loads(retired.stdout)["key_destroyed"] is True
    with laptop_a.owner_store() as store:
        conn = store._conn
        for table in (
            "wrapped_keys",
            "blobs",
            "blob_chunks",
            "generations",
            "current_generations",
            "kit_secrets",
        ):
            (count,) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE persona_id = %s",  # noqa: S608
                (standby,),
            ).fetchone()
            assert count == 0, table
        assert store.get(standby).status == "retired"
        trail = [json.loads(r.record) for r in store.audit_records()]
    shredded = [r for r in trail if r["event"] == "persona.shredded"]
    assert [r["persona"] for r in shredded] == [standby]
    assert shredded[0]["detail"]["crypto_shredded"] is True

    # B still caches the sealed copy until its next use of the station.
    assert any(b_cache.rglob("*"))
    status = _run_b(laptop_b, _B_CLI, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert f"persona {standby} was retired in the team" in status.stderr
    assert not b_cache.exists()
    assert first != standby
    assert paths.current().persona_dir(standby).exists() is False


def test_retention_in_a_team_waits_for_the_holder_then_shreds_on_the_server(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    from datetime import datetime

    from outreach_station import lifecycle

    install_policy(system_policy, ALLOW_JOIN + "[retention]\nblocked_days = 1\n")
    a, b = _join_b(runner, laptop_a, laptop_b)
    persona = _new(runner)
    secret = runner.invoke(
        ["persona", "kit", persona, "--set-secret", "password"], input=_PASSWORD + "\n"
    )
    assert secret.exit_code == 0, secret.output
    rotated = runner.invoke(["rotate", "site-one", "--reason", "blocked", "--yes"])
    assert rotated.exit_code == 0, rotated.output
    later = datetime.now(UTC) + timedelta(days=2)
    with laptop_a.member_store() as store:
        assert store.get(persona).status == "blocked"
        assert {w.member_id for w in store.wrapped_keys(persona)} == {a, b}
        held = store.acquire_lease(persona, member=b, host="laptop-b", ttl=timedelta(minutes=5))

    # Held on another laptop (evidence being looked at): left for the next time.
    assert lifecycle.enforce_retention(now=later) == []
    with laptop_a.member_store() as store:
        assert store.get(persona).status == "blocked"
        assert len(store.wrapped_keys(persona)) == 2
        assert store.kit_secret_fields(persona) == {"password"}
        assert store.release_lease(persona, held.token)

    (done,) = lifecycle.enforce_retention(now=later)
    assert (done.persona.id, done.persona.status, done.key_destroyed) == (persona, "retired", True)
    with laptop_a.member_store() as store:
        assert store.wrapped_keys(persona) == []
        assert store.kit_secret_fields(persona) == set()
        assert store.lease(persona) is None
        trail = [json.loads(r.record) for r in store.audit_records()]
    retired = [r for r in trail if r["event"] == "persona.retired"]
    assert [(r["persona"], r["detail"]["why"]) for r in retired] == [(persona, "retention")]
    # A second laptop's retention finds nothing left to do.
    assert lifecycle.enforce_retention(now=later) == []


def test_a_sealed_kit_secret_is_bound_to_its_team_persona_field_and_key_version() -> None:
    import os

    from outreach_station.errors import IntegrityError
    from outreach_station.team.kit_secrets import open_secret, seal_secret

    key = os.urandom(32)
    where = {"team_id": "team-a", "persona_id": "aaaaaaaaaaaa", "field": "password"}
    sealed = seal_secret(key, _PASSWORD, key_version=1, **where)
    assert _PASSWORD.encode() not in sealed
    assert open_secret(key, sealed, key_version=1, **where) == _PASSWORD
    for changed in (
        {"team_id": "team-b"},
        {"persona_id": "bbbbbbbbbbbb"},
        {"field": "totp-seed"},
    ):
        with pytest.raises(IntegrityError):
            open_secret(key, sealed, key_version=1, **{**where, **changed})
    with pytest.raises(IntegrityError):
        open_secret(key, sealed, key_version=2, **where)
    with pytest.raises(IntegrityError):
        open_secret(os.urandom(32), sealed, key_version=1, **where)


def test_after_a_removal_the_re_key_seals_the_kit_secrets_again_with_the_new_key(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    system_policy: Path,
) -> None:
    from outreach_station.context import Station
    from outreach_station.errors import IntegrityError
    from outreach_station.team.kit_secrets import open_secret
    from outreach_station.team.opening import _team_keys, team_store

    install_policy(system_policy, ALLOW_JOIN)
    _a, b = _join_b(runner, laptop_a, laptop_b)
    persona = _new(runner)
    secret = runner.invoke(
        ["persona", "kit", persona, "--set-secret", "password"], input=_PASSWORD + "\n"
    )
    assert secret.exit_code == 0, secret.output
    with Station.load() as st:
        store = team_store(st)
        assert store is not None
        old_key = _team_keys(st, store).key_of_version(persona, 1)
    removed = runner.invoke(["team", "remove", b])
    assert removed.exit_code == 0, removed.output

    # What the persona's next open does first, under its lease.
    with Station.load() as st:
        store = team_store(st)
        assert store is not None
        rekeyed = _team_keys(st, store).start_rekey(persona)
        assert rekeyed is not None
        record = store.kit_secret(persona, "password")
        assert record is not None
        team_id = store.team_id() or ""
        assert b not in {w.member_id for w in store.wrapped_keys(persona) if w.key_version == 2}
    assert (rekeyed.key_version, record.key_version) == (2, 2)
    # The key B held opens nothing of it any more; A still reveals it.
    with pytest.raises(IntegrityError):
        open_secret(
            old_key,
            record.sealed,
            team_id=team_id,
            persona_id=persona,
            field="password",
            key_version=2,
        )
    revealed = runner.invoke(["persona", "kit", persona, "--reveal", "password", "--print"])
    assert revealed.exit_code == 0, revealed.output
    assert revealed.stdout.strip() == _PASSWORD


class _ReadBeforeTheOtherWrote:
    """The server as a laptop saw it when it read a persona's wraps a moment too early."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._stale = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def wrapped_keys(self, persona_id: str, **kwargs: Any) -> list[Any]:
        if self._stale:
            self._stale = False
            return []
        return self._store.wrapped_keys(persona_id, **kwargs)


def test_two_laptops_making_a_personas_first_key_at_once_agree_on_one(
    team_db: TeamDb, pg_store: PostgresStore
) -> None:
    from outreach_station.errors import StateError
    from tests.team.test_team_keys_open import _team, team_keys

    a, b = _team(team_db, pg_store, "approved", "approved")
    persona = pg_store.create("demo", fingerprint={})
    made = team_keys(pg_store, a, a).ensure_data_key(persona.id)
    wraps = pg_store.wrapped_keys(persona.id)

    # B read "no key yet" before A stored its key (e.g. both set a kit secret at once).
    late = team_keys(_ReadBeforeTheOtherWrote(pg_store), b, a)  # type: ignore[arg-type]
    assert late.ensure_data_key(persona.id) == made
    assert pg_store.wrapped_keys(persona.id) == wraps  # A's wraps stand, untouched

    # A shredded persona never gets a key again.
    retired = pg_store.create("demo", fingerprint={})
    pg_store.transition(retired.id, "retired", reason="test")
    with pytest.raises(StateError, match="is retired; its keys were destroyed"):
        team_keys(pg_store, a, a).ensure_data_key(retired.id)
    assert pg_store.wrapped_keys(retired.id) == []


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("sv_SE.UTF-8", "password för persona aaaaaaaaaaaa på teamservern går inte att bekräfta"),
        ("C.UTF-8", "the password of persona aaaaaaaaaaaa on the team server does not"),
    ],
)
def test_a_kit_secret_that_does_not_authenticate_is_told_in_the_persons_language(
    monkeypatch: pytest.MonkeyPatch, lang: str, words: str
) -> None:
    import os

    from outreach_station.errors import IntegrityError
    from outreach_station.team.kit_secrets import open_secret, seal_secret
    from tests.team.test_i18n_store import _locale

    _locale(monkeypatch, lang)
    where = {"team_id": "team-a", "persona_id": "aaaaaaaaaaaa", "field": "password"}
    sealed = seal_secret(os.urandom(32), _PASSWORD, key_version=1, **where)
    with pytest.raises(IntegrityError) as refused:
        open_secret(os.urandom(32), sealed, key_version=1, **where)
    assert words in str(refused.value)
    assert _PASSWORD not in str(refused.value)
