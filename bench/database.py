"""A throw-away database for one benchmark run, created on a given server and always dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from models.migrate import upgrade_to_head

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def default_server_url() -> str:
    """Return the server the bench uses when ``--database-url`` is not given."""
    return os.environ.get("ENROLINK_TEST_DATABASE_URL") or DEFAULT_SERVER_URL


def plain_url(url: str) -> str:
    """Return ``url`` in the form asyncpg.connect accepts (no SQLAlchemy driver suffix)."""
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def sqlalchemy_url(url: str) -> str:
    _, _, rest = url.partition("://")
    return f"postgresql+asyncpg://{rest}"


def with_database(url: str, database: str) -> str:
    return make_url(plain_url(url)).set(database=database).render_as_string(hide_password=False)


async def _admin_execute(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_url(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def bench_database(server_url: str, *, keep: bool = False) -> AsyncIterator[str]:
    """Create a migrated database named ``enrolink_bench_<random>`` and yield its plain URL.

    The database is dropped on exit, also after an error or Ctrl-C, unless ``keep`` is set.
    """
    name = f"enrolink_bench_{uuid.uuid4().hex[:10]}"
    await _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        await upgrade_to_head(sqlalchemy_url(url))
        yield url
    finally:
        if keep:
            print(f'kept database {name}; drop it with: DROP DATABASE "{name}" WITH (FORCE)')
        else:
            await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
