"""`enrolink dev`: the whole service on one machine, for development.

The dev process starts what is missing (an embedded PostgreSQL and Redis under the data folder),
migrates, and runs ``enrolink serve``, ``enrolink worker`` and ``enrolink beat`` as child
processes. It stays in the foreground: SIGINT (Ctrl-C) or SIGTERM stops every process it
started, and a child that exits on its own stops the rest.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import functools
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import structlog

from enrolink.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerMissing,
    check_installed,
    process_is_running,
    start_postgres,
    start_redis,
)
from enrolink.settings import DEV_ENV_FILE_NAME, ENV_PREFIX, Settings

log = structlog.get_logger(__name__)

# The database that `enrolink dev` creates in the embedded PostgreSQL.
EMBEDDED_DATABASE = "enrolink"

# The server returns /healthz about 1 s after its process starts (measured on a 2-core
# container). A minute leaves room for a slow first import on a cold disk.
HEALTHY_TIMEOUT_SECONDS = 60.0
# On SIGTERM a Celery worker finishes the tasks in hand (a warm shutdown). A child still running
# after this many seconds is killed.
CHILD_STOP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.2

# The file in the data folder that one `enrolink dev` run holds an exclusive flock on, and
# whose content is that run's pid.
LOCK_FILE_NAME = "dev.lock"

# From <linux/prctl.h>: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class StopRequested(Exception):
    """A stop signal (SIGINT or SIGTERM) arrived, so everything that was started must stop."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class DevRun:
    """Everything one `enrolink dev` run started, so that it can all be stopped."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    children: list[Child] = field(default_factory=list)
    # The pids of the embedded servers as started, watched while the run lasts.
    server_pids: dict[str, int] = field(default_factory=dict)
    # The shell file with the embedded servers' URLs, removed when the run stops.
    env_file: Path | None = None
    # The file with this run's staff token, removed when the run stops.
    token_file: Path | None = None


class DataFolderInUse(Exception):
    """Another `enrolink dev` run holds the data folder's lock."""


def run_dev(settings: Settings, *, host: str, port: int) -> int:
    """Run the whole service until a stop signal or a dead child, and return the exit status."""
    data_dir = settings.data_dir.resolve()
    try:
        lock = lock_data_folder(data_dir)
    except DataFolderInUse as error:
        _report(f"enrolink dev: {error}", error=True)
        return EXIT_USAGE
    try:
        return _run_locked(settings, data_dir, host, port)
    finally:
        os.close(lock)


