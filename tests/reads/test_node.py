"""node(id:) and the typed lookups: a row by its global id, null for a well-formed id that
names nothing, and a NOT_FOUND error for a malformed id or one of the wrong type."""

from __future__ import annotations

import base64
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

    for type_name, pk in ids.items():
        unknown = gid(type_name, pk + 10_000)

        data = await graphql.data(NODE, {"id": unknown})

        assert data["node"] is None, unknown


async def test_node_rejects_malformed_ids(graphql: GraphQLClient) -> None:
    for malformed in ("not an id", "", "8", "VW5pdDo", _b64(b"Enrolment:abc")):
        body = await graphql.execute(NODE, {"id": malformed})

        assert body["data"] == {"node": None}, malformed
        [error] = body["errors"]
        assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}, malformed
        assert error["message"] == (
            f"id {malformed!r} is not a valid id; use the id field of an object in a query "
            "response."
        )


async def test_node_rejects_unknown_types(graphql: GraphQLClient) -> None:
    unknown_type = gid("Nonsense", 1)

    body = await graphql.execute(NODE, {"id": unknown_type})

    [error] = body["errors"]
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert error["message"] == (
        f"id {unknown_type!r} is an id of type 'Nonsense', which the API does not have; use the "
        "id field of an object in a query response."
    )


LOOKUPS = """
query ($id: ID!) {
  occurrence(id: $id) { id }
  client(id: $id) { id }
  enrolment(id: $id) { id }
}
"""


async def test_lookups_return_null_for_missing_rows(graphql: GraphQLClient) -> None:
    for name, type_name in (
        ("occurrence", "Occurrence"),
        ("client", "Client"),
        ("enrolment", "Enrolment"),
    ):
        missing = gid(type_name, 999_999)

        body = await graphql.execute(f'{{ {name}(id: "{missing}") {{ id }} }}')

        assert body == {"data": {name: None}}


async def test_lookups_reject_malformed_and_wrong_ids(graphql: GraphQLClient) -> None:
    unit_id = gid("Unit", 1)

    for value in ("8", "not base64!", unit_id):
        body = await graphql.execute(LOOKUPS, {"id": value})

        assert body["data"] == {"occurrence": None, "client": None, "enrolment": None}
        errors = {error["path"][0]: error for error in body["errors"]}
        assert sorted(errors) == ["client", "enrolment", "occurrence"], value
        for name, article_and_type in (
            ("occurrence", "an Occurrence"),
            ("client", "a Client"),
            ("enrolment", "an Enrolment"),
        ):
            error = errors[name]
            assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}, (name, value)
            assert error["message"].startswith(f"id {value!r} "), error["message"]
            assert error["message"].endswith(f"use the id field of {article_and_type}."), error[
                "message"
            ]
    malformed = await graphql.execute('{ enrolment(id: "8") { id } }')
    assert malformed["errors"][0]["message"] == (
        "id '8' is not a valid id; use the id field of an Enrolment."
    )
    unit_as_enrolment = await graphql.execute(f'{{ enrolment(id: "{unit_id}") {{ id }} }}')
    assert unit_as_enrolment["errors"][0]["message"] == (
        f"id {unit_id!r} is the id of a Unit, not of an Enrolment; use the id field of an "
        "Enrolment."
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
