"""`station team push`: a laptop's own personas moved into the team, whole, once.

Laptop A is this process (the suite's Secret Service); laptop B is another
station home in a child process with its own keyring (`tests.keyrings`), as
in test_team_open. One private PostgreSQL (`tests.pg`); Chromium only where a
cookie must travel (one start on A, one on B).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from outreach_station import api, paths
from outreach_station.errors import EnvironmentProblem, ExitCode
from outreach_station.storage import open_store
from outreach_station.vault.keys import MASTER_FILE
from tests.fixtures import install_policy
from tests.pg import PgServer
from tests.site import TestSite
from tests.team import test_team_cli
from tests.team.conftest import TeamDb
from tests.team.test_team_cli import ALLOW_JOIN, LaptopB
from tests.team.test_team_open import _B_CLI, _B_OPEN, _join_b, _run_b, leave_crashed_session

laptop_a = test_team_cli.laptop_a
laptop_b = test_team_cli.laptop_b

pytestmark = [pytest.mark.keyring]


def _local_personas() -> dict[str, Any]:
    with open_store(paths.current()) as local:
        return {p.id: p for p in local.list()}


def _pushed_records(team_db: TeamDb) -> list[dict[str, Any]]:
    with team_db.owner_store() as store:
        records = [json.loads(r.record) for r in store.audit_records()]
    return [r for r in records if r["event"] == "team.persona_pushed"]


def _server_rows(team_db: TeamDb) -> dict[str, tuple[Any, ...]]:
    """Every persona row on the server, hidden ones too: id -> (status, moving_in, generations)."""
    with team_db.owner_store() as store:
        rows = store._conn.execute(
            "SELECT p.id, p.status, p.moving_in, "
            "(SELECT count(*) FROM generations g WHERE g.persona_id = p.id) "
            "FROM personas p"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.browser
def test_a_pushes_its_own_personas_b_opens_them_and_a_second_push_does_nothing(
    runner: Any,
    laptop_a: TeamDb,
    *,
    laptop_b: LaptopB,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN)
    value = f"v{secrets.token_hex(8)}"
    seen: dict[str, str] = {}

    async def look(_context: Any, page: Any) -> None:
        seen["cookie"] = await page.evaluate("document.cookie")

    # Before any team: A's own persona, with a cookie set in a real session, a kit
    # detail, and a second (standby) persona of the same platform never opened.
    opened = api.open_platform(
        "site-one",
        url=f"{site.url}set-cookie?v={value}",
        headless=True,
        hook=look,
        close_after_hook=True,
    )
    first = opened.persona.id
    assert f"station_flush={value}" in seen["cookie"]
    kit = runner.invoke(["persona", "kit", first, "--set", "username=anna_outreach"])
    assert kit.exit_code == 0, kit.output
    password = f"pw-{secrets.token_hex(6)}"
    secret = runner.invoke(["persona", "kit", first, "--set-secret", "password"], input=password)
    assert secret.exit_code == 0, secret.output
    proxy = runner.invoke(
        ["persona", "proxy", first, "http://outreach@127.0.0.1:3128"], input=password + "-proxy\n"
    )
    assert proxy.exit_code == 0, proxy.output
    made = runner.invoke(["persona", "new", "site-one"])
    assert made.exit_code == 0, made.output
    second = made.stdout.split()[0]

    a, b = _join_b(runner, laptop_a, laptop_b)
    # Joined: the team's pool is the server's, and A's own personas are not in it yet.
    listed = runner.invoke(["persona", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []

    pushed = runner.invoke(["team", "push", "--json"])
    assert pushed.exit_code == 0, pushed.output
    report = json.loads(pushed.stdout)
    by_id = {p["persona"]: p for p in report["personas"]}
    assert set(by_id) == {first, second}
    assert (by_id[first]["outcome"], by_id[first]["status"]) == ("pushed", "active")
    assert by_id[first]["generation"] == 1
    assert by_id[first]["bytes_sent"] > 0
    assert (by_id[second]["outcome"], by_id[second]["status"]) == ("pushed", "standby")
    assert f"pushing persona {first} (site-one)\n" in pushed.stderr

    with laptop_a.owner_store() as store:
        assert {p.id: p.status for p in store.list()} == {first: "active", second: "standby"}
        assert store.kit_row(first)["username"] == "anna_outreach"  # type: ignore[index]
        # The key is on the server only wrapped, for both approved members.
        assert sorted(w.member_id for w in store.wrapped_keys(first)) == sorted([a, b])
        chunks = b"".join(
            bytes(r[0]) for r in store._conn.execute("SELECT data FROM blob_chunks").fetchall()
        )
        assert chunks
        assert value.encode() not in chunks
    # One record per persona in the team's trail, by A's member.
    records = _pushed_records(laptop_a)
    assert sorted((r["persona"], r["user"]) for r in records) == sorted([(first, a), (second, a)])
    # A's own registry never opens them again: retired, saying where they went.
    local = _local_personas()
    assert {local[first].status, local[second].status} == {"retired"}
    assert local[first].status_reason.startswith("moved to team team-")

    # A second push has nothing to do, says so, and changes nothing on the server.
    before = _server_rows(laptop_a)
    again = runner.invoke(["team", "push"])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("nothing to push: every persona of this laptop is in team ")
    assert _server_rows(laptop_a) == before
    assert len(_pushed_records(laptop_a)) == 2

    # The kit secret went with it: sealed on the server, gone from A's keyring, and
    # A and B both reveal it through the team.
    from outreach_station import secret_store
    from outreach_station.kit import secret_entry
    from outreach_station.network import password_entry, read_password

    left = [
        secret_store.read(entry, what="secret") is not None
        for entry in (secret_entry(first, "password"), password_entry(first))
    ]
    assert left == [False, False]  # both moved out of A's keyring
    with laptop_a.owner_store() as store:
        sealed = store._conn.execute("SELECT field, sealed FROM kit_secrets").fetchall()
        assert sorted(r[0] for r in sealed) == ["password", "proxy-password"]
        assert all(password.encode() not in bytes(r[1]) for r in sealed)
    assert read_password(first) == password + "-proxy"  # through the team, on A
    for shown in (
        runner.invoke(["persona", "kit", first, "--reveal", "password", "--print"]).stdout,
        _run_b(laptop_b, _B_CLI, "persona", "kit", first, "--reveal", "password", "--print").stdout,
    ):
        assert shown.strip() == password
    moved = [r["detail"]["kit_fields_moved"] for r in records if r["persona"] == first]
    assert moved == ["password,proxy-password"]

    # B, an approved member, opens the platform and sees A's cookie.
    b_seen = _run_b(laptop_b, _B_OPEN)
    assert b_seen.returncode == 0, b_seen.stderr
    assert f"station_flush={value}" in b_seen.stdout.strip().splitlines()[-1]
    with laptop_a.owner_store() as store:
        current = store.current_generation(first)
        assert current is not None
        assert (current.generation, current.member) == (2, b)


def _unsealed_file(team_db: TeamDb, persona_id: str, tmp: Path, name: str) -> bytes:
    """The file `name` in the persona's current generation on the server, unsealed here."""
    from outreach_station.context import Station
    from outreach_station.storage.team_blobs import TeamBlobStore
    from outreach_station.team.opening import _team_keys
    from outreach_station.vault.blobs import StoreKeys, read_manifest, unseal_tree

    with Station.load() as st, team_db.member_store() as store:
        key = _team_keys(st, store).ensure_data_key(persona_id)
        current = store.current_generation(persona_id)
        assert current is not None
        keys = StoreKeys.derive(key, persona_id)
        remote = TeamBlobStore(store, persona_id)
        manifest = read_manifest(remote, keys, current.generation)
        tmp.mkdir()
        unseal_tree(remote, keys, manifest, tmp)
    return (tmp / "profile" / name).read_bytes()


