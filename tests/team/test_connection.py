"""Connecting to the team's server: libpq URLs, the password from the keyring, one-line errors."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach_station import paths, secret_store
from outreach_station.errors import (
    EnvironmentProblem,
    ExitCode,
    SecurityError,
    StationError,
    UsageError,
)
from outreach_station.storage import open_store, problem_for
from outreach_station.storage.postgres import (
    PostgresStore,
    TeamConnection,
    keyring_password,
    password_entry,
)
from outreach_station.storage.sqlite import SqliteStore
from tests.team.conftest import TeamDb


def _texts(exc: BaseException) -> str:
    """Everything an exception could show: its text, repr, and every chained one."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        seen += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(seen)


def test_a_wrong_password_is_refused_without_echoing_it(team_db: TeamDb) -> None:
    team_db.owner_store().close()
    wrong = team_db.server.member_password + "-wrong"
    with pytest.raises(SecurityError) as caught:
        PostgresStore(TeamConnection(team_db.url()), password=wrong)
    assert str(caught.value) == (
        f"the team server 127.0.0.1:{team_db.server.port} refused the database password; "
        "ask IT to check the role, then store the right password with station team join"
    )
    assert caught.value.exit_code == ExitCode.SECURITY
    assert wrong not in _texts(caught.value)


def test_an_unreachable_server_names_host_port_and_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nothing answers there
        with pytest.raises(EnvironmentProblem) as caught:
            PostgresStore(
                TeamConnection(f"postgresql://station@127.0.0.1:{port}/station"),
                password="s3cret-never-shown",
            )
    assert str(caught.value) == (
        f"cannot reach the team server at 127.0.0.1:{port}; check the network (VPN) and that "
        "the server is running, then try again (a persona cannot be opened without it)"
    )
    assert "s3cret-never-shown" not in _texts(caught.value)


def test_a_password_in_the_url_is_refused_without_echoing_it() -> None:
    for url in (
        "postgresql://station:hunter2-secret@db.example:5432/station",
        "host=db.example dbname=station password=hunter2-secret",
    ):
        with pytest.raises(UsageError, match="must not contain a password") as caught:
            TeamConnection(url)
        assert "hunter2-secret" not in _texts(caught.value)
    # libpq's own message quotes the text it could not parse: never shown.
    for url in ("hunter2-secret", "host=db.example password='hunter2-secret"):
        with pytest.raises(UsageError, match="URL is malformed") as bad:
            TeamConnection(url)
        assert "hunter2-secret" not in _texts(bad.value)


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_sslmode_in_the_url_is_respected(team_db: TeamDb, mode: str) -> None:
    # The private test server has no TLS: a URL that asks for it must not get a plain connection.
    team_db.owner_store().close()
    password = team_db.server.member_password
    with pytest.raises(SecurityError, match="no trusted TLS connection") as caught:
        PostgresStore(TeamConnection(team_db.url(extra=f"sslmode={mode}")), password=password)
    assert password not in _texts(caught.value)
    with PostgresStore(
        TeamConnection(team_db.url(extra="sslmode=disable")), password=password
    ) as plain:
        assert plain.schema_version() > 0


@pytest.fixture
def team_password(team_db: TeamDb, secret_service: None) -> Iterator[TeamConnection]:
    """The member's password in the real keyring under its entry; removed afterwards."""
    connection = TeamConnection(team_db.url())
    entry = password_entry(connection)
    secret_store.write(entry, team_db.server.member_password, what="team database password")
    try:
        yield connection
    finally:
        secret_store.delete(entry, what="team database password")


def test_open_store_reads_the_password_from_the_keyring(
    team_db: TeamDb, team_password: TeamConnection
) -> None:
    team_db.owner_store().close()
    assert password_entry(team_password) == (
        f"team-database/station@127.0.0.1:{team_db.server.port}/{team_db.name}"
    )
    password = team_db.server.member_password
    with open_store(paths.current(), team=team_password) as store:
        assert isinstance(store, PostgresStore)
        persona = store.create("demo", fingerprint={"v": 1})
        assert store.get(persona.id) == persona
        # Not in this process's environment or argv: only handed to libpq in memory.
        assert all(password not in value for value in os.environ.values())
        assert password not in Path("/proc/self/cmdline").read_bytes().decode(errors="replace")
    assert not paths.current().registry.exists()


def test_no_password_in_the_keyring_is_one_line(team_db: TeamDb, secret_service: None) -> None:
    connection = TeamConnection(team_db.url())
    with pytest.raises(EnvironmentProblem, match="no password for the team server") as caught:
        keyring_password(connection)
    assert password_entry(connection) in str(caught.value)


def test_without_team_configuration_the_store_is_the_embedded_sqlite() -> None:
    with open_store(paths.current()) as store:
        assert isinstance(store, SqliteStore)
    code = (
        "import sys; from outreach_station import paths; "
        "from outreach_station.storage import open_store; "
        "open_store(paths.current()).close(); print('psycopg' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_a_server_error_that_escaped_is_one_line_without_its_text() -> None:
    import psycopg

    problem = problem_for(psycopg.errors.UniqueViolation("Key (email)=(anna@example.org)"))
    assert isinstance(problem, StationError)
    assert str(problem) == (
        "the team server failed (UniqueViolation); check the network and try again"
    )


def test_the_server_stopped_mid_session_is_one_line(team_db: TeamDb) -> None:
    team_db.owner_store().close()
    with team_db.member_store() as store:
        pid = store._conn.info.backend_pid  # type: ignore[attr-defined]
        with team_db.server.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(EnvironmentProblem) as caught:
            store.list()
        assert str(caught.value) == (
            f"lost the connection to the team server 127.0.0.1:{team_db.server.port}/"
            f"{team_db.name}; check the network, then try again"
        )
        with contextlib.suppress(StationError):
            store.close()
