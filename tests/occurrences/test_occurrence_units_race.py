"""Concurrent changes to one occurrence's units are serialised by the lock on its row."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.occurrences import add_occurrence_units
from models.tables import EnrolledUnit, OccurrenceUnit
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    create_client,
    create_unit,
    given_qualification,
    insert_enrolment,
    pk,
    sessionmaker,
)


async def _count(
    session: AsyncSession, model: type[OccurrenceUnit | EnrolledUnit], unit: int
) -> int:
    count = await session.scalar(
        select(func.count()).select_from(model).where(model.unit_id == unit)
    )
    assert count is not None
    return count


async def test_add_units_race_adds_once(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    occurrence_id = pk(qualification.session_ids[0])
    client_id = await create_client(graphql, "C001")
    await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    unit_id = pk(await create_unit(graphql, "BSBTWK503"))
    maker = sessionmaker(graphql)

    async with maker() as first, maker() as second:
        await add_occurrence_units(first, occurrence_id=occurrence_id, unit_ids=[unit_id])
        later = asyncio.create_task(
            add_occurrence_units(second, occurrence_id=occurrence_id, unit_ids=[unit_id])
        )
        # The second request waits on the occurrence's row lock until the first commits.
        await asyncio.sleep(0.2)
        assert not later.done()
        await first.commit()
        await later
        await second.commit()

    async with maker() as session:
        assert await _count(session, OccurrenceUnit, unit_id) == 1
        assert await _count(session, EnrolledUnit, unit_id) == 1
