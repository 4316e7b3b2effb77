"""A mutation that PostgreSQL aborts for a deadlock is run again from its savepoint."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import TokenRole
from models.tables import Unit
from schema.context import Caller, Context


def _context(session: AsyncSession) -> Context:
    return Context(
        session=session,
        caller=Caller(role=TokenRole.STAFF),
        request_id=uuid.uuid4().hex,
        default_page_size=10,
        max_page_size=10,
    )


async def _retitle(
    sessionmaker: async_sessionmaker[AsyncSession],
    codes: tuple[str, str],
    title: str,
    mine: asyncio.Event,
    other: asyncio.Event,
) -> None:
    """Lock the first unit, wait until the other request holds the second, then update it."""

    async def operation(session: AsyncSession) -> None:
        await session.execute(update(Unit).where(Unit.code == codes[0]).values(title=title))
        mine.set()
        await other.wait()
        await session.execute(update(Unit).where(Unit.code == codes[1]).values(title=title))

    async with sessionmaker() as session:
        await _context(session).write(operation)
        await session.commit()


async def test_write_retries_after_deadlock(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        session.add_all([Unit(code="DLA1", title="A"), Unit(code="DLB1", title="B")])
        await session.commit()
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    # Opposite lock orders: PostgreSQL detects the deadlock (after deadlock_timeout, 1 s by
    # default) and aborts one request, which then runs again once the other has committed.
    await asyncio.wait_for(
        asyncio.gather(
            _retitle(sessionmaker, ("DLA1", "DLB1"), "first", first_locked, second_locked),
            _retitle(sessionmaker, ("DLB1", "DLA1"), "second", second_locked, first_locked),
        ),
        timeout=30,
    )

    async with sessionmaker() as session:
        titles = set((await session.execute(select(Unit.title))).scalars())
    # Both requests succeeded; the one that ran again wrote last to both units.
    assert len(titles) == 1
    assert titles <= {"first", "second"}
