"""The demo data: a 2026 cohort of BSB50420 Diploma of Leadership and Management.

``enrolink seed`` loads it, and so does ``enrolink dev`` on an empty database. The load goes
through the domain operations in one transaction, and the administrative occurrence's code
(:data:`ADMINISTRATIVE_CODE`) marks it, so loading twice changes nothing.
"""

from __future__ import annotations

import enum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.db import create_engine, create_sessionmaker
from models.demo.loader import Report, database_is_empty, demo_data_loaded, load_demo_data
from models.demo.plan import ADMINISTRATIVE_CODE

__all__ = ["ADMINISTRATIVE_CODE", "SeedOutcome", "seed_database", "seed_demo_data"]

# Key of the transaction-level advisory lock that serialises concurrent loads, so two
# `enrolink seed` runs started together do not both find the database without the demo data.
_SEED_LOCK_KEY = 0x656E726F6C696E6B  # "enrolink" in ASCII


class SeedOutcome(enum.Enum):
    LOADED = "loaded"
    ALREADY_LOADED = "already loaded"
    NOT_EMPTY = "not empty"


async def seed_demo_data(
    sessionmaker: async_sessionmaker[AsyncSession],
    report: Report,
    *,
    only_into_empty_database: bool = False,
) -> SeedOutcome:
    """Load the demo data in one transaction and commit it, unless it is there already.

    With ``only_into_empty_database`` nothing is loaded into a database that contains any unit,
    programme, occurrence, partner or client, so a developer's own data are never mixed with
    the demo's.
    """
    async with sessionmaker() as session, session.begin():
        await session.execute(select(func.pg_advisory_xact_lock(_SEED_LOCK_KEY)))
        if await demo_data_loaded(session):
            return SeedOutcome.ALREADY_LOADED
        if only_into_empty_database and not await database_is_empty(session):
            return SeedOutcome.NOT_EMPTY
        await load_demo_data(session, report)
    return SeedOutcome.LOADED


async def seed_database(
    database_url: str, report: Report, *, only_into_empty_database: bool = False
) -> SeedOutcome:
    """Load the demo data into the database at ``database_url``, as :func:`seed_demo_data` does."""
    engine = create_engine(
        database_url, pool_size=1, max_overflow=0, application_name="enrolink-seed"
    )
    try:
        return await seed_demo_data(
            create_sessionmaker(engine), report, only_into_empty_database=only_into_empty_database
        )
    finally:
        await engine.dispose()
