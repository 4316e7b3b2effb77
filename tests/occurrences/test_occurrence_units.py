"""addOccurrenceUnits and removeOccurrenceUnit: units follow into the enrolments and links."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from models.enums import EnrolmentStatus, OccurrenceKind, Outcome
from models.outbox import ROLL_UP_TASK
from models.tables import EnrolledUnit, OutboxMessage
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    create_client,
    create_occurrence,
    create_programme,
    create_unit,
    given_qualification,
    insert_enrolment,
    insert_link,
    pk,
    sessionmaker,
    set_outcome,
    snapshot,
)

ADD_UNITS = """
mutation ($input: AddOccurrenceUnitsInput!) {
  addOccurrenceUnits(input: $input) {
    occurrence { units { code } }
    errors { code message field }
  }
}
"""

REMOVE_UNIT = """
mutation ($input: RemoveOccurrenceUnitInput!) {
  removeOccurrenceUnit(input: $input) {
    occurrence { units { code } }
    errors { code message field }
  }
}
"""

ENROLMENT = """
query ($id: ID!) {
  enrolment(id: $id) {
    results { unit { code } source outcome }
    rollUp { pending }
    links { unlinkedAt unlinkReason }
  }
}
"""


async def _enrolment(graphql: GraphQLClient, enrolment_id: str) -> dict[str, Any]:
    data = await graphql.data(ENROLMENT, {"id": enrolment_id})
    enrolment: dict[str, Any] = data["enrolment"]
    return enrolment


async def _roll_up_messages(graphql: GraphQLClient) -> list[dict[str, Any]]:
    async with sessionmaker(graphql)() as session:
        payloads = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.task_name == ROLL_UP_TASK)
            .order_by(OutboxMessage.id)
        )
        return list(payloads)


async def _rows_of_unit(graphql: GraphQLClient, unit_id: str) -> int:
    async with sessionmaker(graphql)() as session:
        count = await session.scalar(
            select(func.count()).where(EnrolledUnit.unit_id == pk(unit_id))
        )
        assert count is not None
        return count


def _codes(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [(error["code"], error["field"]) for error in payload["errors"]]


async def test_add_units_reaches_active_session_enrolments(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[1]
    active = await insert_enrolment(graphql, await create_client(graphql, "C001"), session_id)
    withdrawn = await insert_enrolment(
        graphql,
        await create_client(graphql, "C002"),
        session_id,
        status=EnrolmentStatus.WITHDRAWN,
    )
    extra = await create_unit(graphql, "BSBTWK503")

    data = await graphql.data(
        ADD_UNITS, {"input": {"occurrenceId": session_id, "unitIds": [extra]}}
    )

    assert data["addOccurrenceUnits"]["errors"] == []
    assert data["addOccurrenceUnits"]["occurrence"]["units"] == [
        {"code": "BSBPEF502"},
        {"code": "BSBTWK503"},
    ]
    assert (await _enrolment(graphql, active))["results"] == [
        {"unit": {"code": "BSBPEF502"}, "source": "RECORDED", "outcome": None},
        {"unit": {"code": "BSBTWK503"}, "source": "RECORDED", "outcome": None},
    ]
    assert (await _enrolment(graphql, withdrawn))["results"] == [
        {"unit": {"code": "BSBPEF502"}, "source": "RECORDED", "outcome": None}
    ]
    assert await _roll_up_messages(graphql) == []


async def test_add_units_skips_deleted_enrolments(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    await insert_enrolment(graphql, client_id, qualification.session_ids[1], deleted=True)
    extra = await create_unit(graphql, "BSBTWK503")

    await graphql.data(
        ADD_UNITS, {"input": {"occurrenceId": qualification.session_ids[1], "unitIds": [extra]}}
    )

    assert await _rows_of_unit(graphql, extra) == 0


async def test_add_units_rolls_up_administrative(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    administrative = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    extra = await create_unit(graphql, "BSBTWK503")

    await graphql.data(
        ADD_UNITS,
        {"input": {"occurrenceId": qualification.administrative_id, "unitIds": [extra]}},
    )

    enrolment = await _enrolment(graphql, administrative)
    assert enrolment["results"][-1] == {
        "unit": {"code": "BSBTWK503"},
        "source": "ROLLED_UP",
        "outcome": None,
    }
    assert enrolment["rollUp"] == {"pending": True}
    messages = await _roll_up_messages(graphql)
    assert [message["administrative_enrolment_ids"] for message in messages] == [
        [pk(administrative)]
    ]


async def test_add_units_attached_unit_is_no_op(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    await insert_enrolment(graphql, client_id, qualification.administrative_id)
    before = await snapshot(graphql)

    data = await graphql.data(
        ADD_UNITS,
        {
            "input": {
                "occurrenceId": qualification.administrative_id,
                "unitIds": [qualification.unit_ids[0]],
            }
        },
    )

    assert data["addOccurrenceUnits"]["errors"] == []
    assert len(data["addOccurrenceUnits"]["occurrence"]["units"]) == 3
    assert await snapshot(graphql) == before


async def test_add_units_rejects_missing_unit(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    extra = await create_unit(graphql, "BSBTWK503")
    before = await snapshot(graphql)

    data = await graphql.data(
        ADD_UNITS,
        {
            "input": {
                "occurrenceId": qualification.session_ids[0],
                "unitIds": [extra, encode_id("Unit", 999_999)],
            }
        },
    )

    assert _codes(data["addOccurrenceUnits"]) == [("NOT_FOUND", "unitIds")]
    assert await snapshot(graphql) == before


async def test_add_units_rejects_missing_occurrence(graphql: GraphQLClient) -> None:
    extra = await create_unit(graphql, "BSBTWK503")
    before = await snapshot(graphql)

    data = await graphql.data(
        ADD_UNITS,
        {"input": {"occurrenceId": encode_id("Occurrence", 999_999), "unitIds": [extra]}},
    )

    assert _codes(data["addOccurrenceUnits"]) == [("NOT_FOUND", "occurrenceId")]
    assert await snapshot(graphql) == before


async def test_remove_unit_drops_unrecorded_results(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]
    enrolment = await insert_enrolment(graphql, await create_client(graphql, "C001"), session_id)

    data = await graphql.data(
        REMOVE_UNIT,
        {"input": {"occurrenceId": session_id, "unitId": qualification.unit_ids[1]}},
    )

    assert data["removeOccurrenceUnit"]["errors"] == []
    assert data["removeOccurrenceUnit"]["occurrence"]["units"] == [{"code": "BSBLDR523"}]
    results = (await _enrolment(graphql, enrolment))["results"]
    assert [result["unit"]["code"] for result in results] == ["BSBLDR523"]
    assert await _rows_of_unit(graphql, qualification.unit_ids[1]) == 0


async def test_remove_unit_rejects_recorded_outcome(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]
    unit_id = qualification.unit_ids[1]
    first = await insert_enrolment(graphql, await create_client(graphql, "C001"), session_id)
    second = await insert_enrolment(graphql, await create_client(graphql, "C002"), session_id)
    await set_outcome(graphql, first, unit_id, Outcome.COMPETENCY_ACHIEVED)
    await set_outcome(graphql, second, unit_id, Outcome.CONTINUING)
    before = await snapshot(graphql)

    data = await graphql.data(
        REMOVE_UNIT, {"input": {"occurrenceId": session_id, "unitId": unit_id}}
    )

    payload = data["removeOccurrenceUnit"]
    assert _codes(payload) == [("UNIT_HAS_RESULTS", "unitId")]
    message = payload["errors"][0]["message"]
    assert "2 enrolments" in message
    assert first in message
    assert "BSBOPS502" in message
    assert await snapshot(graphql) == before


async def test_remove_unit_ignores_deleted_enrolment_outcome(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]
    unit_id = qualification.unit_ids[1]
    deleted = await insert_enrolment(
        graphql, await create_client(graphql, "C001"), session_id, deleted=True
    )
    await set_outcome(graphql, deleted, unit_id, Outcome.COMPETENCY_ACHIEVED)

    data = await graphql.data(
        REMOVE_UNIT, {"input": {"occurrenceId": session_id, "unitId": unit_id}}
    )

    assert data["removeOccurrenceUnit"]["errors"] == []
    # The deleted enrolment's result stays as history.
    assert await _rows_of_unit(graphql, unit_id) == 1


async def test_remove_unit_closes_link_without_shared_unit(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    local = await create_unit(graphql, "ZZLOCAL01", "Orientation to the campus")
    programme = await create_programme(
        graphql, "BSB50420-S3", [qualification.unit_ids[2], local], "Emotional intelligence plus"
    )
    session_occurrence = await create_occurrence(
        graphql, programme, "BSB50420-S3-T4", OccurrenceKind.SESSION
    )
    administrative = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    session_enrolment = await insert_enrolment(graphql, client_id, session_occurrence)
    await insert_link(graphql, administrative, session_enrolment)

    data = await graphql.data(
        REMOVE_UNIT,
        {"input": {"occurrenceId": session_occurrence, "unitId": qualification.unit_ids[2]}},
    )

    assert data["removeOccurrenceUnit"]["errors"] == []
    links = (await _enrolment(graphql, session_enrolment))["links"]
    assert len(links) == 1
    assert links[0]["unlinkedAt"] is not None
    assert links[0]["unlinkReason"].startswith("NO_SHARED_UNITS: ")
    assert "BSBPEF502" in links[0]["unlinkReason"]
    assert (await _enrolment(graphql, administrative))["rollUp"] == {"pending": True}
    messages = await _roll_up_messages(graphql)
    assert [message["administrative_enrolment_ids"] for message in messages] == [
        [pk(administrative)]
    ]


async def test_remove_unit_keeps_link_with_shared_unit(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    administrative = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    await insert_link(graphql, administrative, session_enrolment)

    await graphql.data(
        REMOVE_UNIT,
        {
            "input": {
                "occurrenceId": qualification.session_ids[0],
                "unitId": qualification.unit_ids[1],
            }
        },
    )

    links = (await _enrolment(graphql, session_enrolment))["links"]
    assert [link["unlinkedAt"] for link in links] == [None]
    # The session lost a unit, so the administrative enrolment is rolled up again.
    assert (await _enrolment(graphql, administrative))["rollUp"] == {"pending": True}


async def test_remove_unit_closes_link_from_administrative(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    client_id = await create_client(graphql, "C001")
    administrative = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[1])
    await insert_link(graphql, administrative, session_enrolment)

    data = await graphql.data(
        REMOVE_UNIT,
        {
            "input": {
                "occurrenceId": qualification.administrative_id,
                "unitId": qualification.unit_ids[2],
            }
        },
    )

    assert data["removeOccurrenceUnit"]["errors"] == []
    links = (await _enrolment(graphql, administrative))["links"]
    assert links[0]["unlinkReason"].startswith("NO_SHARED_UNITS: ")


async def test_remove_unit_rejects_last_unit(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    data = await graphql.data(
        REMOVE_UNIT,
        {
            "input": {
                "occurrenceId": qualification.session_ids[1],
                "unitId": qualification.unit_ids[2],
            }
        },
    )

    assert _codes(data["removeOccurrenceUnit"]) == [("INVALID_INPUT", "unitId")]
    assert await snapshot(graphql) == before


async def test_remove_unit_not_attached_is_no_op(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    data = await graphql.data(
        REMOVE_UNIT,
        {
            "input": {
                "occurrenceId": qualification.session_ids[1],
                "unitId": qualification.unit_ids[0],
            }
        },
    )

    assert data["removeOccurrenceUnit"]["errors"] == []
    assert await snapshot(graphql) == before


async def test_remove_unit_rejects_missing_unit(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    data = await graphql.data(
        REMOVE_UNIT,
        {
            "input": {
                "occurrenceId": qualification.session_ids[0],
                "unitId": encode_id("Unit", 999_999),
            }
        },
    )

    assert _codes(data["removeOccurrenceUnit"]) == [("NOT_FOUND", "unitId")]
    assert await snapshot(graphql) == before


async def test_readd_unit_restores_enrolment_results(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]
    unit_id = qualification.unit_ids[1]
    enrolment = await insert_enrolment(graphql, await create_client(graphql, "C001"), session_id)
    await graphql.data(REMOVE_UNIT, {"input": {"occurrenceId": session_id, "unitId": unit_id}})

    await graphql.data(ADD_UNITS, {"input": {"occurrenceId": session_id, "unitIds": [unit_id]}})

    results = (await _enrolment(graphql, enrolment))["results"]
    assert [result["unit"]["code"] for result in results] == ["BSBLDR523", "BSBOPS502"]