def lock_data_folder(data_dir: Path) -> int:
    """Take the exclusive lock of the data folder for this run and return its file descriptor.

    One run per data folder: a second run would attach to the first run's embedded servers,
    revoke its token and stop its Redis when it stops. The kernel releases the lock when its
    holder exits, even by SIGKILL, so the servers that a killed run left behind are taken over
    only once their owner is dead. The descriptor is not inherited by the servers or children.
    Raises DataFolderInUse, naming the pid of the run that has the lock.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
        os.close(descriptor)
        other_run = f"Another `enrolink dev` (pid {holder})" if holder else "Another `enrolink dev`"
        raise DataFolderInUse(
            f"{other_run} is using {data_dir}; stop it, or set {ENV_PREFIX}DATA_DIR to another "
            "folder."
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return descriptor


def _run_locked(settings: Settings, data_dir: Path, host: str, port: int) -> int:
    if not _port_is_free(host, port):
        _report(
            f"enrolink dev: port {port} on {host} is already in use. Stop the program using it "
            "or choose another port with --port.",
            error=True,
        )
        return EXIT_USAGE

    run = DevRun()
    original_handlers = _raise_on_stop_signals()
    try:
        _start(run, settings, data_dir, host, port)
        _supervise(run)
    except StopRequested as stop:
        log.info("dev.stop_requested", signal=str(stop))
        return EXIT_OK
    except EmbeddedServerMissing as error:
        _report(f"enrolink dev: {error}", error=True)
        return EXIT_USAGE
    except (ChildExited, ServerStopped, TimeoutError) as error:
        log.error("dev.failed", error=str(error))
        _report(f"enrolink dev: {error} Stopping everything else.", error=True)
        return EXIT_FAILED
    finally:
        with _stop_signals_ignored():
            _stop_everything(run)
        for number, handler in original_handlers.items():
            signal.signal(number, handler)


def _start(run: DevRun, settings: Settings, data_dir: Path, host: str, port: int) -> None:
    """Start the services that are not configured, migrate, start the children, wait for them."""
    database_url = settings.database_url
    redis_url = settings.redis_url
    # A run killed with SIGKILL leaves its file behind; this run writes its own.
    (data_dir / DEV_ENV_FILE_NAME).unlink(missing_ok=True)

    # Both packages are checked before either server starts, so one message names all that
    # is missing.
    check_installed(postgres=database_url is None, redis=redis_url is None)
    if database_url is None or redis_url is None:
        _report(f"Data folder: {data_dir}")
    if database_url is None:
        run.postgres = start_postgres(data_dir)
        _watch_server(run, "PostgreSQL", run.postgres.pid)
        database_url = asyncio.run(_create_database(run.postgres, EMBEDDED_DATABASE))
        _report(f"PostgreSQL: embedded, data in {run.postgres.data_dir}")
    else:
        _report(f"PostgreSQL: {_shown(database_url)} (from {ENV_PREFIX}DATABASE_URL)")
    if redis_url is None:
        run.redis = start_redis(data_dir)
        _watch_server(run, "Redis", run.redis.pid)
        redis_url = run.redis.url
        _report(
            f"Redis: embedded, data in {run.redis.data_dir}, socket {run.redis.server.socket_file}"
        )
    else:
        _report(f"Redis: {redis_url} (from {ENV_PREFIX}REDIS_URL)")

    _report(_migrate(database_url))
    load_demo_data(database_url)
    token = issue_dev_token(database_url)

    environment = _child_environment(database_url, redis_url, data_dir, host, port)
    _start_child(run, "server", ["serve", "--host", host, "--port", str(port)], environment)
    _start_child(run, "worker", ["worker"], environment)
    _start_child(run, "beat", ["beat"], environment)

    _wait_until_healthy(run, host, port)
    url = f"http://{_url_host(_connectable_host(host))}:{port}/graphql"
    _report(f"Enrolink is running: {url} (Ctrl-C stops it)")
    # The token and the header each stand on a line of their own, so a double-click or a
    # line copy takes nothing else with them.
    _report("Staff token for this run:")
    _report(token)
    _report("In GraphiQL, open Headers and paste:")
    _report(f'{{"Authorization": "Bearer {token}"}}')
    # The worker's and beat's log lines soon push the token out of sight, so it is kept where
    # the developer can read it again.
    run.token_file = _write_token_file(data_dir, token)
    _report(f"The token is also in {run.token_file} while this run lasts.")
    exports = _export_lines(run, database_url, redis_url)
    if exports:
        run.env_file = _write_env_file(data_dir, exports)
        _report(
            "Other shells reach the embedded servers (for `enrolink reconcile`, `token`, `seed` "
            f"or psql) after `source {run.env_file}`, or after pasting these lines:"
        )
        for line in exports:
            _report(line)
    log.info("dev.started", url=url, data_dir=str(data_dir))


def _export_lines(run: DevRun, database_url: str, redis_url: str) -> list[str]:
    """Return shell lines that set the URLs of the embedded servers this run started."""
    lines = []
    if run.postgres is not None:
        # The URL without SQLAlchemy's driver name, which the settings, asyncpg and psql take.
        plain_url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        lines.append(f"export {ENV_PREFIX}DATABASE_URL={shlex.quote(plain_url)}")
    if run.redis is not None:
        lines.append(f"export {ENV_PREFIX}REDIS_URL={shlex.quote(redis_url)}")
    return lines


def _write_env_file(data_dir: Path, exports: list[str]) -> Path:
    path = data_dir / DEV_ENV_FILE_NAME
    header = (
        f"# The embedded servers of the `enrolink dev` run with pid {os.getpid()}; the run "
        "removes this file when it stops.\n"
    )
    path.write_text(header + "\n".join(exports) + "\n")
    return path


def _write_token_file(data_dir: Path, token: str) -> Path:
    """Write the token to a file that only this user can read, and return its path."""
    path = data_dir / TOKEN_FILE_NAME
    # A killed run leaves its file behind, with a token that this run has revoked.
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return path


def load_demo_data(database_url: str) -> None:
    """Load the demo data (as `enrolink seed` does) when the database contains no data yet.

    Only an empty database gets them, so a second run keeps what the first loaded and what the
    developer changed since.
    """
    from models.demo import SeedOutcome, seed_database

    outcome = asyncio.run(
        seed_database(
            database_url, lambda line: _report(f"  {line}"), only_into_empty_database=True
        )
    )
    if outcome is SeedOutcome.LOADED:
        _report("Demo data: loaded; docs/walkthrough.md tours them")
    elif outcome is SeedOutcome.ALREADY_LOADED:
        _report("Demo data: already loaded")
    else:
        _report("Demo data: not loaded, because the database already contains other data")


# The file in the data folder with the staff token of the running `enrolink dev`.
TOKEN_FILE_NAME = "token"
# The name of the staff token that each `enrolink dev` run issues.
DEV_TOKEN_NAME = "enrolink dev"


def issue_dev_token(database_url: str) -> str:
    """Create a staff token for this run, revoke those of earlier runs, and return its secret.

    The database keeps only a token's hash, so each run issues a new token to print. Revoking
    the earlier ones leaves one valid dev token, however many runs printed one.
    """
    return asyncio.run(_issue_dev_token(database_url))


async def _issue_dev_token(database_url: str) -> str:
    from sqlalchemy import func, update

    from models.db import create_engine, create_sessionmaker
    from models.enums import TokenRole
    from models.tables import ApiToken
    from models.tokens import create_token

    engine = create_engine(
        database_url, pool_size=1, max_overflow=0, application_name="enrolink-dev"
    )
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                update(ApiToken)
                .where(ApiToken.name == DEV_TOKEN_NAME, ApiToken.revoked_at.is_(None))
                .values(revoked_at=func.now())
            )
            issued = await create_token(session, role=TokenRole.STAFF, name=DEV_TOKEN_NAME)
        return issued.secret
    finally:
        await engine.dispose()


async def _create_database(postgres: EmbeddedPostgres, name: str) -> str:
    """Create the database ``name`` unless it exists, and return its URL."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    # CREATE DATABASE cannot run inside a transaction block.
    engine = create_async_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = (
                await connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
            ).scalar_one_or_none()
            if exists is None:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
                log.info("embedded_postgres.database_created", database=name)
    finally:
        await engine.dispose()
    return postgres.url(name)


