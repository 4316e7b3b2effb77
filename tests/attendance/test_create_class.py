"""createClass: classes of session and standard occurrences, at timezone-aware instants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.enums import OccurrenceKind
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import create_occurrence, given_qualification, snapshot

CREATE_CLASS = """
mutation ($input: CreateClassInput!) {
  createClass(input: $input) {
    class { id startsAt endsAt location occurrence { code } }
    errors { code message field }
  }
}
"""

OCCURRENCE_CLASSES = """
query ($id: ID!) { occurrence(id: $id) { classes { startsAt } } }
"""


def _input(occurrence_id: str, starts_at: str, ends_at: str, **fields: Any) -> dict[str, Any]:
    return {"occurrenceId": occurrence_id, "startsAt": starts_at, "endsAt": ends_at, **fields}


async def _errors(graphql: GraphQLClient, input: dict[str, Any]) -> list[dict[str, Any]]:
    data = await graphql.data(CREATE_CLASS, {"input": input})
    assert data["createClass"]["class"] is None
    errors: list[dict[str, Any]] = data["createClass"]["errors"]
    return errors


def _codes(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(error["code"], error["field"]) for error in errors]


async def test_create_class_in_session(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    session_id = qualification.session_ids[0]

    data = await graphql.data(
        CREATE_CLASS,
        {
            "input": _input(
                session_id,
                "2026-03-02T09:00:00+11:00",
                "2026-03-02T16:30:00+11:00",
                location=" Room 4 ",
            )
        },
    )

    payload = data["createClass"]
    assert payload["errors"] == []
    created = payload["class"]
    assert datetime.fromisoformat(created["startsAt"]) == datetime.fromisoformat(
        "2026-03-02T09:00:00+11:00"
    )
    assert created["location"] == "Room 4"
    assert created["occurrence"] == {"code": "BSB50420-S1-T1"}
    classes = await graphql.data(OCCURRENCE_CLASSES, {"id": session_id})
    assert len(classes["occurrence"]["classes"]) == 1


async def test_create_class_in_standard(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    standard = await create_occurrence(
        graphql, qualification.programme_id, "BSB50420-STD", OccurrenceKind.STANDARD
    )

    data = await graphql.data(
        CREATE_CLASS,
        {"input": _input(standard, "2026-03-02T09:00:00Z", "2026-03-02T12:00:00Z")},
    )

    assert data["createClass"]["errors"] == []


async def test_create_class_rejects_administrative(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(
            qualification.administrative_id,
            "2026-03-02T09:00:00+11:00",
            "2026-03-02T12:00:00+11:00",
        ),
    )

    assert _codes(errors) == [("WRONG_OCCURRENCE_KIND", "occurrenceId")]
    assert "ADMINISTRATIVE" in errors[0]["message"]
    assert "SESSION" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_class_rejects_time_without_offset(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(qualification.session_ids[0], "2026-03-02T09:00:00", "2026-03-02T12:00:00+11:00"),
    )

    assert _codes(errors) == [("INVALID_INPUT", "startsAt")]
    assert await snapshot(graphql) == before


async def test_create_class_rejects_end_before_start(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(
            qualification.session_ids[0], "2026-03-02T12:00:00+11:00", "2026-03-02T12:00:00+11:00"
        ),
    )

    assert _codes(errors) == [("INVALID_INPUT", "endsAt")]
    assert await snapshot(graphql) == before


async def test_create_class_uses_local_date_of_offset(graphql: GraphQLClient) -> None:
    # The session starts on 2 February. 08:00 in Sydney on that day is still 1 February in UTC.
    qualification = await given_qualification(graphql)

    data = await graphql.data(
        CREATE_CLASS,
        {
            "input": _input(
                qualification.session_ids[0],
                "2026-02-02T08:00:00+11:00",
                "2026-02-02T10:00:00+11:00",
            )
        },
    )

    assert data["createClass"]["errors"] == []


async def test_create_class_rejects_day_before_start(graphql: GraphQLClient) -> None:
    # 23:30 on 1 February at UTC-01:00 is already 2 February in UTC, but 1 February locally.
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(
            qualification.session_ids[0], "2026-02-01T23:30:00-01:00", "2026-02-02T01:00:00-01:00"
        ),
    )

    assert _codes(errors) == [("INVALID_INPUT", "startsAt")]
    assert "2026-02-01" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_class_rejects_end_after_occurrence(graphql: GraphQLClient) -> None:
    qualification = await given_qualification(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(
            qualification.session_ids[0], "2026-05-29T09:00:00+10:00", "2026-05-30T09:00:00+10:00"
        ),
    )

    assert _codes(errors) == [("INVALID_INPUT", "endsAt")]
    assert await snapshot(graphql) == before


async def test_create_class_rejects_missing_occurrence(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    errors = await _errors(
        graphql,
        _input(
            encode_id("Occurrence", 999_999),
            "2026-03-02T09:00:00+11:00",
            "2026-03-02T12:00:00+11:00",
        ),
    )

    assert _codes(errors) == [("NOT_FOUND", "occurrenceId")]
    assert await snapshot(graphql) == before
