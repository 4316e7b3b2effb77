"""recordResults: one unit for many clients of an occurrence, all or nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus
from models.results import MAX_ENTRIES
from tests.api.conftest import GraphQLClient
from tests.factories import (
    Learner,
    Qualification,
    committed,
    create_learner,
    create_qualification,
    database_rows,
    enrol,
    gid,
    roll_up_requests,
)

RECORD_RESULTS = """
mutation ($input: RecordResultsInput!) {
  recordResults(input: $input) {
    results { id outcome startDate endDate enrolment { id } unit { code } }
    errors { code message field }
  }
}
"""


def _input(occurrence_id: int, unit_id: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "input": {
            "occurrenceId": gid("Occurrence", occurrence_id),
            "unitId": gid("Unit", unit_id),
            "entries": entries,
        }
    }


def _entry(enrolment_id: int, outcome: str = "COMPETENCY_ACHIEVED", **dates: str) -> dict[str, Any]:
    return {"enrolmentId": gid("Enrolment", enrolment_id), "outcome": outcome, **dates}


def _errors(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in data["recordResults"]["errors"]]


def _request_statements(statements: list[str]) -> list[str]:
    """Leave out the outbox stamp that the publisher sends in the background after a commit."""
    return [
        statement
        for statement in statements
        if not statement.startswith("UPDATE outbox SET published_at")
    ]


async def _class_of(
    sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> tuple[Qualification, list[Learner]]:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learners = [
            await create_learner(session, qualification, linked_sessions=1) for _ in range(size)
        ]
    return qualification, learners


async def test_record_results_records_every_entry(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    qualification, learners = await _class_of(sessionmaker, 3)
    unit = qualification.units[1]
    outcomes = ["COMPETENCY_ACHIEVED", "COMPETENCY_NOT_ACHIEVED", "CONTINUING"]
    requests_before = await roll_up_requests(sessionmaker)

    # when
    data = await graphql.data(
        RECORD_RESULTS,
        _input(
            qualification.sessions[0].id,
            unit.id,
            [
                _entry(learner.sessions[0].id, outcome, endDate="2026-03-20")
                for learner, outcome in zip(learners, outcomes, strict=True)
            ],
        ),
    )

    # then
    payload = data["recordResults"]
    assert payload["errors"] == []
    assert [result["outcome"] for result in payload["results"]] == outcomes
    assert [result["enrolment"]["id"] for result in payload["results"]] == [
        gid("Enrolment", learner.sessions[0].id) for learner in learners
    ]
    assert {result["unit"]["code"] for result in payload["results"]} == {unit.code}
    assert {result["startDate"] for result in payload["results"]} == {"2026-03-01"}
    assert {result["endDate"] for result in payload["results"]} == {"2026-03-20"}
    new_requests = (await roll_up_requests(sessionmaker))[len(requests_before) :]
    assert new_requests == [sorted(learner.administrative.id for learner in learners)]


async def test_record_results_accepts_no_entries(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    qualification, _ = await _class_of(sessionmaker, 1)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULTS, _input(qualification.sessions[0].id, qualification.units[0].id, [])
    )

    assert data["recordResults"] == {"results": [], "errors": []}
    assert await database_rows(sessionmaker) == before


async def test_record_results_rejects_every_bad_entry(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a good entry among entries that each break one rule
    qualification, learners = await _class_of(sessionmaker, 4)
    async with committed(sessionmaker) as session:
        withdrawn = await session.merge(learners[1].sessions[0])
        withdrawn.status = EnrolmentStatus.WITHDRAWN
    before = await database_rows(sessionmaker)
    entries = [
        _entry(learners[0].sessions[0].id),
        {"enrolmentId": "bm90IGFuIGlk", "outcome": "COMPETENCY_ACHIEVED"},
        _entry(learners[1].sessions[0].id),
        _entry(learners[2].administrative.id),
        _entry(learners[3].sessions[0].id, startDate="2026-02-27"),
        _entry(learners[0].sessions[0].id),
        _entry(learners[3].sessions[0].id + 10_000),
        _entry(learners[2].sessions[0].id, startDate="2026-03-10", endDate="2026-03-09"),
    ]

    # when
    data = await graphql.data(
        RECORD_RESULTS,
        _input(qualification.sessions[0].id, qualification.units[0].id, entries),
    )

    # then: one error per bad entry, in entry order, and nothing recorded
    assert data["recordResults"]["results"] == []
    assert _errors(data) == [
        ("NOT_FOUND", "entries[1].enrolmentId"),
        ("ENROLMENT_NOT_ACTIVE", "entries[2].enrolmentId"),
        ("INVALID_INPUT", "entries[3].enrolmentId"),
        ("DATES_OUTSIDE_ENROLMENT", "entries[4].startDate"),
        ("INVALID_INPUT", "entries[5].enrolmentId"),
        ("NOT_FOUND", "entries[6].enrolmentId"),
        ("INVALID_INPUT", "entries[7].startDate"),
    ]
    messages = [error["message"] for error in data["recordResults"]["errors"]]
    assert "entries[0]" in messages[4]
    assert qualification.administrative.code in messages[2]
    assert await database_rows(sessionmaker) == before


async def test_record_results_rejects_administrative_occurrence(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    qualification, learners = await _class_of(sessionmaker, 1)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULTS,
        _input(
            qualification.administrative.id,
            qualification.units[0].id,
            [_entry(learners[0].administrative.id)],
        ),
    )

    assert _errors(data) == [("RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE", "occurrenceId")]
    assert qualification.sessions[0].code in data["recordResults"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_record_results_rejects_unit_not_in_occurrence(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    qualification, learners = await _class_of(sessionmaker, 1)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULTS,
        _input(
            qualification.sessions[0].id,
            qualification.units[2].id,
            [_entry(learners[0].sessions[0].id)],
        ),
    )

    assert _errors(data) == [("UNIT_NOT_IN_ENROLMENT", "unitId")]
    assert await database_rows(sessionmaker) == before


async def test_record_results_rejects_too_many_entries(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    qualification, learners = await _class_of(sessionmaker, 1)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULTS,
        _input(
            qualification.sessions[0].id,
            qualification.units[0].id,
            [_entry(learners[0].sessions[0].id)] * (MAX_ENTRIES + 1),
        ),
    )

    assert _errors(data) == [("INVALID_INPUT", "entries")]
    assert await database_rows(sessionmaker) == before


async def test_record_results_statements_independent_of_entries(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: two sessions of the same unit, one with 3 clients and one with 30
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session, session_units=((0,), (0,)))
        small = [await create_learner(session, qualification, linked_sessions=0) for _ in range(3)]
        large = [await create_learner(session, qualification, linked_sessions=0) for _ in range(30)]
        small_enrolments = [
            await enrol(session, learner.client, qualification.sessions[0], link=True)
            for learner in small
        ]
        large_enrolments = [
            await enrol(session, learner.client, qualification.sessions[1], link=True)
            for learner in large
        ]
    unit = qualification.units[0]
    counts = []

    # when: each class gets a continuing result, then an overwrite that writes history
    for occurrence, enrolments in (
        (qualification.sessions[0], small_enrolments),
        (qualification.sessions[1], large_enrolments),
    ):
        for outcome in ("CONTINUING", "COMPETENCY_ACHIEVED"):
            document_input = _input(
                occurrence.id,
                unit.id,
                [_entry(enrolment.id, outcome) for enrolment in enrolments],
            )
            with graphql.statements.measure() as statements:
                data = await graphql.data(RECORD_RESULTS, document_input)
            assert data["recordResults"]["errors"] == []
            counts.append(len(_request_statements(statements)))

    # then
    assert counts[0] == counts[2]
    assert counts[1] == counts[3]
