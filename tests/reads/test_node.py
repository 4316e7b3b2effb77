"""node(id:) returns every Node type by its global id, and null for ids that name nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.tables import (
    Attendance,
    AttendanceType,
    Class,
    EnrolledUnit,
    EnrolmentLink,
    Partner,
    Payment,
    ReconciliationRun,
)
from schema.types import NODE_LOADERS
from tests.api.conftest import GraphQLClient
from tests.factories import committed, create_learner, create_qualification, gid

NODE = """
query ($id: ID!) { node(id: $id) { __typename id } }
"""


async def _one_row_of_each_type(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, int]:
    """Insert one row of every Node type and return their ids by GraphQL type name."""
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        session_enrolment = learner.sessions[0]
        partner = Partner(code="ACME", name="Acme Apprenticeships")
        class_ = Class(
            occurrence_id=qualification.sessions[0].id,
            starts_at=datetime(2026, 3, 2, 23, 0, tzinfo=UTC),
            ends_at=datetime(2026, 3, 3, 6, 0, tzinfo=UTC),
        )
        run = ReconciliationRun(trigger="test")
        session.add_all([partner, class_, run])
        await session.flush()
        present = await session.scalar(
            select(AttendanceType).where(AttendanceType.code == "PRESENT")
        )
        assert present is not None
        attendance = Attendance(
            class_id=class_.id, enrolment_id=session_enrolment.id, attendance_type_id=present.id
        )
        payment = Payment(
            enrolment_id=learner.administrative.id,
            amount=Decimal("100.00"),
            paid_on=date(2026, 2, 3),
        )
        session.add_all([attendance, payment])
        await session.flush()
        result_id = await session.scalar(
            select(EnrolledUnit.id).where(EnrolledUnit.enrolment_id == session_enrolment.id)
        )
        link_id = await session.scalar(select(EnrolmentLink.id))
        assert result_id is not None and link_id is not None
        return {
            "Unit": qualification.units[0].id,
            "Partner": partner.id,
            "Programme": qualification.administrative.programme_id,
            "Occurrence": qualification.administrative.id,
            "Client": learner.client.id,
            "Enrolment": session_enrolment.id,
            "Result": result_id,
            "EnrolmentLink": link_id,
            "Class": class_.id,
            "Attendance": attendance.id,
            "Payment": payment.id,
            "ReconciliationRun": run.id,
        }


async def test_node_returns_each_type(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _one_row_of_each_type(sessionmaker)
    assert set(ids) == set(NODE_LOADERS)

    for type_name, pk in ids.items():
        data = await graphql.data(NODE, {"id": gid(type_name, pk)})

        assert data["node"] == {"__typename": type_name, "id": gid(type_name, pk)}


async def test_node_returns_null_for_unknown_ids(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _one_row_of_each_type(sessionmaker)

    for unknown in (
        gid("Enrolment", ids["Enrolment"] + 10_000),
        gid("Nonsense", ids["Enrolment"]),
        "not an id",
        "",
    ):
        data = await graphql.data(NODE, {"id": unknown})

        assert data["node"] is None, unknown
