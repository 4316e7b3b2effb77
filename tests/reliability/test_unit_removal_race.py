"""Removing a unit while a roll-up clears its only outcome: a typed error, not a 500."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError, ErrorCode
from models.occurrences import remove_occurrence_unit
from models.tables import EnrolledUnit
from tests.reliability.servers import sql
from tests.workers.builders import Builder


async def test_unit_removal_survives_outcome_cleared_meanwhile(
    session: AsyncSession, database_url: str
) -> None:
    builder = Builder(session)
    catalogue = await builder.catalogue()
    client_id = await builder.client()
    enrolment_id = await builder.enrol(client_id, catalogue.administrative_occurrence_id)
    unit_id = catalogue.unit_ids[0]
    await session.execute(
        update(EnrolledUnit)
        .where(EnrolledUnit.enrolment_id == enrolment_id, EnrolledUnit.unit_id == unit_id)
        .values(outcome=20)
    )
    await session.commit()

    # After the first statement that looks for recorded outcomes, another transaction clears
    # the outcome and commits, as a roll-up does when the last linked session goes away.
    connection = await session.connection()
    cleared: list[bool] = []

    def clear_outcome(*args: Any) -> None:
        statement: str = args[2]
        if cleared or "enrolled_units.outcome IS NOT NULL" not in statement:
            return
        sql(
            database_url,
            "UPDATE enrolled_units SET outcome = NULL WHERE enrolment_id = %s AND unit_id = %s",
            (enrolment_id, unit_id),
        )
        cleared.append(True)

    event.listen(connection.sync_connection, "after_cursor_execute", clear_outcome)
    try:
        with pytest.raises(DomainError) as raised:
            await remove_occurrence_unit(
                session, occurrence_id=catalogue.administrative_occurrence_id, unit_id=unit_id
            )
    finally:
        event.remove(connection.sync_connection, "after_cursor_execute", clear_outcome)

    assert cleared == [True]
    assert raised.value.code is ErrorCode.UNIT_HAS_RESULTS
