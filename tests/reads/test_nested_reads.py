"""Nested reads cost a fixed number of SQL statements, however many rows they return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, Outcome, ResultSource
from models.tables import Client, EnrolledUnit, Enrolment, EnrolmentLink
from tests.api.conftest import GraphQLClient
from tests.factories import Qualification, committed, create_qualification, gid, next_number

# The most statements the nested query below may take: one per level of the query.
MAX_STATEMENTS = 10

NESTED = """
query ($id: ID!, $first: Int!) {
  occurrence(id: $id) {
    enrolments(first: $first) {
      edges {
        node {
          client { clientCode }
          results { unit { code } outcome }
          linkedEnrolments {
            occurrence { code }
            results { outcome sourceResult { id } }
          }
        }
      }
    }
  }
}
"""


@dataclass
class ClassOfClients:
    qualification: Qualification
    client_codes: list[str]
    session_result_ids: list[list[int]]


async def _create_class(
    sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> ClassOfClients:
    """Insert ``size`` clients, each in the administrative occurrence and the first session,
    linked, with both session units recorded and rolled up.

    Rows go in with one multi-row INSERT per table, so 200 clients take a fraction of a second.
    """
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        administrative = qualification.administrative
        session_occurrence = qualification.sessions[0]
        session_units = qualification.units[:2]
        recorded_at = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)

        codes = [f"N{next_number():08d}" for _ in range(size)]
        client_ids = await _insert_ids(
            session,
            Client,
            [{"client_code": code, "surname": f"Reader {code}"} for code in codes],
        )
        administrative_ids = await _insert_ids(
            session,
            Enrolment,
            [
                _enrolment(
                    client_id, administrative.id, administrative.start_date, administrative.end_date
                )
                for client_id in client_ids
            ],
        )
        session_ids = await _insert_ids(
            session,
            Enrolment,
            [
                _enrolment(
                    client_id,
                    session_occurrence.id,
                    session_occurrence.start_date,
                    session_occurrence.end_date,
                )
                for client_id in client_ids
            ],
        )
        await session.execute(
            insert(EnrolmentLink),
            [
                {
                    "administrative_enrolment_id": administrative_id,
                    "session_enrolment_id": session_id,
                }
                for administrative_id, session_id in zip(
                    administrative_ids, session_ids, strict=True
                )
            ],
        )
        session_result_ids = []
        for session_id in session_ids:
            session_result_ids.append(
                await _insert_ids(
                    session,
                    EnrolledUnit,
                    [
                        {
                            "enrolment_id": session_id,
                            "unit_id": unit.id,
                            "outcome": Outcome.COMPETENCY_ACHIEVED.value,
                            "start_date": session_occurrence.start_date,
                            "end_date": session_occurrence.end_date,
                            "source": ResultSource.RECORDED,
                            "recorded_at": recorded_at,
                        }
                        for unit in session_units
                    ],
                )
            )
        await session.execute(
            insert(EnrolledUnit),
            [
                {
                    "enrolment_id": administrative_id,
                    "unit_id": unit.id,
                    "outcome": Outcome.COMPETENCY_ACHIEVED.value if position < 2 else None,
                    "source": ResultSource.ROLLED_UP,
                    "source_enrolled_unit_id": results[position] if position < 2 else None,
                    "recorded_at": recorded_at if position < 2 else None,
                }
                for administrative_id, results in zip(
                    administrative_ids, session_result_ids, strict=True
                )
                for position, unit in enumerate(qualification.units)
            ],
        )
        await session.execute(
            update(Enrolment)
            .where(Enrolment.id.in_(administrative_ids))
            .values(roll_up_computed_at=recorded_at)
        )
    return ClassOfClients(
        qualification=qualification, client_codes=codes, session_result_ids=session_result_ids
    )


def _enrolment(client_id: int, occurrence_id: int, start: date, end: date) -> dict[str, object]:
    return {
        "client_id": client_id,
        "occurrence_id": occurrence_id,
        "status": EnrolmentStatus.ACTIVE,
        "start_date": start,
        "end_date": end,
    }


async def _insert_ids(
    session: AsyncSession,
    table: type[Client | Enrolment | EnrolledUnit],
    rows: list[dict[str, object]],
) -> list[int]:
    """Insert the rows in one statement and return their ids in the same order."""
    result = await session.scalars(
        insert(table).returning(table.id, sort_by_parameter_order=True), rows
    )
    return list(result)


async def _measure_nested_read(
    graphql: GraphQLClient, class_of_clients: ClassOfClients, first: int
) -> tuple[dict[str, object], int]:
    variables = {
        "id": gid("Occurrence", class_of_clients.qualification.sessions[0].id),
        "first": first,
    }
    with graphql.statements.measure() as statements:
        data = await graphql.data(NESTED, variables)
    return data, len(statements)


async def test_nested_read_statements_independent_of_size(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a class of 5 clients and a class of 200
    small = await _create_class(sessionmaker, 5)
    large = await _create_class(sessionmaker, 200)

    # when
    small_data, small_count = await _measure_nested_read(graphql, small, 5)
    large_data, large_count = await _measure_nested_read(graphql, large, 200)

    # then
    assert len(small_data["occurrence"]["enrolments"]["edges"]) == 5  # type: ignore[index]
    assert len(large_data["occurrence"]["enrolments"]["edges"]) == 200  # type: ignore[index]
    assert small_count == large_count
    assert large_count <= MAX_STATEMENTS


async def test_nested_read_returns_linked_results(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    class_of_clients = await _create_class(sessionmaker, 3)
    qualification = class_of_clients.qualification

    data, _ = await _measure_nested_read(graphql, class_of_clients, 3)

    edges = data["occurrence"]["enrolments"]["edges"]  # type: ignore[index]
    assert [edge["node"]["client"]["clientCode"] for edge in edges] == class_of_clients.client_codes
    for edge, session_result_ids in zip(edges, class_of_clients.session_result_ids, strict=True):
        node = edge["node"]
        assert node["results"] == [
            {"unit": {"code": unit.code}, "outcome": "COMPETENCY_ACHIEVED"}
            for unit in qualification.units[:2]
        ]
        [administrative] = node["linkedEnrolments"]
        assert administrative["occurrence"] == {"code": qualification.administrative.code}
        assert administrative["results"] == [
            {
                "outcome": "COMPETENCY_ACHIEVED",
                "sourceResult": {"id": gid("Result", session_result_ids[0])},
            },
            {
                "outcome": "COMPETENCY_ACHIEVED",
                "sourceResult": {"id": gid("Result", session_result_ids[1])},
            },
            {"outcome": None, "sourceResult": None},
            {"outcome": None, "sourceResult": None},
        ]
