"""A private PostgreSQL server for the team tests, from the distribution's packages.

`initdb` into a temporary directory and `pg_ctl start` on a free port of
127.0.0.1, as the `postgres` system account when the tests run as root
(initdb refuses root). Local socket connections (the harness's own, as the
superuser) are trusted; TCP connections on 127.0.0.1 need a password
(scram-sha-256), as station's will on a real server.

Roles, as docs/team.md asks IT to make them: `station_owner` (owns each
test database and runs the migrations), the group `station_app` and the
login `station` in it (what a laptop connects as).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER = "station_owner"
APP = "station_app"
MEMBER = "station"


def find_bin_dir() -> Path | None:
    """The newest PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            with contextlib.suppress(ValueError):
                found.append((int(candidate.parent.name.split(".")[0]), candidate))
    if found:
        return max(found)[1]
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PgServer:
    """A running private server; `url` gives a database on it for a role."""

    bin_dir: Path
    root: Path
    host: str
    port: int
    owner_password: str
    member_password: str
    run_as: list[str]
    durable: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, dbname: str, *, role: str = MEMBER, extra: str = "") -> str:
        query = f"?{extra}" if extra else ""
        return f"postgresql://{role}@{self.host}:{self.port}/{dbname}{query}"

    def admin(self, dbname: str = "postgres") -> Any:
        """A superuser connection over the private socket (autocommit)."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
        )

    def dump(self, dbname: str) -> bytes:
        """What `pg_dump` of the database gives IT for a backup (plain SQL)."""
        return subprocess.run(
            [
                *self.run_as,
                str(self.bin_dir / "pg_dump"),
                *("-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", dbname),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout

    def create_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {OWNER}')

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start_argv(self) -> list[str]:
        """pg_ctl start, waiting until the server accepts connections."""
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
        if self.durable:  # as a production server: commits reach the disk (bench)
            options += "-c max_connections=60"
        else:  # fsync off and few connections: a throwaway server on a shared machine
            options += (
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=40 -c shared_buffers=16MB"
            )
        return [
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ]

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server stopped (as a restart or a lost network: connections cut), then started again.

        The data stays; the server is started again on the same port when the
        block ends, even when it raised, so that later tests have it.
        """
        subprocess.run(
            [
                *self.run_as,
                str(self.bin_dir / "pg_ctl"),
                # fast, not immediate: every connection is cut all the same, but with
                # synchronous_commit off an immediate stop can lose the last commits.
                *("-D", str(self.data_dir), "-m", "fast", "-w", "stop"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        try:
            yield
        finally:
            subprocess.run(
                [*self.run_as, *self.start_argv()], check=True, capture_output=True, timeout=120
            )

    def stop(self) -> None:
        subprocess.run(
            [
                *self.run_as,
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(bin_dir: Path, *, host: str = "127.0.0.1", durable: bool = False) -> PgServer:
    """initdb, pg_ctl start, and the roles; raises RuntimeError with the tool's output.

    `durable`: fsync and synchronous commits on, as a production server (for
    benches); the tests' default trades them for speed.
    """
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="station-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PgServer(
        bin_dir=bin_dir,
        root=root,
        host=host,
        port=_free_port(host),
        owner_password=secrets.token_urlsafe(18),
        member_password=secrets.token_urlsafe(18),
        run_as=run_as,
        durable=durable,
    )

    def run(*argv: str) -> None:
        done = subprocess.run(
            [*run_as, *argv], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            server.stop()
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stdout}{done.stderr}")

    run("mkdir", "-m", "0700", str(server.socket_dir))
    run(
        str(bin_dir / "initdb"),
        "-D",
        str(server.data_dir),
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--no-sync",
    )
    (log := server.root / "log").touch()
    if run_as:
        shutil.chown(log, "postgres")
    run(*server.start_argv())
    try:
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD " + _literal(server.owner_password))
            conn.execute(f"CREATE ROLE {APP} NOLOGIN")
            conn.execute(
                f"CREATE ROLE {MEMBER} LOGIN IN ROLE {APP} PASSWORD "
                + _literal(server.member_password)
            )
    except BaseException:
        server.stop()
        raise
    return server


def _literal(text: str) -> str:
    # CREATE ROLE takes no bind parameters; the passwords are url-safe tokens.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
    return f"'{text}'"


def new_database_name() -> str:
    return f"t_{secrets.token_hex(6)}"


@contextlib.contextmanager
def database(server: PgServer) -> Iterator[str]:
    """A fresh database owned by the owner role, dropped afterwards."""
    name = new_database_name()
    server.create_database(name)
    try:
        yield name
    finally:
        server.drop_database(name)