def test_a_push_cut_off_by_the_server_stopping_is_continued_and_loses_nothing(
    runner: Any,
    laptop_a: TeamDb,
    pg_server: PgServer,
    platform_dir: Path,
    tmp_path: Path,
) -> None:
    # No browser needed: the first persona was left open by a crashed session (the
    # push seals what it left), the second is sealed in the older one-file format
    # (the push reseals it as blobs); several blobs each.
    from outreach_station.context import Station
    from outreach_station.vault import seal_dir
    from outreach_station.workspace import sealed_file, workspace_dir

    ids = []
    work = {}
    for n in range(2):
        made = runner.invoke(["persona", "new", "site-one"])
        assert made.exit_code == 0, made.output
        persona_id = made.stdout.split()[0]
        work[persona_id] = secrets.token_bytes(3 * 1024 * 1024)
        paths.current().persona_dir(persona_id).mkdir(parents=True, exist_ok=True)
        if n == 0:
            leave_crashed_session(persona_id)
            left = workspace_dir(paths.current(), persona_id) / "profile" / "work.bin"
            left.write_bytes(work[persona_id])
        else:
            (tmp_path / "old" / "profile").mkdir(parents=True)
            (tmp_path / "old" / "profile" / "work.bin").write_bytes(work[persona_id])
            with Station.load() as st, open_store(paths.current()) as local:
                key = st.vault().ensure_data_key(persona_id)
                seal_dir(
                    tmp_path / "old",
                    sealed_file(paths.current(), persona_id),
                    key,
                    persona_id,
                    generation=1,
                )
                local.commit_sealed_generation(persona_id, 1)
        ids.append(persona_id)
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna"])
    assert founded.exit_code == 0, founded.output

    # The server stops after the first blob of the first persona has gone up.
    stop = pg_server.stopped()
    calls: list[tuple[int, int]] = []

    def progress(action: str) -> Any:
        def report(done: int, total: int) -> None:
            if action == "uploading":
                if not calls:
                    stop.__enter__()
                calls.append((done, total))

        return report

    from outreach_station.team.push import push

    try:
        with pytest.raises(EnvironmentProblem) as cut:
            push(progress=progress)
    finally:
        if calls:
            stop.__exit__(None, None, None)
    assert str(cut.value).startswith(f"the push stopped at persona {ids[0]}: ")
    assert "run station team push again when the server is back" in str(cut.value)
    # Nothing half-done is visible: the first is hidden on the server with no
    # generation, the second not there; both are still A's own, unretired.
    rows = _server_rows(laptop_a)
    assert set(rows) == {ids[0]}
    _status, moving_in, generations = rows[ids[0]]
    assert (moving_in is not None, generations) == (True, 0)
    with laptop_a.member_store() as store:
        assert store.list() == []
    assert {p.status for p in _local_personas().values()} == {"active", "standby"}

    resumed = runner.invoke(["team", "push", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert [p["outcome"] for p in json.loads(resumed.stdout)["personas"]] == ["pushed"] * 2
    # Every persona on the server exactly once, one generation each, shown; one record each.
    rows = _server_rows(laptop_a)
    assert sorted(rows) == sorted(ids)
    assert sorted(r[0] for r in rows.values()) == ["active", "standby"]
    assert all(r[1:] == (None, 1) for r in rows.values())
    assert sorted(r["persona"] for r in _pushed_records(laptop_a)) == sorted(ids)
    # What the crashed sessions left is whole on the server.
    for n, persona_id in enumerate(ids):
        assert (
            _unsealed_file(laptop_a, persona_id, tmp_path / f"u{n}", "work.bin")
            == (work[persona_id])
        )


def test_push_outside_a_team_and_with_an_unknown_option_is_refused_with_nothing_written(
    runner: Any, isolation: Path, secret_service: None
) -> None:
    made = runner.invoke(["persona", "new", "demo"])
    assert made.exit_code == 0, made.output
    persona_id = made.stdout.split()[0]
    home = paths.current()
    before = sorted(p.relative_to(home.home) for p in home.home.rglob("*") if p.is_file())
    registry = home.registry.read_bytes()

    unknown = runner.invoke(["team", "push", "--all"])
    assert unknown.exit_code == ExitCode.USAGE
    assert "No such option: --all" in unknown.stderr

    outside = runner.invoke(["team", "push"])
    assert outside.exit_code == ExitCode.STATE
    assert outside.stderr == (
        "station: error: this station home is not in a team, so there is nowhere to push "
        "to; join one first (station team join URL)\n"
    )
    assert sorted(p.relative_to(home.home) for p in home.home.rglob("*") if p.is_file()) == (before)
    assert home.registry.read_bytes() == registry
    assert _local_personas()[persona_id].status == "active"


def test_a_persona_open_on_the_laptop_is_refused_the_others_go_and_it_follows_later(
    runner: Any, laptop_a: TeamDb, platform_dir: Path
) -> None:
    from outreach_station.workspace import persona_lock

    ids = []
    for _n in range(2):
        made = runner.invoke(["persona", "new", "site-one"])
        assert made.exit_code == 0, made.output
        ids.append(made.stdout.split()[0])
    assert runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna"]).exit_code == 0

    with persona_lock(paths.current(), ids[0]):  # a station session has it open here
        busy = runner.invoke(["team", "push"])
    assert busy.exit_code == ExitCode.BUSY, busy.output
    assert f"not pushed: persona {ids[0]} (site-one): persona {ids[0]} is already open in " in (
        busy.stderr
    )
    assert f"pushed persona {ids[1]} (site-one) to team " in busy.stdout
    # The open one is untouched, on the server not even hidden; the other is in.
    assert set(_server_rows(laptop_a)) == {ids[1]}
    assert _local_personas()[ids[0]].status == "active"
    with laptop_a.member_store() as store:
        assert [(p.id, p.status) for p in store.list()] == [(ids[1], "standby")]
    # Meanwhile the team got an active persona of the platform.
    made = runner.invoke(["persona", "new", "site-one"])
    assert made.exit_code == 0, made.output

    # Closed: the next push takes it, as standby, and says why.
    later = runner.invoke(["team", "push", "--json"])
    assert later.exit_code == 0, later.output
    (done,) = json.loads(later.stdout)["personas"]
    assert (done["persona"], done["local_status"], done["status"]) == (ids[0], "active", "standby")
    assert "the team had an active persona of its platform" in done["problem"]
    assert "went in as standby: the team already has an active persona" in later.stderr


PASSPHRASE = "lantern-orchard-7-quiet"


@pytest.mark.browser
def test_a_laptop_in_passphrase_mode_is_asked_once_and_a_wrong_passphrase_sends_nothing(
    runner: Any,
    laptop_a: TeamDb,
    *,
    platform_dir: Path,
    site: TestSite,
    system_policy: Path,
) -> None:
    install_policy(system_policy, ALLOW_JOIN + "[vault]\nallow_passphrase = true\n")
    made = runner.invoke(["init", "--passphrase"], input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert made.exit_code == 0, made.output
    value = f"v{secrets.token_hex(8)}"
    seen: dict[str, str] = {}

    async def look(_context: Any, page: Any) -> None:
        seen["cookie"] = await page.evaluate("document.cookie")

    opened = api.open_platform(
        "site-one",
        url=f"{site.url}set-cookie?v={value}",
        headless=True,
        close_after_hook=True,
        hook=look,
        passphrase_prompt=lambda _purpose: PASSPHRASE,
    )
    first = opened.persona.id
    assert f"station_flush={value}" in seen["cookie"]  # a cookie the push must not show
    standby = runner.invoke(["persona", "new", "site-one"], input=f"{PASSPHRASE}\n")
    assert standby.exit_code == 0, standby.output
    second = standby.stdout.split()[0]
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna"])
    assert founded.exit_code == 0, founded.output

    # A wrong passphrase stops the push before anything is sent or retired.
    wrong = runner.invoke(["team", "push"], input="not-the-passphrase\n")
    assert wrong.exit_code == ExitCode.SECURITY, wrong.output
    assert wrong.stderr.splitlines()[-1].endswith(
        "station: error: wrong passphrase for the master key file "
        f"{paths.current().home / MASTER_FILE} (or the file was altered)"
    )
    assert "not-the-passphrase" not in wrong.stdout + wrong.stderr
    assert _server_rows(laptop_a) == {}
    assert _pushed_records(laptop_a) == []
    assert {p.status for p in _local_personas().values()} == {"active", "standby"}

    # The right one, typed once, moves both personas with the sealed session.
    pushed = runner.invoke(["team", "push", "--json"], input=f"{PASSPHRASE}\n")
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stderr.count("Vault passphrase") == 1
    assert PASSPHRASE not in pushed.stdout + pushed.stderr
    by_id = {p["persona"]: p for p in json.loads(pushed.stdout)["personas"]}
    assert (by_id[first]["outcome"], by_id[first]["generation"]) == ("pushed", 1)
    assert by_id[second]["outcome"] == "pushed"
    assert {p.status for p in _local_personas().values()} == {"retired"}
    with laptop_a.owner_store() as store:
        chunks = b"".join(
            bytes(r[0]) for r in store._conn.execute("SELECT data FROM blob_chunks").fetchall()
        )
    assert chunks and value.encode() not in chunks
