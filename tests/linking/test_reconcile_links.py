"""reconcileLinks: the reconciler run on demand from the API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, TokenRole
from models.tables import EnrolmentLink, Partner
from tests.api.conftest import GraphQLClient, issue_token
from tests.factories import committed, create_learner, create_qualification, database_rows

RECONCILE = """
mutation {
  reconcileLinks {
    run { id trigger startedAt finishedAt counts { cause found repaired } }
    errors { code message field }
  }
}
"""

RUNS = """
query { reconciliationRuns(first: 5) { edges { node { id trigger } } } }
"""


async def test_reconcile_links_closes_orphaned_link(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a session enrolment cancelled behind the API's back, its link still active
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
        learner.sessions[0].status = EnrolmentStatus.CANCELLED

    # when
    data = await graphql.data(RECONCILE)

    # then
    payload = data["reconcileLinks"]
    assert payload["errors"] == []
    run = payload["run"]
    assert run["trigger"] == "api"
    assert run["finishedAt"] is not None
    counts = {count["cause"]: (count["found"], count["repaired"]) for count in run["counts"]}
    assert counts["ENROLMENT_CANCELLED"] == (1, 1)
    assert counts["ENROLMENT_DELETED"] == (0, 0)
    async with sessionmaker() as session:
        links = list(await session.scalars(select(EnrolmentLink).order_by(EnrolmentLink.id)))
    assert links[0].unlinked_at is not None
    assert links[1].unlinked_at is None
    runs = await graphql.data(RUNS)
    assert [edge["node"]["id"] for edge in runs["reconciliationRuns"]["edges"]] == [run["id"]]


async def test_reconcile_links_finds_nothing_when_consistent(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        await create_learner(session, qualification, linked_sessions=3)

    data = await graphql.data(RECONCILE)

    counts = data["reconcileLinks"]["run"]["counts"]
    assert {count["found"] for count in counts} == {0}
    async with sessionmaker() as session:
        links = list(await session.scalars(select(EnrolmentLink)))
    assert all(link.unlinked_at is None for link in links)


async def test_reconcile_links_rejects_partner_token(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a partner's read-only token and an orphaned link
    async with committed(sessionmaker) as session:
        partner = Partner(code="EMPLOYER", name="Employer Pty Ltd")
        session.add(partner)
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        learner.sessions[0].status = EnrolmentStatus.CANCELLED
    token = await issue_token(graphql.app, TokenRole.PARTNER, partner_id=partner.id)
    before = await database_rows(sessionmaker)

    # when
    body = await graphql.execute(RECONCILE, token=token)

    # then
    payload = body["data"]["reconcileLinks"]
    assert payload["run"] is None
    assert [error["code"] for error in payload["errors"]] == ["FORBIDDEN"]
    assert await database_rows(sessionmaker) == before
