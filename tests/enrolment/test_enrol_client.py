"""enrolClient: units, fees, dates, duplicates and linking at enrolment."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, OccurrenceKind
from models.tables import Charge, EnrolmentLink
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

ENROL_CLIENT = """
mutation ($input: EnrolClientInput!) {
  enrolClient(input: $input) {
    enrolment {
      id status startDate endDate balance
      client { clientCode }
      occurrence { code }
      results { unit { code } outcome source startDate endDate recordedAt }
    }
    link {
      administrativeEnrolment { id }
      sessionEnrolment { id }
      sharedUnits { code }
      unlinkedAt
    }
    errors { code message field }
  }
}
"""


def _input(client_id: int, occurrence_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "input": {
            "clientId": gid("Client", client_id),
            "occurrenceId": gid("Occurrence", occurrence_id),
            **fields,
        }
    }


def _errors(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in data["enrolClient"]["errors"]]


async def test_enrol_client_administrative_units_and_fee(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session, fee=Decimal("4500.00"))
        client = await create_client(session)

    # when
    data = await graphql.data(ENROL_CLIENT, _input(client.id, qualification.administrative.id))

    # then
    payload = data["enrolClient"]
    assert payload["errors"] == []
    assert payload["link"] is None
    enrolment = payload["enrolment"]
    assert enrolment["status"] == "ACTIVE"
    assert enrolment["startDate"] == "2026-02-02"
    assert enrolment["endDate"] == "2026-11-27"
    assert [result["unit"]["code"] for result in enrolment["results"]] == [
        unit.code for unit in qualification.units
    ]
    assert {result["source"] for result in enrolment["results"]} == {"ROLLED_UP"}
    assert {result["outcome"] for result in enrolment["results"]} == {None}
    assert {result["recordedAt"] for result in enrolment["results"]} == {None}
    assert enrolment["balance"] == "4500.00"


async def test_enrol_client_fee_charged_on_start_date(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        units = await create_units(session, 1)
        occurrence = await create_occurrence(
            session, kind=OccurrenceKind.STANDARD, units=units, fee=Decimal("350.50")
        )
        client = await create_client(session)

    data = await graphql.data(
        ENROL_CLIENT, _input(client.id, occurrence.id, startDate="2026-03-02")
    )

    assert data["enrolClient"]["errors"] == []
    async with sessionmaker() as session:
        charges = list(await session.scalars(select(Charge)))
    assert len(charges) == 1
    assert charges[0].amount == Decimal("350.50")
    assert charges[0].charged_on == date(2026, 3, 2)
    assert occurrence.code in charges[0].description


async def test_enrol_client_session_has_no_charge(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    session_occurrence = qualification.sessions[0]

    data = await graphql.data(ENROL_CLIENT, _input(client.id, session_occurrence.id))

    enrolment = data["enrolClient"]["enrolment"]
    assert [result["unit"]["code"] for result in enrolment["results"]] == [
        unit.code for unit in qualification.units[:2]
    ]
    assert {result["source"] for result in enrolment["results"]} == {"RECORDED"}
    assert {result["outcome"] for result in enrolment["results"]} == {None}
    assert enrolment["balance"] is None
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Charge))) == []


async def test_enrol_client_zero_fee_adds_no_charge(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        units = await create_units(session, 1)
        occurrence = await create_occurrence(
            session, kind=OccurrenceKind.STANDARD, units=units, fee=Decimal("0.00")
        )
        client = await create_client(session)

    data = await graphql.data(ENROL_CLIENT, _input(client.id, occurrence.id))

    assert data["enrolClient"]["errors"] == []
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Charge))) == []


async def test_enrol_client_accepts_dates_inside_occurrence(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)

    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            client.id,
            qualification.administrative.id,
            startDate="2026-02-02",
            endDate="2026-06-30",
        ),
    )

    enrolment = data["enrolClient"]["enrolment"]
    assert enrolment["startDate"] == "2026-02-02"
    assert enrolment["endDate"] == "2026-06-30"


async def test_enrol_client_rejects_dates_outside_occurrence(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    occurrence = qualification.administrative
    before = await database_rows(sessionmaker)

    cases = [
        ({"startDate": "2026-02-01"}, "startDate"),
        ({"endDate": "2026-11-28"}, "endDate"),
        ({"startDate": "2026-12-01"}, "startDate"),
    ]
    for dates, field in cases:
        data = await graphql.data(ENROL_CLIENT, _input(client.id, occurrence.id, **dates))

        assert _errors(data) == [("INVALID_INPUT", field)], dates
        message = data["enrolClient"]["errors"][0]["message"]
        assert occurrence.code in message
        assert "2026-02-02 to 2026-11-27" in message
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_rejects_start_after_end(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            client.id,
            qualification.administrative.id,
            startDate="2026-05-02",
            endDate="2026-05-01",
        ),
    )

    assert _errors(data) == [("INVALID_INPUT", "startDate")]
    assert data["enrolClient"]["enrolment"] is None
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_rejects_second_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
        existing = await enrol(session, client, qualification.administrative)
    before = await database_rows(sessionmaker)

    data = await graphql.data(ENROL_CLIENT, _input(client.id, qualification.administrative.id))

    assert _errors(data) == [("ALREADY_ENROLLED", "occurrenceId")]
    message = data["enrolClient"]["errors"][0]["message"]
    assert client.client_code in message
    assert gid("Enrolment", existing.id) in message
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_accepts_again_after_deletion(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
        existing = await enrol(session, client, qualification.administrative)
        existing.deleted_at = datetime(2026, 1, 5, tzinfo=UTC)

    data = await graphql.data(ENROL_CLIENT, _input(client.id, qualification.administrative.id))

    assert data["enrolClient"]["errors"] == []
    assert data["enrolClient"]["enrolment"]["id"] != gid("Enrolment", existing.id)


async def test_enrol_client_accepts_again_after_cancellation(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
        existing = await enrol(session, client, qualification.administrative)
        existing.status = EnrolmentStatus.CANCELLED

    data = await graphql.data(ENROL_CLIENT, _input(client.id, qualification.administrative.id))

    assert data["enrolClient"]["errors"] == []


async def test_enrol_client_rejects_unknown_ids(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    before = await database_rows(sessionmaker)

    missing_client = await graphql.data(
        ENROL_CLIENT, _input(client.id + 1000, qualification.administrative.id)
    )
    wrong_type = await graphql.data(
        ENROL_CLIENT,
        {
            "input": {
                "clientId": gid("Client", client.id),
                "occurrenceId": gid("Client", client.id),
            }
        },
    )

    assert _errors(missing_client) == [("NOT_FOUND", "clientId")]
    assert _errors(wrong_type) == [("NOT_FOUND", "occurrenceId")]
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_link_finds_administrative(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
    session_occurrence = qualification.sessions[1]

    data = await graphql.data(
        ENROL_CLIENT, _input(learner.client.id, session_occurrence.id, link=True)
    )

    payload = data["enrolClient"]
    assert payload["errors"] == []
    link = payload["link"]
    assert link["administrativeEnrolment"]["id"] == gid("Enrolment", learner.administrative.id)
    assert link["sessionEnrolment"]["id"] == payload["enrolment"]["id"]
    assert link["sharedUnits"] == [{"code": qualification.units[2].code}]
    assert link["unlinkedAt"] is None
    assert await roll_up_requests(sessionmaker) == [[learner.administrative.id]]


async def test_enrol_client_link_to_given_target(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)

    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            learner.client.id,
            qualification.sessions[0].id,
            administrativeEnrolmentId=gid("Enrolment", learner.administrative.id),
        ),
    )

    link = data["enrolClient"]["link"]
    assert link["administrativeEnrolment"]["id"] == gid("Enrolment", learner.administrative.id)


async def test_enrol_client_link_skips_unsuitable(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: one suitable administrative enrolment and three that break one rule each
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        client = learner.client
        withdrawn = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=qualification.units
        )
        withdrawn_enrolment = await enrol(session, client, withdrawn)
        withdrawn_enrolment.status = EnrolmentStatus.WITHDRAWN
        earlier = await create_occurrence(
            session,
            kind=OccurrenceKind.ADMINISTRATIVE,
            units=qualification.units,
            start=date(2025, 2, 3),
            end=date(2025, 11, 28),
        )
        await enrol(session, client, earlier)
        other_units = await create_units(session, 2)
        unrelated = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=other_units
        )
        await enrol(session, client, unrelated)

    # when
    data = await graphql.data(
        ENROL_CLIENT, _input(client.id, qualification.sessions[0].id, link=True)
    )

    # then
    link = data["enrolClient"]["link"]
    assert link["administrativeEnrolment"]["id"] == gid("Enrolment", learner.administrative.id)


async def test_enrol_client_link_rejects_no_candidate(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        ENROL_CLIENT, _input(client.id, qualification.sessions[0].id, link=True)
    )

    assert _errors(data) == [("NO_ADMINISTRATIVE_ENROLMENT", "link")]
    message = data["enrolClient"]["errors"][0]["message"]
    assert qualification.sessions[0].code in message
    # The new session enrolment is rolled back, so the message gives no enrolment id.
    assert gid("Enrolment", 1)[:8] not in message
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_link_names_ambiguous_candidates(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        second = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=qualification.units
        )
        second_enrolment = await enrol(session, learner.client, second)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        ENROL_CLIENT, _input(learner.client.id, qualification.sessions[0].id, link=True)
    )

    assert _errors(data) == [("AMBIGUOUS_ADMINISTRATIVE_ENROLMENT", "administrativeEnrolmentId")]
    message = data["enrolClient"]["errors"][0]["message"]
    assert gid("Enrolment", learner.administrative.id) in message
    assert qualification.administrative.code in message
    assert gid("Enrolment", second_enrolment.id) in message
    assert second.code in message
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_link_rejects_non_session(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        client = await create_client(session)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        ENROL_CLIENT, _input(client.id, qualification.administrative.id, link=True)
    )

    assert _errors(data) == [("WRONG_OCCURRENCE_KIND", "link")]
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_link_applies_link_rules(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: an administrative enrolment of another client
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        other = await create_learner(session, qualification, linked_sessions=0)
        client = await create_client(session)
    before = await database_rows(sessionmaker)

    # when
    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            client.id,
            qualification.sessions[0].id,
            administrativeEnrolmentId=gid("Enrolment", other.administrative.id),
        ),
    )

    # then: nothing is enrolled either, and no enrolment that does not exist is named
    assert _errors(data) == [("CLIENT_MISMATCH", "administrativeEnrolmentId")]
    assert data["enrolClient"]["errors"][0]["message"] == (
        f"administrativeEnrolmentId names enrolment {gid('Enrolment', other.administrative.id)} "
        f"({qualification.administrative.code}), which belongs to client "
        f"{other.client.client_code}, not to client {client.client_code}; only enrolments of the "
        f"same client can be linked. Client {client.client_code} has no ACTIVE administrative "
        f"enrolment that overlaps session occurrence {qualification.sessions[0].code} and shares "
        "a unit with it; enrol the client in the administrative occurrence first, or enrol "
        "without link."
    )
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_mismatch_suggests_own_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: two clients, each with an administrative enrolment
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        other = await create_learner(session, qualification, linked_sessions=0)
        learner = await create_learner(session, qualification, linked_sessions=0)
    before = await database_rows(sessionmaker)

    # when: the learner is enrolled in a session with the other client's enrolment as target
    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            learner.client.id,
            qualification.sessions[0].id,
            administrativeEnrolmentId=gid("Enrolment", other.administrative.id),
        ),
    )

    # then: the message names the learner's own administrative enrolment
    assert _errors(data) == [("CLIENT_MISMATCH", "administrativeEnrolmentId")]
    message = data["enrolClient"]["errors"][0]["message"]
    assert message.endswith(
        f"Client {learner.client.client_code}'s administrative enrolment is enrolment "
        f"{gid('Enrolment', learner.administrative.id)} ({qualification.administrative.code}); "
        "pass it or use link: true."
    )
    assert f"not to client {learner.client.client_code}" in message
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_rejects_link_false_with_target(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
    before = await database_rows(sessionmaker)

    data = await graphql.data(
        ENROL_CLIENT,
        _input(
            learner.client.id,
            qualification.sessions[0].id,
            link=False,
            administrativeEnrolmentId=gid("Enrolment", learner.administrative.id),
        ),
    )

    assert _errors(data) == [("INVALID_INPUT", "link")]
    assert await database_rows(sessionmaker) == before


async def test_enrol_client_without_link_creates_no_link(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)

    data = await graphql.data(
        ENROL_CLIENT, _input(learner.client.id, qualification.sessions[0].id, link=False)
    )

    assert data["enrolClient"]["link"] is None
    async with sessionmaker() as session:
        assert list(await session.scalars(select(EnrolmentLink))) == []
    assert await roll_up_requests(sessionmaker) == []
