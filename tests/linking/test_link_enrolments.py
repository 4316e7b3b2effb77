"""linkEnrolments and unlinkEnrolments: every link rule, idempotence and roll-up requests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import EnrolmentStatus, OccurrenceKind, Outcome
from models.results import record_result
from models.roll_up import roll_up
from models.tables import EnrolledUnit, EnrolmentLink
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

LINK = """
mutation ($input: LinkEnrolmentsInput!) {
  linkEnrolments(input: $input) {
    link {
      id linkedAt unlinkedAt unlinkReason
      administrativeEnrolment { id rollUp { pending } }
      sessionEnrolment { id administrativeEnrolment { id } }
      sharedUnits { code }
    }
    errors { code message field }
  }
}
"""

UNLINK = """
mutation ($input: UnlinkEnrolmentsInput!) {
  unlinkEnrolments(input: $input) {
    link {
      id unlinkedAt unlinkReason
      administrativeEnrolment { id linkedEnrolments { id } }
      sessionEnrolment { id administrativeEnrolment { id } }
    }
    errors { code message field }
  }
}
"""


def _link_input(administrative_id: int, session_id: int) -> dict[str, Any]:
    return {
        "input": {
            "administrativeEnrolmentId": gid("Enrolment", administrative_id),
            "sessionEnrolmentId": gid("Enrolment", session_id),
        }
    }


def _unlink_input(session_id: int, reason: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"sessionEnrolmentId": gid("Enrolment", session_id)}
    if reason is not None:
        fields["reason"] = reason
    return {"input": fields}


def _errors(data: dict[str, Any], mutation: str) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in data[mutation]["errors"]]


async def _link_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(EnrolmentLink))
    assert count is not None
    return count


async def test_link_enrolments_creates_link(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        session_enrolment = await enrol(session, learner.client, qualification.sessions[0])

    # when
    data = await graphql.data(LINK, _link_input(learner.administrative.id, session_enrolment.id))

    # then
    payload = data["linkEnrolments"]
    assert payload["errors"] == []
    link = payload["link"]
    assert link["unlinkedAt"] is None
    assert link["administrativeEnrolment"]["id"] == gid("Enrolment", learner.administrative.id)
    assert link["sessionEnrolment"]["administrativeEnrolment"]["id"] == gid(
        "Enrolment", learner.administrative.id
    )
    assert [unit["code"] for unit in link["sharedUnits"]] == [
        unit.code for unit in qualification.units[:2]
    ]
    assert link["administrativeEnrolment"]["rollUp"] == {"pending": True}
    assert await roll_up_requests(sessionmaker) == [[learner.administrative.id]]


async def test_link_enrolments_same_pair_returns_existing(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    existing = await graphql.data(
        LINK, _link_input(learner.administrative.id, learner.sessions[0].id)
    )
    before = await database_rows(sessionmaker)

    data = await graphql.data(LINK, _link_input(learner.administrative.id, learner.sessions[0].id))

    assert data["linkEnrolments"]["errors"] == []
    assert data["linkEnrolments"]["link"]["id"] == existing["linkEnrolments"]["link"]["id"]
    assert (
        data["linkEnrolments"]["link"]["linkedAt"] == existing["linkEnrolments"]["link"]["linkedAt"]
    )
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_rejects_other_client(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        other_client = await create_client(session)
        other_session = await enrol(session, other_client, qualification.sessions[0])
    before = await database_rows(sessionmaker)

    data = await graphql.data(LINK, _link_input(learner.administrative.id, other_session.id))

    assert _errors(data, "linkEnrolments") == [("CLIENT_MISMATCH", "sessionEnrolmentId")]
    message = data["linkEnrolments"]["errors"][0]["message"]
    assert learner.client.client_code in message
    assert other_client.client_code in message
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_rejects_wrong_kinds(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a client with a standard, an administrative and two session enrolments
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        first_session = await enrol(session, learner.client, qualification.sessions[0])
        second_session = await enrol(session, learner.client, qualification.sessions[1])
        standard = await create_occurrence(
            session, kind=OccurrenceKind.STANDARD, units=qualification.units
        )
        standard_enrolment = await enrol(session, learner.client, standard)
    before = await database_rows(sessionmaker)
    cases = [
        ((second_session.id, first_session.id), "administrativeEnrolmentId"),
        ((standard_enrolment.id, first_session.id), "administrativeEnrolmentId"),
        ((learner.administrative.id, standard_enrolment.id), "sessionEnrolmentId"),
        ((learner.administrative.id, learner.administrative.id), "sessionEnrolmentId"),
    ]

    for (administrative_id, session_id), field in cases:
        data = await graphql.data(LINK, _link_input(administrative_id, session_id))

        assert _errors(data, "linkEnrolments") == [("WRONG_OCCURRENCE_KIND", field)]
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_swapped_ids_named(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a learner's enrolments, and another client's session enrolment
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        session_enrolment = await enrol(session, learner.client, qualification.sessions[0])
        other_client = await create_client(session)
        other_session = await enrol(session, other_client, qualification.sessions[0])
    before = await database_rows(sessionmaker)
    administrative_id = gid("Enrolment", learner.administrative.id)

    # when: the ids are passed the wrong way round, for the same client and across clients
    same_client = await graphql.data(
        LINK, _link_input(session_enrolment.id, learner.administrative.id)
    )
    other_clients = await graphql.data(
        LINK, _link_input(other_session.id, learner.administrative.id)
    )

    # then: both say the ids look swapped, before any other rule
    assert _errors(same_client, "linkEnrolments") == [
        ("WRONG_OCCURRENCE_KIND", "administrativeEnrolmentId")
    ]
    assert same_client["linkEnrolments"]["errors"][0]["message"] == (
        f"The ids look swapped: administrativeEnrolmentId names enrolment "
        f"{gid('Enrolment', session_enrolment.id)} ({qualification.sessions[0].code}), which is "
        f"in a SESSION occurrence, and sessionEnrolmentId names enrolment {administrative_id} "
        f"({qualification.administrative.code}), which is in an ADMINISTRATIVE occurrence. Pass "
        f"{administrative_id} as administrativeEnrolmentId and "
        f"{gid('Enrolment', session_enrolment.id)} as sessionEnrolmentId."
    )
    assert _errors(other_clients, "linkEnrolments") == [
        ("WRONG_OCCURRENCE_KIND", "administrativeEnrolmentId")
    ]
    assert "look swapped" in other_clients["linkEnrolments"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_wrong_kind_articles(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        first_session = await enrol(session, learner.client, qualification.sessions[0])
        second_session = await enrol(session, learner.client, qualification.sessions[1])

    sessions_only = await graphql.data(LINK, _link_input(second_session.id, first_session.id))
    administrative_twice = await graphql.data(
        LINK, _link_input(learner.administrative.id, learner.administrative.id)
    )
    unlink_administrative = await graphql.data(UNLINK, _unlink_input(learner.administrative.id))

    first_message = sessions_only["linkEnrolments"]["errors"][0]["message"]
    assert "which is in a SESSION occurrence" in first_message
    assert "it must be an enrolment in an ADMINISTRATIVE occurrence" in first_message
    second_message = administrative_twice["linkEnrolments"]["errors"][0]["message"]
    assert "which is in an ADMINISTRATIVE occurrence" in second_message
    assert "it must be an enrolment in a SESSION occurrence" in second_message
    unlink_message = unlink_administrative["unlinkEnrolments"]["errors"][0]["message"]
    assert "It is in an ADMINISTRATIVE occurrence" in unlink_message


async def test_link_enrolments_rejects_inactive_enrolments(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a withdrawn session, a deleted session, a cancelled administrative enrolment
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        withdrawn = await enrol(session, learner.client, qualification.sessions[0])
        withdrawn.status = EnrolmentStatus.WITHDRAWN
        deleted = await enrol(session, learner.client, qualification.sessions[1])
        deleted.deleted_at = datetime(2026, 3, 1, tzinfo=UTC)
        other = await create_learner(session, qualification, linked_sessions=0)
        other.administrative.status = EnrolmentStatus.CANCELLED
        other_session = await enrol(session, other.client, qualification.sessions[2])
    before = await database_rows(sessionmaker)
    cases = [
        ((learner.administrative.id, withdrawn.id), "sessionEnrolmentId", "WITHDRAWN"),
        ((learner.administrative.id, deleted.id), "sessionEnrolmentId", "deleted"),
        ((other.administrative.id, other_session.id), "administrativeEnrolmentId", "CANCELLED"),
    ]

    for (administrative_id, session_id), field, word in cases:
        data = await graphql.data(LINK, _link_input(administrative_id, session_id))

        assert _errors(data, "linkEnrolments") == [("ENROLMENT_NOT_ACTIVE", field)]
        assert word in data["linkEnrolments"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_rejects_dates_not_overlapping(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        later = await create_occurrence(
            session,
            kind=OccurrenceKind.SESSION,
            units=qualification.units[:1],
            start=date(2026, 11, 28),
            end=date(2026, 12, 11),
        )
        later_enrolment = await enrol(session, learner.client, later)
    before = await database_rows(sessionmaker)

    data = await graphql.data(LINK, _link_input(learner.administrative.id, later_enrolment.id))

    assert _errors(data, "linkEnrolments") == [("DATES_DO_NOT_OVERLAP", "sessionEnrolmentId")]
    message = data["linkEnrolments"]["errors"][0]["message"]
    assert "2026-11-28 to 2026-12-11" in message
    assert "2026-02-02 to 2026-11-27" in message
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_accepts_one_day_overlap(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        last_day = await create_occurrence(
            session,
            kind=OccurrenceKind.SESSION,
            units=qualification.units[:1],
            start=date(2026, 11, 27),
            end=date(2026, 12, 11),
        )
        last_day_enrolment = await enrol(session, learner.client, last_day)

    data = await graphql.data(LINK, _link_input(learner.administrative.id, last_day_enrolment.id))

    assert data["linkEnrolments"]["errors"] == []


async def test_link_enrolments_rejects_no_shared_units(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=0)
        other_units = await create_units(session, 1)
        unrelated = await create_occurrence(
            session,
            kind=OccurrenceKind.SESSION,
            units=other_units,
            start=date(2026, 3, 1),
            end=date(2026, 3, 28),
        )
        unrelated_enrolment = await enrol(session, learner.client, unrelated)
    before = await database_rows(sessionmaker)

    data = await graphql.data(LINK, _link_input(learner.administrative.id, unrelated_enrolment.id))

    assert _errors(data, "linkEnrolments") == [("NO_SHARED_UNITS", "sessionEnrolmentId")]
    assert other_units[0].code in data["linkEnrolments"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_rejects_second_administrative(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a session enrolment linked to one administrative enrolment, and another one
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        second = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=qualification.units
        )
        second_enrolment = await enrol(session, learner.client, second)
    before = await database_rows(sessionmaker)

    # when
    data = await graphql.data(LINK, _link_input(second_enrolment.id, learner.sessions[0].id))

    # then
    assert _errors(data, "linkEnrolments") == [("ALREADY_LINKED", "sessionEnrolmentId")]
    message = data["linkEnrolments"]["errors"][0]["message"]
    assert gid("Enrolment", learner.administrative.id) in message
    assert qualification.administrative.code in message
    assert await database_rows(sessionmaker) == before


async def test_link_enrolments_accepts_relink_after_unlink(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        second = await create_occurrence(
            session, kind=OccurrenceKind.ADMINISTRATIVE, units=qualification.units
        )
        second_enrolment = await enrol(session, learner.client, second)
    await graphql.data(UNLINK, _unlink_input(learner.sessions[0].id))

    data = await graphql.data(LINK, _link_input(second_enrolment.id, learner.sessions[0].id))

    assert data["linkEnrolments"]["errors"] == []
    assert await _link_count(sessionmaker) == 2


async def test_link_enrolments_rejects_unknown_enrolment(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)

    missing = await graphql.data(LINK, _link_input(learner.administrative.id, 10_000))
    malformed = await graphql.data(
        LINK,
        {
            "input": {
                "administrativeEnrolmentId": "not an id",
                "sessionEnrolmentId": gid("Enrolment", learner.sessions[0].id),
            }
        },
    )

    assert _errors(missing, "linkEnrolments") == [("NOT_FOUND", "sessionEnrolmentId")]
    assert _errors(malformed, "linkEnrolments") == [("NOT_FOUND", "administrativeEnrolmentId")]
    assert await database_rows(sessionmaker) == before


async def test_unlink_enrolments_closes_link(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=2)
    requests_before = await roll_up_requests(sessionmaker)

    data = await graphql.data(UNLINK, _unlink_input(learner.sessions[0].id))

    payload = data["unlinkEnrolments"]
    assert payload["errors"] == []
    link = payload["link"]
    assert link["unlinkedAt"] is not None
    assert link["unlinkReason"] == "Unlinked by staff"
    assert link["sessionEnrolment"]["administrativeEnrolment"] is None
    assert link["administrativeEnrolment"]["linkedEnrolments"] == [
        {"id": gid("Enrolment", learner.sessions[1].id)}
    ]
    assert await roll_up_requests(sessionmaker) == [
        *requests_before,
        [learner.administrative.id],
    ]


async def test_unlink_enrolments_keeps_given_reason(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)

    data = await graphql.data(
        UNLINK, _unlink_input(learner.sessions[0].id, "  Linked to the wrong intake\u0301 ")
    )

    assert data["unlinkEnrolments"]["link"]["unlinkReason"] == "Linked to the wrong intak\u00e9"


async def test_unlink_enrolments_rejects_bad_reason(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
    before = await database_rows(sessionmaker)

    too_long = await graphql.data(UNLINK, _unlink_input(learner.sessions[0].id, "x" * 201))
    control = await graphql.data(UNLINK, _unlink_input(learner.sessions[0].id, "bad\u0000"))

    assert _errors(too_long, "unlinkEnrolments") == [("INVALID_INPUT", "reason")]
    assert _errors(control, "unlinkEnrolments") == [("INVALID_INPUT", "reason")]
    assert await database_rows(sessionmaker) == before


async def test_unlink_enrolments_rejects_unlinked_session(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        unlinked = await enrol(session, learner.client, qualification.sessions[1])
    before = await database_rows(sessionmaker)

    never_linked = await graphql.data(UNLINK, _unlink_input(unlinked.id))
    administrative = await graphql.data(UNLINK, _unlink_input(learner.administrative.id))

    assert _errors(never_linked, "unlinkEnrolments") == [("NOT_LINKED", "sessionEnrolmentId")]
    assert _errors(administrative, "unlinkEnrolments") == [("NOT_LINKED", "sessionEnrolmentId")]
    assert "ADMINISTRATIVE" in administrative["unlinkEnrolments"]["errors"][0]["message"]
    assert await database_rows(sessionmaker) == before


async def test_unlink_enrolments_roll_up_drops_session_results(
    graphql: GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # given: a result recorded in a linked session and rolled up
    async with committed(sessionmaker) as session:
        qualification = await create_qualification(session)
        learner = await create_learner(session, qualification, linked_sessions=1)
        unit = qualification.units[0]
        await record_result(
            session,
            enrolment_id=learner.sessions[0].id,
            unit_id=unit.id,
            outcome=Outcome.COMPETENCY_ACHIEVED,
            start_date=None,
            end_date=None,
            recorded_by="trainer",
        )
        await roll_up(session, [learner.administrative.id])
        rolled_up = await _administrative_outcome(session, learner.administrative.id, unit.id)
    assert rolled_up == Outcome.COMPETENCY_ACHIEVED

    # when
    await graphql.data(UNLINK, _unlink_input(learner.sessions[0].id))
    async with committed(sessionmaker) as session:
        requested = (await roll_up_requests(sessionmaker))[-1]
        await roll_up(session, requested)

    # then
    async with sessionmaker() as session:
        outcome = await _administrative_outcome(session, learner.administrative.id, unit.id)
    assert outcome is None


async def _administrative_outcome(
    session: AsyncSession, administrative_id: int, unit_id: int
) -> int | None:
    return await session.scalar(
        select(EnrolledUnit.outcome).where(
            EnrolledUnit.enrolment_id == administrative_id, EnrolledUnit.unit_id == unit_id
        )
    )
