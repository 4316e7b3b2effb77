"""recordResult: where results may be recorded, their dates, history and roll-up requests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource
from models.tables import EnrolledUnitHistory
from tests.api.conftest import GraphQLClient
from tests.factories import (
    committed,
    create_client,
    create_learner,
    create_occurrence,
    create_qualification,
    create_units,
    database_rows,
    enrol,
    enrolled_unit,
    gid,
    roll_up_requests,
)

# The name of the staff token the graphql fixture sends; results record it as their author.
TOKEN_NAME = "test"

RECORD_RESULT = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) {
    result {
      id outcome outcomeCode source startDate endDate recordedAt recordedBy
      unit { code }
      enrolment { id }
    }
    errors { code message field }
  }
}
"""


def _input(enrolment_id: int, unit_id: int, outcome: str, **dates: str) -> dict[str, Any]:
    return {
        "input": {
            "enrolmentId": gid("Enrolment", enrolment_id),
            "unitId": gid("Unit", unit_id),
            "outcome": outcome,
            **dates,
        }
    }


def _errors(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in data["recordResult"]["errors"]]


async def _history(sessionmaker: async_sessionmaker[AsyncSession]) -> list[EnrolledUnitHistory]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(EnrolledUnitHistory).order_by(EnrolledUnitHistory.id))
        )


