"""Fixtures for tests on real PostgreSQL and Redis.

With ENROLINK_TEST_DATABASE_URL (a URL to a PostgreSQL server whose user may create databases)
and ENROLINK_TEST_REDIS_URL set, the tests use those servers. Without them, an embedded
PostgreSQL and Redis start in a temporary folder for the run, so the suite needs no services.
Every test that asks for ``database_url`` gets a database of its own, copied from a migrated
template, and the database is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from enrolink.embedded import start_postgres, start_redis
from models.db import create_engine, create_sessionmaker
from models.migrate import upgrade_to_head


def _asyncpg_url(url: str) -> str:
    _, _, rest = url.partition("://")
    return f"postgresql+asyncpg://{rest}"


def _plain_url(url: str) -> str:
    """Return the URL in the form asyncpg.connect accepts (no SQLAlchemy driver suffix)."""
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres_server_url(services_dir: Path) -> Iterator[str]:
    """Return an asyncpg URL of a PostgreSQL server (its maintenance database)."""
    configured = os.environ.get("ENROLINK_TEST_DATABASE_URL")
    if configured:
        yield _asyncpg_url(configured)
        return
    embedded = start_postgres(services_dir)
    try:
        yield embedded.url("postgres")
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    configured = os.environ.get("ENROLINK_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    embedded = start_redis(services_dir)
    try:
        yield embedded.url
    finally:
        embedded.stop()


async def _admin_execute(server_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_plain_url(server_url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """Create one migrated database per test run; each test copies it."""
    name = f"enrolink_test_template_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(postgres_server_url, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(upgrade_to_head(_with_database(postgres_server_url, name)))
        yield name
    finally:
        asyncio.run(
            _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture
def database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """Return the asyncpg URL of a fresh, migrated database for this test alone."""
    name = f"enrolink_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin_execute(
            postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
        )
    )
    try:
        yield _with_database(postgres_server_url, name)
    finally:
        asyncio.run(
            _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Return a session whose transaction is rolled back after the test."""
    async with sessionmaker() as session:
        try:
            yield session
        finally:
            await session.rollback()


def delete_queue_keys(redis_url: str, queue_names: list[str]) -> None:
    """Delete the Redis keys Celery made for a test's queues (the queue and its bindings).

    Each test uses queues with a unique suffix, so this removes only its own keys.
    """
    import redis

    url = (
        "unix://" + redis_url.removeprefix("redis+socket://")
        if redis_url.startswith("redis+socket://")
        else redis_url
    )
    client = redis.Redis.from_url(url)
    try:
        for name in queue_names:
            keys = list(client.scan_iter(match=f"*{name}*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()
