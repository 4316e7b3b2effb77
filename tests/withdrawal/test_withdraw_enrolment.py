"""withdrawEnrolment: which units get 40, cascading to linked sessions, and roll-up requests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, OccurrenceKind, Outcome
from models.results import record_result
from models.tables import EnrolledUnitHistory, Enrolment
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
    gid,
    roll_up_requests,
)

WITHDRAW = """
mutation ($input: WithdrawEnrolmentInput!) {
  withdrawEnrolment(input: $input) {
    enrolment { id status withdrawnOn }
    enrolments {
      id status withdrawnOn
      results { unit { code } outcome startDate endDate source }
    }
    errors { code message field }
  }
}
"""


def _input(enrolment_id: int, withdrawn_on: str, cascade: bool | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "enrolmentId": gid("Enrolment", enrolment_id),
        "withdrawnOn": withdrawn_on,
    }
    if cascade is not None:
        fields["cascade"] = cascade
    return {"input": fields}


def _errors(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in data["withdrawEnrolment"]["errors"]]


async def _record(
    session: AsyncSession,
    enrolment_id: int,
    unit_id: int,
    outcome: Outcome,
    start: date,
    end: date,
) -> None:
    await record_result(
        session,
        enrolment_id=enrolment_id,
        unit_id=unit_id,
        outcome=outcome,
        start_date=start,
        end_date=end,
        recorded_by="trainer",
    )


async def test_withdraw_enrolment_withdraws_started_units(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a linked session of five units in every state a unit can be in
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(
            session, unit_count=5, session_units=((0, 1, 2, 3, 4),)
        )
        learner = await create_learner(session, qualification, linked_sessions=1)
        session_id = learner.sessions[0].id
        units = qualification.units
        await _record(
            session,
            session_id,
            units[0].id,
            Outcome.CONTINUING,
            date(2026, 3, 2),
            date(2026, 3, 27),
        )
        await _record(
            session,
            session_id,
            units[1].id,
            Outcome.COMPETENCY_ACHIEVED,
            date(2026, 3, 2),
            date(2026, 3, 9),
        )
        await _record(
            session,
            session_id,
            units[3].id,
            Outcome.NOT_YET_STARTED,
            date(2026, 3, 20),
            date(2026, 3, 27),
        )
        await _record(
            session,
            session_id,
            units[4].id,
            Outcome.NOT_YET_STARTED,
            date(2026, 3, 10),
            date(2026, 3, 27),
        )
    requests_before = await roll_up_requests(sessionmaker)

    # when
    data = await graphql.data(WITHDRAW, _input(session_id, "2026-03-15"))

    # then
    payload = data["withdrawEnrolment"]
    assert payload["errors"] == []
    assert payload["enrolment"] == {
        "id": gid("Enrolment", session_id),
        "status": "WITHDRAWN",
        "withdrawnOn": "2026-03-15",
    }
    results = {result["unit"]["code"]: result for result in payload["enrolments"][0]["results"]}
    started = results[units[0].code]
    assert (started["outcome"], started["startDate"], started["endDate"]) == (
        "WITHDRAWN",
        "2026-03-02",
        "2026-03-15",
    )
    assert results[units[1].code]["outcome"] == "COMPETENCY_ACHIEVED"
    assert results[units[2].code]["outcome"] is None
    assert results[units[2].code]["endDate"] is None
    assert results[units[3].code]["outcome"] == "NOT_YET_STARTED"
    assert results[units[4].code]["outcome"] == "WITHDRAWN"
    assert results[units[4].code]["endDate"] == "2026-03-15"
    async with sessionmaker() as session:
        history = list(await session.scalars(select(EnrolledUnitHistory.outcome)))
    assert len(history) == 2
    assert set(history) == {70, 85}
    assert (await roll_up_requests(sessionmaker))[len(requests_before) :] == [
        [learner.administrative.id]
    ]


async def test_withdraw_enrolment_standard_requests_no_roll_up(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        units = await create_units(session, 1)
        standard = await create_occurrence(session, kind=OccurrenceKind.STANDARD, units=units)
        client = await create_client(session)
        enrolment = await enrol(session, client, standard)
        await _record(
            session,
            enrolment.id,
            units[0].id,
            Outcome.CONTINUING,
            date(2026, 2, 2),
            date(2026, 6, 1),
        )

    data = await graphql.data(WITHDRAW, _input(enrolment.id, "2026-04-01"))

    results = data["withdrawEnrolment"]["enrolments"][0]["results"]
    assert [(result["outcome"], result["endDate"]) for result in results] == [
        ("WITHDRAWN", "2026-04-01")
    ]
    assert await roll_up_requests(sessionmaker) == []


async def test_withdraw_enrolment_rejects_date_outside_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)

    for withdrawn_on in ("2026-02-28", "2026-03-29"):
        data = await graphql.data(WITHDRAW, _input(learner.sessions[0].id, withdrawn_on))

        assert _errors(data) == [("DATES_OUTSIDE_ENROLMENT", "withdrawnOn")]
        assert "2026-03-01 to 2026-03-28" in data["withdrawEnrolment"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_withdraw_enrolment_accepts_last_day(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)

    data = await graphql.data(WITHDRAW, _input(learner.sessions[0].id, "2026-03-28"))

    assert data["withdrawEnrolment"]["enrolment"]["withdrawnOn"] == "2026-03-28"


async def test_withdraw_enrolment_rejects_closed_enrolments(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=3)
        learner.sessions[0].status = EnrolmentStatus.WITHDRAWN
        learner.sessions[1].status = EnrolmentStatus.COMPLETED
        learner.sessions[2].deleted_at = datetime(2026, 5, 2, tzinfo=UTC)
    before = await database_rows(sessionmaker)
    cases = [
        (learner.sessions[0].id, "2026-03-10", "WITHDRAWN"),
        (learner.sessions[1].id, "2026-04-10", "COMPLETED"),
        (learner.sessions[2].id, "2026-05-10", "deleted"),
    ]

    for enrolment_id, withdrawn_on, word in cases:
        data = await graphql.data(WITHDRAW, _input(enrolment_id, withdrawn_on))

        assert _errors(data) == [("ENROLMENT_NOT_ACTIVE", "enrolmentId")]
        assert word in data["withdrawEnrolment"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_withdraw_enrolment_rejects_active_sessions(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
    before = await database_rows(sessionmaker)

    for cascade in (None, False):
        data = await graphql.data(
            WITHDRAW, _input(learner.administrative.id, "2026-04-10", cascade)
        )

        assert _errors(data) == [("LINKED_SESSIONS_ACTIVE", "cascade")]
        message = data["withdrawEnrolment"]["errors"][0]["message"]
        for session_enrolment in learner.sessions:
            assert gid("Enrolment", session_enrolment.id) in message
    assert await database_rows(sessionmaker) == before


async def test_withdraw_enrolment_accepts_closed_sessions(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
        learner.sessions[0].status = EnrolmentStatus.WITHDRAWN
        learner.sessions[1].status = EnrolmentStatus.COMPLETED

    data = await graphql.data(WITHDRAW, _input(learner.administrative.id, "2026-06-01"))

    payload = data["withdrawEnrolment"]
    assert payload["errors"] == []
    assert [enrolment["id"] for enrolment in payload["enrolments"]] == [
        gid("Enrolment", learner.administrative.id)
    ]


async def test_withdraw_enrolment_cascades_to_linked_sessions(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: sessions in March (over), April (running) and May (not begun), each with a
    # continuing result
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=3)
        units = qualification.units
        for session_enrolment, unit in zip(
            learner.sessions, (units[0], units[2], units[3]), strict=True
        ):
            start = session_enrolment.start_date
            await _record(session, session_enrolment.id, unit.id, Outcome.CONTINUING, start, start)
    requests_before = await roll_up_requests(sessionmaker)

    # when
    data = await graphql.data(WITHDRAW, _input(learner.administrative.id, "2026-04-10", True))

    # then
    payload = data["withdrawEnrolment"]
    assert payload["errors"] == []
    withdrawn = payload["enrolments"]
    assert [enrolment["id"] for enrolment in withdrawn] == [
        gid("Enrolment", learner.administrative.id),
        *(gid("Enrolment", enrolment.id) for enrolment in learner.sessions),
    ]
    assert {enrolment["status"] for enrolment in withdrawn} == {"WITHDRAWN"}
    assert [enrolment["withdrawnOn"] for enrolment in withdrawn] == [
        "2026-04-10",
        "2026-03-28",
        "2026-04-10",
        "2026-05-01",
    ]
    march, april, may = (enrolment["results"] for enrolment in withdrawn[1:])
    assert (march[0]["outcome"], march[0]["endDate"]) == ("WITHDRAWN", "2026-03-28")
    assert (april[0]["outcome"], april[0]["endDate"]) == ("WITHDRAWN", "2026-04-10")
    assert may[0]["outcome"] == "CONTINUING"
    assert {result["outcome"] for result in withdrawn[0]["results"]} == {None}
    assert {result["source"] for result in withdrawn[0]["results"]} == {"ROLLED_UP"}
    assert (await roll_up_requests(sessionmaker))[len(requests_before) :] == [
        [learner.administrative.id]
    ]


async def test_withdraw_enrolment_cascade_leaves_other_clients(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: two learners in the same sessions
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        leaving = await create_learner(session, qualification, linked_sessions=2)
        staying = await create_learner(session, qualification, linked_sessions=2)

    # when
    await graphql.data(WITHDRAW, _input(leaving.administrative.id, "2026-03-10", True))

    # then
    async with sessionmaker() as session:
        statuses = dict((await session.execute(select(Enrolment.id, Enrolment.status))).all())
    for enrolment in (leaving.administrative, *leaving.sessions):
        assert statuses[enrolment.id] is EnrolmentStatus.WITHDRAWN
    for enrolment in (staying.administrative, *staying.sessions):
        assert statuses[enrolment.id] is EnrolmentStatus.ACTIVE
