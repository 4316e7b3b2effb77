"""Concurrent linkEnrolments requests over real HTTP: exactly one link per session enrolment."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import OccurrenceKind
from models.tables import EnrolmentLink
from tests.api.conftest import LiveServer
from tests.factories import (
    committed,
    create_client,
    create_occurrence,
    create_qualification,
    enrol,
    gid,
    post_graphql,
)

# Each round is one race; repeating it makes a lucky ordering unlikely to hide a bug.
ROUNDS = 8

LINK = """
mutation ($input: LinkEnrolmentsInput!) {
  linkEnrolments(input: $input) {
    link { id administrativeEnrolment { id } }
    errors { code message field }
  }
}
"""


async def test_link_enrolments_race_links_once(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: per round, a client in two administrative occurrences and one unlinked session
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        second = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=qualification.units
        )
        rounds = []
        for _ in range(ROUNDS):
            client = await create_client(session)
            first_administrative = await enrol(session, client, qualification.administrative)
            second_administrative = await enrol(session, client, second)
            session_enrolment = await enrol(session, client, qualification.sessions[0])
            rounds.append((first_administrative.id, second_administrative.id, session_enrolment.id))

    async with live_server.client() as http:
        for first_id, second_id, session_id in rounds:
            # when: both links are sent at once
            responses = await asyncio.gather(
                *(
                    post_graphql(
                        http,
                        LINK,
                        {
                            "input": {
                                "administrativeEnrolmentId": gid("Enrolment", administrative_id),
                                "sessionEnrolmentId": gid("Enrolment", session_id),
                            }
                        },
                    )
                    for administrative_id in (first_id, second_id)
                )
            )

            # then: one succeeds, the other names the winner
            payloads = [response["linkEnrolments"] for response in responses]
            winners = [payload for payload in payloads if payload["link"] is not None]
            losers = [payload for payload in payloads if payload["link"] is None]
            assert len(winners) == 1, payloads
            assert [error["code"] for error in losers[0]["errors"]] == ["ALREADY_LINKED"]
            winner_id = winners[0]["link"]["administrativeEnrolment"]["id"]
            assert winner_id in losers[0]["errors"][0]["message"]

    async with sessionmaker() as session:
        active = await session.scalar(
            select(func.count())
            .select_from(EnrolmentLink)
            .where(EnrolmentLink.unlinked_at.is_(None))
        )
    assert active == ROUNDS


async def test_link_enrolments_race_same_pair_links_once(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        rounds = []
        for _ in range(ROUNDS):
            client = await create_client(session)
            administrative = await enrol(session, client, qualification.administrative)
            session_enrolment = await enrol(session, client, qualification.sessions[0])
            rounds.append((administrative.id, session_enrolment.id))

    async with live_server.client() as http:
        for administrative_id, session_id in rounds:
            variables = {
                "input": {
                    "administrativeEnrolmentId": gid("Enrolment", administrative_id),
                    "sessionEnrolmentId": gid("Enrolment", session_id),
                }
            }

            # when: the same link is sent twice at once, as a double click would
            responses = await asyncio.gather(
                post_graphql(http, LINK, variables), post_graphql(http, LINK, variables)
            )

            # then: both succeed with the same link
            links = [response["linkEnrolments"]["link"] for response in responses]
            assert links[0] is not None
            assert links[0] == links[1]

    async with sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(EnrolmentLink))
    assert total == ROUNDS
