"""Concurrent recordResult requests on one unit: every overwrite is kept in the history."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.tables import EnrolledUnit, EnrolledUnitHistory
from tests.api.conftest import LiveServer
from tests.factories import committed, create_learner, create_qualification, gid, post_graphql

# Each round is one race; repeating it makes a lucky ordering unlikely to hide a bug.
ROUNDS = 8

RECORD_RESULT = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) {
    result { id outcome }
    errors { code message field }
  }
}
"""


async def test_record_result_race_keeps_both_values(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: one linked session enrolment per round
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learners = [
            await create_learner(session, qualification, linked_sessions=1) for _ in range(ROUNDS)
        ]
    unit = qualification.units[0]

    async with live_server.client() as http:
        for learner in learners:
            # when: two trainers record different outcomes for the same unit at once
            responses = await asyncio.gather(
                *(
                    post_graphql(
                        http,
                        RECORD_RESULT,
                        {
                            "input": {
                                "enrolmentId": gid("Enrolment", learner.sessions[0].id),
                                "unitId": gid("Unit", unit.id),
                                "outcome": outcome,
                            }
                        },
                    )
                    for outcome in ("COMPETENCY_ACHIEVED", "COMPETENCY_NOT_ACHIEVED")
                )
            )
            assert [response["recordResult"]["errors"] for response in responses] == [[], []]

    # then: the value written first is in the history, replaced by the one written second
    async with sessionmaker() as session:
        for learner in learners:
            current = await session.scalar(
                select(EnrolledUnit).where(
                    EnrolledUnit.enrolment_id == learner.sessions[0].id,
                    EnrolledUnit.unit_id == unit.id,
                )
            )
            assert current is not None
            history = list(
                await session.scalars(
                    select(EnrolledUnitHistory.outcome).where(
                        EnrolledUnitHistory.enrolled_unit_id == current.id
                    )
                )
            )
            assert len(history) == 1
            assert {history[0], current.outcome} == {20, 30}
