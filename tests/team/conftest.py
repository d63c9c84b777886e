"""Fixtures of the team tests: one private PostgreSQL per session, one database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from outreach_station.storage.postgres import PostgresStore, TeamConnection
from tests.pg import PgServer, database, find_bin_dir, start_server


def _unavailable(reason: str) -> None:
    """Skip with the reason; under setup.sh test (real parts required) fail instead."""
    if os.environ.get("STATION_TEST_REQUIRE_REAL_PARTS"):
        pytest.fail(f"{reason}; run 'bash setup.sh test'", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL on a free port of 127.0.0.1, stopped at the end of the session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("needs psycopg (pip install -e .)")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("needs PostgreSQL's server (initdb, pg_ctl): apt-get install postgresql")
        raise AssertionError  # unreachable: for the type checker
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("needs the postgres system account to run initdb as (not root)")
    server = start_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class TeamDb:
    """One test's own database on the session's server."""

    server: PgServer
    name: str

    def url(self, *, role: str = "station", extra: str = "") -> str:
        return self.server.url(self.name, role=role, extra=extra)

    def owner_store(self) -> PostgresStore:
        """The store as the owner role: creates or migrates the schema."""
        return PostgresStore(
            TeamConnection(self.url(role="station_owner")), password=self.server.owner_password
        )

    def member_store(self) -> PostgresStore:
        """The store as station's login role (a member of station_app)."""
        return PostgresStore(TeamConnection(self.url()), password=self.server.member_password)


@pytest.fixture
def team_db(pg_server: PgServer) -> Iterator[TeamDb]:
    with database(pg_server) as name:
        yield TeamDb(pg_server, name)


@pytest.fixture
def pg_store(team_db: TeamDb) -> Iterator[PostgresStore]:
    """A migrated team database, opened as station's own role."""
    team_db.owner_store().close()
    with team_db.member_store() as store:
        yield store
