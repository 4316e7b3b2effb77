"""deleteEnrolment: soft deletion, closing links and roll-up requests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.tables import EnrolmentLink
from tests.api.conftest import GraphQLClient
from tests.factories import (
    committed,
    create_learner,
    create_qualification,
    database_rows,
    gid,
    roll_up_requests,
)

DELETE = """
mutation ($input: DeleteEnrolmentInput!) {
  deleteEnrolment(input: $input) {
    enrolment { id deletedAt status linkedEnrolments { id } }
    errors { code message field }
  }
}
"""

OCCURRENCE_ENROLMENTS = """
query ($id: ID!) {
  occurrence(id: $id) { enrolments { edges { node { id } } } }
}
"""


def _input(enrolment_id: int) -> dict[str, Any]:
    return {"input": {"enrolmentId": gid("Enrolment", enrolment_id)}}


async def _links(sessionmaker: async_sessionmaker[AsyncSession]) -> list[EnrolmentLink]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(EnrolmentLink).order_by(EnrolmentLink.id)))


async def test_delete_enrolment_closes_session_link(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
    deleted_id = learner.sessions[0].id
    requests_before = await roll_up_requests(sessionmaker)

    # when
    data = await graphql.data(DELETE, _input(deleted_id))

    # then
    payload = data["deleteEnrolment"]
    assert payload["errors"] == []
    assert payload["enrolment"]["deletedAt"] is not None
    assert payload["enrolment"]["status"] == "ACTIVE"
    assert payload["enrolment"]["linkedEnrolments"] == []
    links = await _links(sessionmaker)
    assert links[0].unlinked_at is not None
    assert links[0].unlink_reason is not None
    assert gid("Enrolment", deleted_id) in links[0].unlink_reason
    assert "deleted" in links[0].unlink_reason
    assert links[1].unlinked_at is None
    assert (await roll_up_requests(sessionmaker))[len(requests_before) :] == [
        [learner.administrative.id]
    ]
    listed = await graphql.data(
        OCCURRENCE_ENROLMENTS, {"id": gid("Occurrence", qualification.sessions[0].id)}
    )
    assert listed["occurrence"]["enrolments"]["edges"] == []


async def test_delete_enrolment_closes_administrative_links(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=3)
    requests_before = await roll_up_requests(sessionmaker)

    data = await graphql.data(DELETE, _input(learner.administrative.id))

    assert data["deleteEnrolment"]["errors"] == []
    links = await _links(sessionmaker)
    assert len(links) == 3
    assert all(link.unlinked_at is not None for link in links)
    assert await roll_up_requests(sessionmaker) == requests_before


async def test_delete_enrolment_again_changes_nothing(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    first = await graphql.data(DELETE, _input(learner.sessions[0].id))
    before = await database_rows(sessionmaker)

    again = await graphql.data(DELETE, _input(learner.sessions[0].id))

    assert again["deleteEnrolment"]["errors"] == []
    assert (
        again["deleteEnrolment"]["enrolment"]["deletedAt"]
        == first["deleteEnrolment"]["enrolment"]["deletedAt"]
    )
    assert await database_rows(sessionmaker) == before


async def test_delete_enrolment_rejects_unknown_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)

    missing = await graphql.data(DELETE, _input(learner.sessions[0].id + 10_000))
    wrong_type = await graphql.data(
        DELETE, {"input": {"enrolmentId": gid("Client", learner.client.id)}}
    )

    for data in (missing, wrong_type):
        errors = data["deleteEnrolment"]["errors"]
        assert [(error["code"], error["field"]) for error in errors] == [
            ("NOT_FOUND", "enrolmentId")
        ]
    assert await database_rows(sessionmaker) == before
