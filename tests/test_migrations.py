"""The migrations build the schema the models describe, and applying them again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.migrate import upgrade_to_head
from models.tables import Base


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:

        def compare(sync_connection: object) -> list[object]:
            context = MigrationContext.configure(sync_connection, opts={"compare_type": True})  # type: ignore[arg-type]
            return list(compare_metadata(context, Base.metadata))

        differences = await connection.run_sync(compare)

    assert differences == []


async def test_migrate_twice_changes_nothing(database_url: str, engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        before = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()

    await upgrade_to_head(database_url)

    async with engine.connect() as connection:
        after = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
        attendance_types = (
            await connection.execute(text("SELECT count(*) FROM attendance_types"))
        ).scalar_one()
    assert after == before
    assert attendance_types == 3
