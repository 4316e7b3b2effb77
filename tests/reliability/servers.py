"""Processes for the reliability tests: `enrolink serve`, and a PostgreSQL cluster of their own.

Every server here listens on 127.0.0.1 on a free port and is stopped by the test that started
it. The private PostgreSQL exists so that a test can restart it without touching the server
that other test runs share.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2  # type: ignore[import-untyped]  # psycopg2 ships no type hints
import pytest
from sqlalchemy.engine import make_url

from tests.workers.conftest import (
    POLL_INTERVAL_SECONDS,
    READY_TIMEOUT_SECONDS,
    ServiceProcess,
    WorkerStack,
    free_port,
)

# Debian's PostgreSQL 15 binaries, which CI's machine has; `initdb` on PATH is a link to them.
_POSTGRES_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"))
# initdb and postgres do not run as root, and CI runs the tests as root. The cluster then runs
# as the `postgres` system user that Debian's package creates.
_POSTGRES_SYSTEM_USER = "postgres"
STOP_TIMEOUT_SECONDS = 30


def psycopg2_dsn(url: str) -> str:
    """Return a libpq connection string for a SQLAlchemy or plain PostgreSQL URL."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host or parsed.query.get("host"),
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    return " ".join(f"{key}={value}" for key, value in parts.items() if value)


def sql(url: str, statement: str, parameters: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own autocommitted connection; return its rows, if any."""
    connection = psycopg2.connect(psycopg2_dsn(url))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            return list(cursor.fetchall()) if cursor.description else []
    finally:
        connection.close()


@dataclass
class ApiServer:
    """`enrolink serve` on a free loopback port, with a staff token in its database."""

    stack: WorkerStack
    extra_environment: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    token: str = ""
    process: ServiceProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def environment(self) -> dict[str, str]:
        return self.stack.environment(
            # Introspection lets schemathesis read the schema; the rest stays as in production.
            ENROLINK_INTROSPECTION="true",
            **self.extra_environment,
        )

    def create_token(self) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "enrolink", "token", "create", "--role", "staff", "--name", "t"],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return completed.stdout.splitlines()[0].strip()

    def start(self) -> None:
        if not self.token:
            self.token = self.create_token()
        number = len(self.stack.processes) + 1
        self.process = ServiceProcess(
            name=f"api {number}",
            command=[sys.executable, "-m", "enrolink", "serve", "--port", str(self.port)],
            environment=self.environment(),
            log_path=self.stack.folder / f"api-{number}.log",
        )
        self.stack.processes.append(self.process)
        self.process.start()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process is not None
            if not self.process.running():
                pytest.fail(f"enrolink serve exited:\n{self.process.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"enrolink serve did not start in {timeout} s")
            time.sleep(POLL_INTERVAL_SECONDS)


def _postgres_binary(name: str) -> str:
    for folder in _POSTGRES_BIN_DIRS:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} (PostgreSQL server binaries) is not installed")
    return found


def _as_cluster_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", _POSTGRES_SYSTEM_USER, "--", *command]


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 on a free port.

    The folder is made with mkdtemp under the system's temporary folder, not under pytest's
    base folder, because pytest makes its folders private to root and the cluster runs as the
    `postgres` user.
    """

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="enrolink-pg-")))

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *arguments: str) -> None:
        subprocess.run(
            _as_cluster_user(list(arguments)),
            check=True,
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(_POSTGRES_SYSTEM_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run(
            _postgres_binary("initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        # -k: the Unix socket goes to the cluster's own folder, not /var/run/postgresql.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            _postgres_binary("pg_ctl"),
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_path),
            "--options",
            options,
            "--wait",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            _postgres_binary("pg_ctl"),
            "--pgdata",
            str(self.data_dir),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(STOP_TIMEOUT_SECONDS),
            "stop",
        )

    def restart(self, *, down_seconds: float = 0.0) -> None:
        """Stop with the fast mode (clients are disconnected), wait, and start on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            try:
                self.stop(mode="immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