async def test_record_result_records_outcome_and_dates(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    unit = qualification.units[1]

    # when
    data = await graphql.data(
        RECORD_RESULT,
        _input(
            learner.sessions[0].id,
            unit.id,
            "COMPETENCY_ACHIEVED",
            startDate="2026-03-02",
            endDate="2026-03-27",
        ),
    )

    # then
    payload = data["recordResult"]
    assert payload["errors"] == []
    result = payload["result"]
    assert result["outcome"] == "COMPETENCY_ACHIEVED"
    assert result["outcomeCode"] == 20
    assert result["source"] == "RECORDED"
    assert result["startDate"] == "2026-03-02"
    assert result["endDate"] == "2026-03-27"
    assert result["recordedAt"] is not None
    assert result["recordedBy"] == TOKEN_NAME
    assert result["unit"] == {"code": unit.code}
    assert result["enrolment"] == {"id": gid("Enrolment", learner.sessions[0].id)}
    assert await _history(sessionmaker) == []


async def test_record_result_requests_roll_up(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    requests_before = await roll_up_requests(sessionmaker)

    await graphql.data(
        RECORD_RESULT, _input(learner.sessions[0].id, qualification.units[0].id, "CONTINUING")
    )

    assert await roll_up_requests(sessionmaker) == [
        *requests_before,
        [learner.administrative.id],
    ]


async def test_record_result_standard_requests_no_roll_up(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        units = await create_units(session, 2)
        standard = await create_occurrence(session, kind=OccurrenceKind.STANDARD, units=units)
        client = await create_client(session)
        enrolment = await enrol(session, client, standard)

    data = await graphql.data(RECORD_RESULT, _input(enrolment.id, units[1].id, "RPL_GRANTED"))

    assert data["recordResult"]["result"]["outcomeCode"] == 51
    assert await roll_up_requests(sessionmaker) == []


async def test_record_result_defaults_to_enrolment_dates(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)

    data = await graphql.data(
        RECORD_RESULT,
        _input(learner.sessions[0].id, qualification.units[0].id, "CONTINUING"),
    )

    result = data["recordResult"]["result"]
    assert result["startDate"] == "2026-03-01"
    assert result["endDate"] == "2026-03-28"


async def test_record_result_overwrite_keeps_history(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a continuing result with dates
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    enrolment_id = learner.sessions[0].id
    unit = qualification.units[0]
    first = await graphql.data(
        RECORD_RESULT,
        _input(enrolment_id, unit.id, "CONTINUING", startDate="2026-03-03", endDate="2026-03-20"),
    )

    # when: only the outcome changes
    second = await graphql.data(RECORD_RESULT, _input(enrolment_id, unit.id, "COMPETENCY_ACHIEVED"))

    # then: the dates stay and the previous value is in the history
    result = second["recordResult"]["result"]
    assert result["outcome"] == "COMPETENCY_ACHIEVED"
    assert result["startDate"] == "2026-03-03"
    assert result["endDate"] == "2026-03-20"
    history = await _history(sessionmaker)
    assert len(history) == 1
    assert history[0].outcome == 70
    assert history[0].start_date == date(2026, 3, 3)
    assert history[0].end_date == date(2026, 3, 20)
    assert history[0].source is ResultSource.RECORDED
    assert history[0].recorded_by == TOKEN_NAME
    assert history[0].recorded_at is not None
    assert history[0].recorded_at.isoformat() == first["recordResult"]["result"]["recordedAt"]
    assert history[0].replaced_by == TOKEN_NAME


async def test_record_result_identical_value_changes_nothing(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    document_input = _input(learner.sessions[0].id, qualification.units[0].id, "CONTINUING")
    first = await graphql.data(RECORD_RESULT, document_input)
    before = await database_rows(sessionmaker)

    again = await graphql.data(RECORD_RESULT, document_input)

    assert again["recordResult"]["errors"] == []
    assert again["recordResult"]["result"] == first["recordResult"]["result"]
    assert await database_rows(sessionmaker) == before


async def test_record_result_rejects_administrative_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        linked = await create_learner(session, qualification, linked_sessions=2)
        unlinked = await create_learner(session, qualification, linked_sessions=0)
    before = await database_rows(sessionmaker)

    with_sessions = await graphql.data(
        RECORD_RESULT,
        _input(linked.administrative.id, qualification.units[0].id, "COMPETENCY_ACHIEVED"),
    )
    without_sessions = await graphql.data(
        RECORD_RESULT,
        _input(unlinked.administrative.id, qualification.units[0].id, "COMPETENCY_ACHIEVED"),
    )

    assert _errors(with_sessions) == [("RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE", "enrolmentId")]
    message = with_sessions["recordResult"]["errors"][0]["message"]
    # Only the first session delivers units[0]; the second, linked too, delivers units[2].
    assert message.endswith(
        f"Record the result in the linked session enrolment that delivers unit "
        f"{qualification.units[0].code}: enrolment {gid('Enrolment', linked.sessions[0].id)} "
        f"({qualification.sessions[0].code})."
    )
    assert gid("Enrolment", linked.sessions[1].id) not in message
    assert qualification.sessions[1].code not in message
    assert _errors(without_sessions) == [("RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE", "enrolmentId")]
    assert without_sessions["recordResult"]["errors"][0]["message"].endswith(
        "It has no linked session enrolment yet: enrol the client in a session that delivers "
        f"unit {qualification.units[0].code}, link the enrolments, and record the result there."
    )
    assert await database_rows(sessionmaker) == before


async def test_record_result_administrative_no_session_delivers(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a learner linked to the first two sessions, which deliver units 0, 1 and 2
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
    before = await database_rows(sessionmaker)

    # when: a result for unit 3, which only the unlinked third session delivers
    data = await graphql.data(
        RECORD_RESULT,
        _input(learner.administrative.id, qualification.units[3].id, "COMPETENCY_ACHIEVED"),
    )

    # then
    assert _errors(data) == [("RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE", "enrolmentId")]
    message = data["recordResult"]["errors"][0]["message"]
    assert message.endswith(
        "None of its linked session enrolments is in an occurrence that delivers unit "
        f"{qualification.units[3].code}: enrol the client in a session that delivers the unit, "
        "link the enrolments, and record the result there."
    )
    for session_enrolment in learner.sessions:
        assert gid("Enrolment", session_enrolment.id) not in message
    assert await database_rows(sessionmaker) == before


async def test_record_result_accepts_completed_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        learner.sessions[0].status = EnrolmentStatus.COMPLETED

    data = await graphql.data(
        RECORD_RESULT,
        _input(learner.sessions[0].id, qualification.units[0].id, "COMPETENCY_ACHIEVED"),
    )

    assert data["recordResult"]["errors"] == []


async def test_record_result_rejects_closed_enrolments(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=3)
        learner.sessions[0].status = EnrolmentStatus.WITHDRAWN
        learner.sessions[1].status = EnrolmentStatus.CANCELLED
        learner.sessions[2].deleted_at = datetime(2026, 5, 2, tzinfo=UTC)
    before = await database_rows(sessionmaker)
    cases = [
        (learner.sessions[0], qualification.units[0], "WITHDRAWN"),
        (learner.sessions[1], qualification.units[2], "CANCELLED"),
        (learner.sessions[2], qualification.units[3], "deleted"),
    ]

    for enrolment, unit, word in cases:
        data = await graphql.data(
            RECORD_RESULT, _input(enrolment.id, unit.id, "COMPETENCY_ACHIEVED")
        )

        assert _errors(data) == [("ENROLMENT_NOT_ACTIVE", "enrolmentId")]
        assert word in data["recordResult"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_record_result_rejects_unit_not_in_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)
    other_unit = qualification.units[3]

    not_in_enrolment = await graphql.data(
        RECORD_RESULT, _input(learner.sessions[0].id, other_unit.id, "COMPETENCY_ACHIEVED")
    )
    missing_unit = await graphql.data(
        RECORD_RESULT, _input(learner.sessions[0].id, 10_000, "COMPETENCY_ACHIEVED")
    )

    assert _errors(not_in_enrolment) == [("UNIT_NOT_IN_ENROLMENT", "unitId")]
    message = not_in_enrolment["recordResult"]["errors"][0]["message"]
    assert other_unit.code in message
    assert qualification.units[0].code in message
    assert _errors(missing_unit) == [("NOT_FOUND", "unitId")]
    assert await database_rows(sessionmaker) == before


async def test_record_result_rejects_start_after_end(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULT,
        _input(
            learner.sessions[0].id,
            qualification.units[0].id,
            "COMPETENCY_ACHIEVED",
            startDate="2026-03-10",
            endDate="2026-03-09",
        ),
    )

    assert _errors(data) == [("INVALID_INPUT", "startDate")]
    assert await database_rows(sessionmaker) == before


async def test_record_result_rejects_start_after_current_end(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    enrolment_id = learner.sessions[0].id
    unit = qualification.units[0]
    await graphql.data(
        RECORD_RESULT,
        _input(enrolment_id, unit.id, "CONTINUING", startDate="2026-03-02", endDate="2026-03-09"),
    )
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        RECORD_RESULT, _input(enrolment_id, unit.id, "CONTINUING", startDate="2026-03-10")
    )

    assert _errors(data) == [("INVALID_INPUT", "startDate")]
    assert "current end date 2026-03-09" in data["recordResult"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_record_result_rejects_dates_outside_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a session enrolment that runs 2026-03-05 to 2026-03-20
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        short = await enrol(
            session,
            learner.client,
            qualification.sessions[0],
            start=date(2026, 3, 5),
            end=date(2026, 3, 20),
            link=True,
        )
    before = await database_rows(sessionmaker)
    cases = [
        ({"startDate": "2026-03-04"}, "startDate"),
        ({"endDate": "2026-03-21"}, "endDate"),
        ({"startDate": "2026-03-21", "endDate": "2026-03-22"}, "startDate"),
    ]

    for dates, field in cases:
        data = await graphql.data(
            RECORD_RESULT, _input(short.id, qualification.units[0].id, "CONTINUING", **dates)
        )

        assert _errors(data) == [("DATES_OUTSIDE_ENROLMENT", field)], dates
        assert "2026-03-05 to 2026-03-20" in data["recordResult"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_record_result_accepts_dates_on_enrolment_bounds(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        unit = qualification.units[0]
        target = await enrolled_unit(session, learner.sessions[0], unit)

    data = await graphql.data(
        RECORD_RESULT,
        _input(
            learner.sessions[0].id,
            unit.id,
            "COMPETENCY_ACHIEVED",
            startDate="2026-03-01",
            endDate="2026-03-28",
        ),
    )

    assert data["recordResult"]["result"]["id"] == gid("Result", target.id)
    assert data["recordResult"]["result"]["endDate"] == "2026-03-28"
