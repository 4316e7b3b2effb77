"""recordAttendance: attendance at classes, on session and standard enrolments only."""

from __future__ import annotations

from typing import Any

from models.enums import EnrolmentStatus, OccurrenceKind
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    Qualification,
    create_class,
    create_client,
    create_occurrence,
    given_qualification,
    insert_enrolment,
    snapshot,
)

RECORD_ATTENDANCE = """
mutation ($input: RecordAttendanceInput!) {
  recordAttendance(input: $input) {
    attendance { id notes hours attendanceType { code } class { id } enrolment { id } }
    errors { code message field }
  }
}
"""

ENROLMENT_ATTENDANCES = """
query ($id: ID!) { enrolment(id: $id) { attendances { id attendanceType { code } notes } } }
"""


async def _given_class(graphql: GraphQLClient) -> tuple[Qualification, str, str]:
    """Return the qualification, a three-hour class of its first session, and the client."""
    qualification = await given_qualification(graphql)
    class_id = await create_class(
        graphql,
        qualification.session_ids[0],
        "2026-03-02T09:00:00+11:00",
        "2026-03-02T12:00:00+11:00",
    )
    client_id = await create_client(graphql, "C001")
    return qualification, class_id, client_id


def _input(class_id: str, enrolment_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "classId": class_id,
        "enrolmentId": enrolment_id,
        "attendanceType": "PRESENT",
        **fields,
    }


async def _errors(graphql: GraphQLClient, input: dict[str, Any]) -> list[dict[str, Any]]:
    data = await graphql.data(RECORD_ATTENDANCE, {"input": input})
    assert data["recordAttendance"]["attendance"] is None
    errors: list[dict[str, Any]] = data["recordAttendance"]["errors"]
    return errors


def _codes(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(error["code"], error["field"]) for error in errors]


async def test_record_attendance_on_session(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])

    data = await graphql.data(
        RECORD_ATTENDANCE,
        {"input": _input(class_id, enrolment_id, notes="Arrived late\nafter the bus")},
    )

    payload = data["recordAttendance"]
    assert payload["errors"] == []
    attendance = payload["attendance"]
    assert attendance["attendanceType"] == {"code": "PRESENT"}
    assert attendance["hours"] == "3.00"
    assert attendance["notes"] == "Arrived late\nafter the bus"
    assert attendance["class"] == {"id": class_id}
    assert attendance["enrolment"] == {"id": enrolment_id}


async def test_record_attendance_again_updates(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    first = await graphql.data(
        RECORD_ATTENDANCE, {"input": _input(class_id, enrolment_id, attendanceType="ABSENT")}
    )

    second = await graphql.data(
        RECORD_ATTENDANCE,
        {"input": _input(class_id, enrolment_id, attendanceType=" sick ", notes="Certificate")},
    )

    attendance = second["recordAttendance"]["attendance"]
    assert attendance["id"] == first["recordAttendance"]["attendance"]["id"]
    assert attendance["hours"] == "0.00"
    listed = await graphql.data(ENROLMENT_ATTENDANCES, {"id": enrolment_id})
    assert listed["enrolment"]["attendances"] == [
        {"id": attendance["id"], "attendanceType": {"code": "SICK"}, "notes": "Certificate"}
    ]


async def test_record_attendance_absent_counts_negative(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])

    data = await graphql.data(
        RECORD_ATTENDANCE, {"input": _input(class_id, enrolment_id, attendanceType="ABSENT")}
    )

    assert data["recordAttendance"]["attendance"]["hours"] == "-3.00"


async def test_record_attendance_rejects_unknown_type(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, enrolment_id, attendanceType="LATE"))

    assert _codes(errors) == [("INVALID_INPUT", "attendanceType")]
    assert "PRESENT, ABSENT, SICK" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_record_attendance_rejects_administrative(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    administrative = await insert_enrolment(graphql, client_id, qualification.administrative_id)
    session_enrolment = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, administrative))

    assert _codes(errors) == [("ATTENDANCE_NOT_ALLOWED_ON_ADMINISTRATIVE", "enrolmentId")]
    assert session_enrolment in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_record_attendance_rejects_other_occurrence_class(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[1])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, enrolment_id))

    assert _codes(errors) == [("INVALID_INPUT", "classId")]
    assert "BSB50420-S1-T1" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_record_attendance_rejects_cancelled(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(
        graphql, client_id, qualification.session_ids[0], status=EnrolmentStatus.CANCELLED
    )
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, enrolment_id))

    assert _codes(errors) == [("ENROLMENT_NOT_ACTIVE", "enrolmentId")]
    assert await snapshot(graphql) == before


async def test_record_attendance_rejects_deleted(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(
        graphql, client_id, qualification.session_ids[0], deleted=True
    )
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, enrolment_id))

    assert _codes(errors) == [("ENROLMENT_NOT_ACTIVE", "enrolmentId")]
    assert await snapshot(graphql) == before


async def test_record_attendance_accepts_withdrawn(graphql: GraphQLClient) -> None:
    # A class attended before the withdrawal still counts.
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(
        graphql, client_id, qualification.session_ids[0], status=EnrolmentStatus.WITHDRAWN
    )

    data = await graphql.data(RECORD_ATTENDANCE, {"input": _input(class_id, enrolment_id)})

    assert data["recordAttendance"]["errors"] == []


async def test_record_attendance_on_standard(graphql: GraphQLClient) -> None:
    qualification, _, client_id = await _given_class(graphql)
    standard = await create_occurrence(
        graphql, qualification.programme_id, "BSB50420-STD", OccurrenceKind.STANDARD
    )
    class_id = await create_class(
        graphql, standard, "2026-04-01T09:00:00+11:00", "2026-04-01T10:30:00+11:00"
    )
    enrolment_id = await insert_enrolment(graphql, client_id, standard)

    data = await graphql.data(RECORD_ATTENDANCE, {"input": _input(class_id, enrolment_id)})

    assert data["recordAttendance"]["attendance"]["hours"] == "1.50"


async def test_record_attendance_rejects_missing_class(graphql: GraphQLClient) -> None:
    qualification, _, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(encode_id("Class", 999_999), enrolment_id))

    assert _codes(errors) == [("NOT_FOUND", "classId")]
    assert await snapshot(graphql) == before


async def test_record_attendance_rejects_control_in_notes(graphql: GraphQLClient) -> None:
    qualification, class_id, client_id = await _given_class(graphql)
    enrolment_id = await insert_enrolment(graphql, client_id, qualification.session_ids[0])
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(class_id, enrolment_id, notes="late\u0007"))

    assert _codes(errors) == [("INVALID_INPUT", "notes")]
    assert await snapshot(graphql) == before
