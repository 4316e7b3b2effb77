"""Apply Alembic migrations programmatically; ``enrolink migrate`` and the tests call this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Serialises `enrolink migrate` run by several replicas at once (a rolling deploy): the first
# takes the lock and migrates, the others wait and then find nothing to do.
_MIGRATION_LOCK_KEY = 0x656E726F6C696E6B  # "enrolink" in ASCII


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.set_main_option("sqlalchemy.url", database_url)
    return config


async def upgrade_to_head(database_url: str) -> None:
    """Bring the database to the newest revision; a database already there is left unchanged."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")

            def run(sync_connection: object) -> None:
                config = alembic_config()
                config.attributes["connection"] = sync_connection
                command.upgrade(config, "head")

            await connection.run_sync(run)
    finally:
        await engine.dispose()
