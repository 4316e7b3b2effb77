"""Concurrent enrolClient requests: one enrolment per client and occurrence, never an error."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.tables import EnrolledUnit, Enrolment
from tests.api.conftest import GraphQLClient, LiveServer
from tests.factories import (
    committed,
    create_client,
    create_qualification,
    enrol,
    gid,
    post_graphql,
)

# Each round is one race; repeating it makes a lucky ordering unlikely to hide a bug.
ROUNDS = 8

ENROL_CLIENT = """
mutation ($input: EnrolClientInput!) {
  enrolClient(input: $input) {
    enrolment { id }
    errors { code message field }
  }
}
"""


async def test_enrol_client_race_enrols_once(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: one client per round
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        clients = [await create_client(session) for _ in range(ROUNDS)]
    occurrence_id = gid("Occurrence", qualification.administrative.id)

    async with live_server.client() as http:
        for client in clients:
            variables = {
                "input": {"clientId": gid("Client", client.id), "occurrenceId": occurrence_id}
            }

            # when: the same enrolment is sent twice at once
            responses = await asyncio.gather(
                post_graphql(http, ENROL_CLIENT, variables),
                post_graphql(http, ENROL_CLIENT, variables),
            )

            # then
            payloads = [response["enrolClient"] for response in responses]
            enrolled = [payload for payload in payloads if payload["enrolment"] is not None]
            rejected = [payload for payload in payloads if payload["enrolment"] is None]
            assert len(enrolled) == 1, payloads
            assert [error["code"] for error in rejected[0]["errors"]] == ["ALREADY_ENROLLED"]

    async with sessionmaker() as session:
        enrolments = await session.scalar(select(func.count()).select_from(Enrolment))
        units = await session.scalar(select(func.count()).select_from(EnrolledUnit))
    assert enrolments == ROUNDS
    assert units == ROUNDS * len(qualification.units)


async def test_enrol_client_unique_index_gives_already_enrolled(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: another transaction has enrolled the client but not yet committed, so the check
    # before the insert cannot see it and only the unique index can
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    variables = {
        "input": {
            "clientId": gid("Client", client.id),
            "occurrenceId": gid("Occurrence", qualification.administrative.id),
        }
    }
    async with sessionmaker() as other:
        await enrol(other, client, qualification.administrative)

        # when: the request waits on the index until the other transaction commits
        request = asyncio.create_task(graphql.execute(ENROL_CLIENT, variables))
        await asyncio.sleep(0.5)
        assert not request.done()
        await other.commit()
        body = await request

    # then
    assert "errors" not in body
    errors = body["data"]["enrolClient"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [
        ("ALREADY_ENROLLED", "occurrenceId")
    ]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Enrolment)) == 1
