"""Withdrawal racing linking and recording: the lock order leaves no deadlock and no half state."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus
from models.tables import EnrolledUnit, Enrolment, EnrolmentLink
from tests.api.conftest import LiveServer
from tests.factories import (
    committed,
    create_learner,
    create_qualification,
    enrol,
    gid,
    post_graphql,
)

# Each round is one race; repeating it makes a lucky ordering unlikely to hide a bug.
ROUNDS = 8

WITHDRAW = """
mutation ($input: WithdrawEnrolmentInput!) {
  withdrawEnrolment(input: $input) {
    enrolments { id }
    errors { code message field }
  }
}
"""

LINK = """
mutation ($input: LinkEnrolmentsInput!) {
  linkEnrolments(input: $input) {
    link { id }
    errors { code message field }
  }
}
"""

RECORD_RESULT = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) {
    result { id }
    errors { code message field }
  }
}
"""


def _withdraw_input(enrolment_id: int) -> dict[str, Any]:
    return {
        "input": {
            "enrolmentId": gid("Enrolment", enrolment_id),
            "withdrawnOn": "2026-04-10",
            "cascade": True,
        }
    }


async def test_withdraw_cascade_race_with_link(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: per round, an administrative enrolment with two linked sessions and an unlinked one
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        rounds = []
        for _ in range(ROUNDS):
            learner = await create_learner(session, qualification, linked_sessions=2)
            unlinked = await enrol(session, learner.client, qualification.sessions[2])
            rounds.append((learner.administrative.id, unlinked.id))

    async with live_server.client() as http:
        for administrative_id, unlinked_id in rounds:
            link_input = {
                "input": {
                    "administrativeEnrolmentId": gid("Enrolment", administrative_id),
                    "sessionEnrolmentId": gid("Enrolment", unlinked_id),
                }
            }

            # when: the cascade and a new link of a third session are sent at once
            withdrawn, linked = await asyncio.gather(
                post_graphql(http, WITHDRAW, _withdraw_input(administrative_id)),
                post_graphql(http, LINK, link_input),
            )

            # then: either the link came first and the cascade took the new session too, or
            # the withdrawal came first and the link was rejected
            assert withdrawn["withdrawEnrolment"]["errors"] == []
            withdrawn_ids = [item["id"] for item in withdrawn["withdrawEnrolment"]["enrolments"]]
            if linked["linkEnrolments"]["link"] is not None:
                assert len(withdrawn_ids) == 4
                assert gid("Enrolment", unlinked_id) in withdrawn_ids
            else:
                assert [error["code"] for error in linked["linkEnrolments"]["errors"]] == [
                    "ENROLMENT_NOT_ACTIVE"
                ]
                assert len(withdrawn_ids) == 3

    async with sessionmaker() as session:
        active_links = list(
            await session.scalars(
                select(EnrolmentLink.session_enrolment_id)
                .join(Enrolment, Enrolment.id == EnrolmentLink.session_enrolment_id)
                .where(
                    EnrolmentLink.unlinked_at.is_(None),
                    Enrolment.status == EnrolmentStatus.ACTIVE,
                )
            )
        )
    assert active_links == []


async def test_withdraw_race_with_record_result(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: per round, a learner with a linked April session
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learners = [
            await create_learner(session, qualification, linked_sessions=2) for _ in range(ROUNDS)
        ]
    unit = qualification.units[2]

    async with live_server.client() as http:
        for learner in learners:
            session_id = learner.sessions[1].id
            record_input = {
                "input": {
                    "enrolmentId": gid("Enrolment", session_id),
                    "unitId": gid("Unit", unit.id),
                    "outcome": "CONTINUING",
                    "startDate": "2026-04-01",
                }
            }

            # when: the session is withdrawn while a trainer records a continuing result
            withdrawn, recorded = await asyncio.gather(
                post_graphql(http, WITHDRAW, _withdraw_input(session_id)),
                post_graphql(http, RECORD_RESULT, record_input),
            )

            # then: the withdrawal always succeeds; a recording that came second is rejected
            assert withdrawn["withdrawEnrolment"]["errors"] == []
            errors = recorded["recordResult"]["errors"]
            assert [error["code"] for error in errors] in ([], ["ENROLMENT_NOT_ACTIVE"])

    # then: a unit is withdrawn (the recording came first) or unrecorded (the withdrawal came
    # first), never left continuing on a withdrawn enrolment
    async with sessionmaker() as session:
        outcomes = set(
            await session.scalars(
                select(EnrolledUnit.outcome).where(
                    EnrolledUnit.enrolment_id.in_([learner.sessions[1].id for learner in learners]),
                    EnrolledUnit.unit_id == unit.id,
                )
            )
        )
    assert outcomes <= {40, None}
