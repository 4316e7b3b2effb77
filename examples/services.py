"""PostgreSQL, Redis and a demo database for the scripts in examples/.

The servers are those named by ENROLINK_TEST_DATABASE_URL and ENROLINK_TEST_REDIS_URL, as for
the tests; without them an embedded PostgreSQL and Redis start in a temporary folder. Each run
gets a database of its own, migrated and loaded with the demo data, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from sqlalchemy.engine import make_url

from enrolink.dev import issue_dev_token
from enrolink.embedded import start_postgres, start_redis
from examples.walkthrough import Stack, Walkthrough, plain_postgres_url
from models.migrate import upgrade_to_head


@dataclass(frozen=True)
class DemoRun:
    walkthrough: Walkthrough
    seed_output: str


def _asyncpg_url(url: str) -> str:
    _, _, rest = url.partition("://")
    return f"postgresql+asyncpg://{rest}"


async def _admin_execute(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_postgres_url(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def _servers(folder: Path) -> Iterator[tuple[str, str]]:
    """Yield the URLs of a PostgreSQL server (its maintenance database) and of a Redis."""
    with ExitStack() as stack:
        postgres_url = os.environ.get("ENROLINK_TEST_DATABASE_URL")
        redis_url = os.environ.get("ENROLINK_TEST_REDIS_URL")
        if postgres_url:
            postgres_url = _asyncpg_url(postgres_url)
        else:
            postgres = start_postgres(folder)
            stack.callback(postgres.stop)
            postgres_url = postgres.url("postgres")
        if not redis_url:
            redis = start_redis(folder)
            stack.callback(redis.stop)
            redis_url = redis.url
        yield postgres_url, redis_url


@contextmanager
def _database(server_url: str) -> Iterator[str]:
    """Yield the URL of a new, migrated database, dropped afterwards."""
    name = f"enrolink_examples_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        asyncio.run(upgrade_to_head(url))
        yield url
    finally:
        asyncio.run(_admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def start_demo(database_url: str, redis_url: str, folder: Path) -> tuple[Stack, DemoRun]:
    """Load the demo data with `enrolink seed`, start the server and a worker, issue a token.

    The caller stops the stack and closes the walkthrough's client.
    """
    stack = Stack(database_url, redis_url, folder, queue_suffix=uuid.uuid4().hex[:10])
    seeded = stack.run_command("seed")
    if seeded.returncode != 0:
        raise RuntimeError(f"enrolink seed failed:\n{seeded.stdout}\n{seeded.stderr}")
    token = issue_dev_token(database_url)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack, DemoRun(Walkthrough(stack, token), seeded.stdout)


@contextmanager
def demo() -> Iterator[DemoRun]:
    """Yield a walkthrough over a fresh demo database, with its server and worker running."""
    with tempfile.TemporaryDirectory(prefix="enrolink-examples-") as folder:
        with _servers(Path(folder)) as (server_url, redis_url), _database(server_url) as url:
            stack, run = start_demo(url, redis_url, Path(folder))
            try:
                yield run
            finally:
                run.walkthrough.close()
                stack.stop()