def _migrate(database_url: str) -> str:
    """Apply the migrations and describe what changed."""
    from enrolink.cli import apply_migrations

    before, after = asyncio.run(apply_migrations(database_url))
    if before == after:
        return f"Database: at revision {after} (head), nothing to migrate"
    return f"Database: migrated from revision {before or '(empty database)'} to {after} (head)"


def _child_environment(
    database_url: str, redis_url: str, data_dir: Path, host: str, port: int
) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        {
            f"{ENV_PREFIX}DATABASE_URL": database_url,
            f"{ENV_PREFIX}REDIS_URL": redis_url,
            f"{ENV_PREFIX}ENVIRONMENT": "development",
            f"{ENV_PREFIX}DATA_DIR": str(data_dir),
            f"{ENV_PREFIX}HTTP_HOST": host,
            f"{ENV_PREFIX}HTTP_PORT": str(port),
        }
    )
    return environment


def _start_child(run: DevRun, name: str, arguments: list[str], environment: dict[str, str]) -> None:
    # Each child leads a process group of its own. A Ctrl-C in the terminal then reaches only this
    # process, which stops the children in order, and a worker's pool processes, which stay in
    # their parent's group, can be killed with it.
    process = subprocess.Popen(
        [sys.executable, "-m", "enrolink", *arguments],
        env=environment,
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=(
            functools.partial(_terminate_with_parent, os.getpid())
            if sys.platform == "linux"
            else None
        ),
    )
    run.children.append(Child(name, process))
    log.info("dev.child_started", child=name, pid=process.pid)


