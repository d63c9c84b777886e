"""The vault, storage and team layers speak Swedish when the locale is Swedish.

Real parts: the vault on a temporary home with the real keyring (Secret
Service), real sealed files and blob stores, real SQLite, the private
PostgreSQL of the team tests. Under `LANG=C.UTF-8` the same calls give
today's English (tests/conftest.py forces English for the rest of the suite).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths
from outreach_station.errors import (
    DamagedError,
    ExitCode,
    IntegrityError,
    SecurityError,
    StationError,
    UsageError,
)
from outreach_station.storage import problem_for
from outreach_station.storage.postgres import PostgresStore, TeamConnection
from outreach_station.storage.sqlite import SqliteStore
from outreach_station.team import members, sync
from outreach_station.vault import Vault, seal_dir, unseal_file
from tests.team.conftest import TeamDb
from tests.team.test_sync import Laptop, laptops  # noqa: F401 - the two-laptop fixture
from tests.team.test_team_cli import laptop_a  # noqa: F401 - the fixture

PERSONA = "abcdefghijkl"


def _locale(monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    # i18n reads the environment at each call; LC_ALL and LC_MESSAGES win over LANG.
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("LANG", lang)


@pytest.fixture
def swedish(monkeypatch: pytest.MonkeyPatch) -> None:
    _locale(monkeypatch, "sv_SE.UTF-8")


@pytest.fixture
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    _locale(monkeypatch, "C.UTF-8")


@pytest.fixture
def vault(secret_service: None) -> Vault:
    return Vault.init(paths.current())


def _profile(tmp_path: Path) -> Path:
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text('{"homepage": "about:blank"}')
    return profile


def _tampered_sealed_file(tmp_path: Path, vault: Vault) -> Path:
    sealed = tmp_path / "profile.sealed"
    seal_dir(_profile(tmp_path), sealed, vault.ensure_data_key(PERSONA), PERSONA, generation=1)
    data = bytearray(sealed.read_bytes())
    data[-20] ^= 0x01  # one bit in the last chunk's ciphertext
    sealed.write_bytes(bytes(data))
    return sealed


def _refused_unseal(tmp_path: Path, vault: Vault) -> tuple[str, Path]:
    sealed = _tampered_sealed_file(tmp_path, vault)
    dest = tmp_path / "opened"
    dest.mkdir()
    with pytest.raises(IntegrityError) as caught:
        unseal_file(sealed, dest, vault.data_key(PERSONA), PERSONA)
    return str(caught.value), dest


def test_a_tampered_sealed_profile_is_refused_in_swedish(
    tmp_path: Path, vault: Vault, swedish: None
) -> None:
    message, dest = _refused_unseal(tmp_path, vault)
    assert message.startswith(
        f"den förseglade profilen för personan '{PERSONA}' ({tmp_path / 'profile.sealed'}) "
        "klarade inte äkthetskontrollen (block "
    )
    assert message.endswith(
        "den är skadad, avkortad eller ändrad, hör till en annan persona, "
        "eller så är nyckeln fel; ring IT"
    )
    assert "failed" not in message
    assert list(dest.iterdir()) == []  # nothing of the tampered profile was written


def test_a_tampered_sealed_profile_is_refused_in_english_under_c(
    tmp_path: Path, vault: Vault, english: None
) -> None:
    message, dest = _refused_unseal(tmp_path, vault)
    assert message.startswith(
        f"the sealed profile of persona '{PERSONA}' ({tmp_path / 'profile.sealed'}) "
        "failed authentication (chunk "
    )
    assert message.endswith(
        "it is damaged, truncated or altered, belongs to another persona, or the key is wrong"
    )
    assert list(dest.iterdir()) == []


def _rolled_back_server(a: Laptop, db: TeamDb, tmp_path: Path) -> IntegrityError:
    """Generation 2 uploaded, then the server put back to generation 1 (a restored backup)."""
    small = {"Default/Preferences": b'{"marker": "one"}'}
    with a.hold(db) as session:
        a.upload(a.seal(small, tmp_path), session.token)
        a.upload(a.seal({**small, "Default/Bookmarks": b"{}"}, tmp_path), session.token)
    with db.server.admin(db.name) as admin:
        admin.execute(
            "UPDATE current_generations SET generation = 1 WHERE persona_id = %s", (a.persona,)
        )
    with pytest.raises(IntegrityError) as caught:
        sync.fetch(a.server, a.copy, a.keys)
    assert a.registry.sealed_generation(a.persona) == (2, None)  # nothing was changed
    return caught.value


def test_a_server_rolled_back_is_refused_naming_both_generations_in_swedish(
    laptops: tuple[Laptop, Laptop],  # noqa: F811 - the fixture imported above
    team_db: TeamDb,
    tmp_path: Path,
    swedish: None,
) -> None:
    a, _b = laptops
    refused = _rolled_back_server(a, team_db, tmp_path)
    assert str(refused) == (
        f"personan {a.persona}: teamservern 127.0.0.1:{team_db.server.port}/{team_db.name} "
        "erbjuder generation 1, som är äldre än generation 2 som den här datorn redan har "
        "fått därifrån (har servern återställts från en säkerhetskopia?); ingenting "
        "ändrades: ring IT"
    )


def test_a_server_rolled_back_is_refused_naming_both_generations_in_english_under_c(
    laptops: tuple[Laptop, Laptop],  # noqa: F811 - the fixture imported above
    team_db: TeamDb,
    tmp_path: Path,
    english: None,
) -> None:
    a, _b = laptops
    refused = _rolled_back_server(a, team_db, tmp_path)
    assert str(refused) == (
        f"persona {a.persona}: the team server 127.0.0.1:{team_db.server.port}/{team_db.name} "
        "offers generation 1, older than generation 2 this laptop already had from it (was "
        "the server restored from a backup?); nothing was changed: report it to IT"
    )


def test_a_damaged_registry_is_one_swedish_line_and_is_left_as_it_was(
    tmp_path: Path, swedish: None
) -> None:
    registry = tmp_path / "registry.sqlite"
    garbage = b"not a database " * 512
    registry.write_bytes(garbage)
    with pytest.raises(DamagedError) as caught:
        SqliteStore(registry).list()
    assert str(caught.value) == (
        f"registret {registry} är skadat och kan inte läsas; återställ det från en "
        "säkerhetskopia (station skrev inte över något)"
    )
    assert registry.read_bytes() == garbage


def test_a_team_server_error_that_escaped_is_one_line_in_each_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    escaped = psycopg.errors.UniqueViolation("Key (email)=(anna@example.org)")
    _locale(monkeypatch, "sv_SE.UTF-8")
    problem = problem_for(escaped)
    assert isinstance(problem, StationError)
    assert str(problem) == (
        "teamservern svarade med ett fel (UniqueViolation); kontrollera nätverket och försök igen"
    )
    _locale(monkeypatch, "C.UTF-8")
    assert str(problem_for(escaped)) == (
        "the team server failed (UniqueViolation); check the network and try again"
    )


def test_a_wrong_team_password_is_refused_in_swedish_without_the_password(
    team_db: TeamDb,
    swedish: None,
) -> None:
    team_db.owner_store().close()
    wrong = team_db.server.member_password + "-wrong"
    with pytest.raises(SecurityError) as caught:
        PostgresStore(TeamConnection(team_db.url()), password=wrong)
    assert str(caught.value) == (
        f"teamservern 127.0.0.1:{team_db.server.port} godtog inte databaslösenordet; "
        "ring IT och be dem kontrollera rollen, spara sedan rätt lösenord med "
        "station team join"
    )
    assert caught.value.exit_code == ExitCode.SECURITY
    assert wrong not in str(caught.value)


def test_a_member_name_with_control_characters_is_refused_in_each_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    public = secrets.token_bytes(32)

    def join() -> members.Member:
        # A bidi override could make one member's line in a listing look like another's.
        return members.Member.pending(public, display_name="Anna\u202eadmin", host="laptop-7")

    _locale(monkeypatch, "sv_SE.UTF-8")
    with pytest.raises(UsageError) as caught:
        join()
    assert str(caught.value) == (
        "en medlems namn får inte innehålla kontroll- eller formateringstecken"
    )
    _locale(monkeypatch, "C.UTF-8")
    with pytest.raises(UsageError) as caught:
        join()
    assert str(caught.value) == ("a member's name may not contain control or formatting characters")


def test_a_members_status_is_in_swedish_in_text_and_stored_words_in_json(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _locale(monkeypatch, "sv_SE.UTF-8")
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna"])
    assert founded.exit_code == 0, founded.output
    assert "(godkänd)" in founded.stdout
    listed = runner.invoke(["team", "members"])
    assert listed.exit_code == 0, listed.output
    assert "godkänd" in listed.stdout and "approved" not in listed.stdout
    shown = runner.invoke(["team", "status"])
    assert "godkänd" in shown.stdout and "approved" not in shown.stdout
    as_json = runner.invoke(["team", "members", "--json"])
    assert [m["status"] for m in json.loads(as_json.stdout)] == ["approved"]


def test_in_swedish_a_holder_is_named_and_doctor_checks_the_team(
    runner: Any,
    laptop_a: TeamDb,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _locale(monkeypatch, "sv_SE.UTF-8")
    founded = runner.invoke(["team", "init", laptop_a.url(), "--name", "Anna", "--json"])
    assert founded.exit_code == 0, founded.output
    team, member = (json.loads(founded.stdout)[k] for k in ("team_id", "member_id"))
    doctor = runner.invoke(["doctor", "--quick"])
    shown = " ".join(doctor.stdout.split())  # the table wraps long details
    assert f"OK team team {team}, medlem {member} (godkänd); servern svarar" in shown, shown

    made = runner.invoke(["persona", "new", "demo", "--json"])
    assert made.exit_code == 0, made.output
    persona = json.loads(made.stdout)["id"]
    with laptop_a.member_store() as store:
        held = store.acquire_lease(
            persona, member=member, host="laptop-3", ttl=timedelta(minutes=5)
        )
    refused = runner.invoke(["persona", "retire", persona, "--yes"])
    since = held.since.astimezone().strftime("%Y-%m-%d %H:%M")
    assert refused.stderr.strip().splitlines()[-1] == (
        f"station: fel: personan {persona} är öppen hos Anna ({member}) på laptop-3 sedan "
        f"{since}; försök igen när den stängs, eller frigör den med station team unlock om "
        "den datorn har kommit bort"
    )