def _terminate_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this child SIGTERM when the dev process dies, even by SIGKILL.

    Runs in the child between fork and exec. Without it, a dev process killed with SIGKILL would
    leave the server, worker and beat running in their own process groups.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died before prctl took effect; then no signal will ever come.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _wait_until_healthy(run: DevRun, host: str, port: int) -> None:
    """Wait until /healthz returns 200.

    Raise ChildExited when a child exits first, or TimeoutError after HEALTHY_TIMEOUT_SECONDS.
    """
    url = f"http://{_url_host(_connectable_host(host))}:{port}/healthz"
    deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    while True:
        _raise_if_a_child_exited(run)
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"The server did not return 200 from {url} within "
                f"{HEALTHY_TIMEOUT_SECONDS:.0f} seconds. Its log lines above show why."
            )
        time.sleep(POLL_INTERVAL_SECONDS)


class ChildExited(Exception):
    """A child process exited while it should have been running."""

    def __init__(self, child: Child, returncode: int) -> None:
        super().__init__(
            f"The {child.name} process (pid {child.process.pid}) exited with code {returncode}."
        )
        self.child = child
        self.returncode = returncode


def _raise_if_a_child_exited(run: DevRun) -> None:
    for child in run.children:
        returncode = child.process.poll()
        if returncode is not None:
            raise ChildExited(child, returncode)


class ServerStopped(Exception):
    """An embedded server stopped while the run needed it (killed, crashed or shut down)."""

    def __init__(self, name: str, pid: int) -> None:
        super().__init__(f"The embedded {name} (pid {pid}) stopped while enrolink dev was running.")
        self.name = name
        self.pid = pid


def _watch_server(run: DevRun, name: str, pid: int | None) -> None:
    if pid is not None:
        run.server_pids[name] = pid


def _raise_if_a_server_stopped(run: DevRun) -> None:
    for name, pid in run.server_pids.items():
        if not process_is_running(pid):
            raise ServerStopped(name, pid)


def _supervise(run: DevRun) -> NoReturn:
    """Wait until a child exits or an embedded server stops, then raise ChildExited or
    ServerStopped. A stop signal raises StopRequested."""
    while True:
        # Servers first: a child that lost its Redis or PostgreSQL may exit because of it.
        _raise_if_a_server_stopped(run)
        _raise_if_a_child_exited(run)
        time.sleep(POLL_INTERVAL_SECONDS)


def _stop_everything(run: DevRun) -> None:
    """Stop the children, then Redis, then PostgreSQL, logging a step that fails and going on."""
    for written in (run.env_file, run.token_file):
        if written is not None:
            written.unlink(missing_ok=True)
    _stop_children(run.children)
    if run.redis is not None:
        try:
            run.redis.stop()
        except Exception as error:
            log.error("embedded_redis.stop_failed", error=repr(error))
    if run.postgres is not None:
        try:
            run.postgres.stop()
        except Exception as error:
            log.error("embedded_postgres.stop_failed", error=repr(error))
    if run.postgres is not None or run.redis is not None or run.children:
        _report("Enrolink dev stopped.")


def _stop_children(children: list[Child]) -> None:
    running = [child for child in children if child.process.poll() is None]
    for child in running:
        _signal_group(child, signal.SIGTERM)

    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_SECONDS
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("dev.child_killed", child=child.name, pid=child.process.pid)
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        log.info("dev.child_stopped", child=child.name, returncode=child.process.returncode)

    # Whatever the children left behind in their groups (a worker's pool processes, when the
    # worker was killed) goes too.
    for child in children:
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, signal_number: int) -> None:
    try:
        os.killpg(child.process.pid, signal_number)
    except ProcessLookupError:
        pass


def _raise_on_stop_signals() -> dict[int, Any]:
    """Make SIGINT and SIGTERM raise StopRequested, and return the handlers they had."""

    def handler(signal_number: int, frame: FrameType | None) -> None:
        raise StopRequested(signal_number)

    return {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Make a second Ctrl-C during the shutdown print a notice instead of cutting it short."""

    def handler(signal_number: int, frame: FrameType | None) -> None:
        _report("enrolink dev: still stopping, please wait.", error=True)

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, old_handler in previous.items():
            signal.signal(number, old_handler)


def _report(message: str, *, error: bool = False) -> None:
    """Print a line for the developer at once, so it lands in order among the children's logs."""
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free here as there.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _connectable_host(host: str) -> str:
    """Return an address to reach a server bound to ``host`` (a wildcard is reached locally)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _shown(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).render_as_string(hide_password=True)
