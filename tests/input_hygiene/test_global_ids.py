"""Global ids: anything that is not an id of the expected type is NOT_FOUND, naming the field."""

from __future__ import annotations

import base64

import pytest

from models.references import global_id, with_article
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import snapshot
from tests.input_hygiene.world import given_world, send

# (mutation, input field, the type its ids name, whether the field is a list)
ID_FIELDS = [
    ("createProgramme", "unitIds", "Unit", True),
    ("createOccurrence", "programmeId", "Programme", False),
    ("createOccurrence", "unitIds", "Unit", True),
    ("createClient", "partnerId", "Partner", False),
    ("addOccurrenceUnits", "occurrenceId", "Occurrence", False),
    ("addOccurrenceUnits", "unitIds", "Unit", True),
    ("removeOccurrenceUnit", "occurrenceId", "Occurrence", False),
    ("removeOccurrenceUnit", "unitId", "Unit", False),
    ("createClass", "occurrenceId", "Occurrence", False),
    ("recordAttendance", "classId", "Class", False),
    ("recordAttendance", "enrolmentId", "Enrolment", False),
    ("recordPayment", "enrolmentId", "Enrolment", False),
]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _bad_ids(type_name: str) -> list[str]:
    other_type = "Client" if type_name != "Client" else "Unit"
    return [
        "not base64!",
        "",
        "YWJj",  # valid base64 of "abc", which has no type
        "VW5pdDo",  # "Unit:" cut short, so the padding is wrong
        _b64(f"{type_name}:abc".encode()),
        _b64(f"{type_name}:-1".encode()),
        _b64(b"\xff\xfe:1"),
        encode_id(other_type, 1),
    ]


async def test_global_ids_rejected_naming_field(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)

    for mutation, field, type_name, is_list in ID_FIELDS:
        for bad_id in _bad_ids(type_name):
            input = world.valid_input(mutation)
            input[field] = [bad_id] if is_list else bad_id

            payload = await send(graphql, mutation, input)

            case = (mutation, field, bad_id)
            assert [(error["code"], error["field"]) for error in payload["errors"]] == [
                ("NOT_FOUND", field)
            ], case
            assert type_name in payload["errors"][0]["message"], case

    assert await snapshot(graphql) == before


async def test_global_ids_missing_rows_not_found(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)

    for mutation, field, type_name, is_list in ID_FIELDS:
        missing = encode_id(type_name, 999_999)
        input = world.valid_input(mutation)
        input[field] = [missing] if is_list else missing

        payload = await send(graphql, mutation, input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("NOT_FOUND", field)
        ], (mutation, field)

    assert await snapshot(graphql) == before


def test_global_ids_match_in_models_and_schema() -> None:
    for type_name, pk in [("Enrolment", 1), ("Occurrence", 77), ("Unit", 2**62)]:
        assert global_id(type_name, pk) == encode_id(type_name, pk), (type_name, pk)


async def test_global_id_messages_use_articles(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    input = world.valid_input("createClass")
    input["occurrenceId"] = encode_id("Client", 1)

    wrong_type = await send(graphql, "createClass", input)
    input["occurrenceId"] = "8"
    malformed = await send(graphql, "createClass", input)

    assert wrong_type["errors"][0]["message"] == (
        f"occurrenceId {encode_id('Client', 1)!r} is the id of a Client, not of an "
        "Occurrence; use the id field of an Occurrence."
    )
    assert malformed["errors"][0]["message"] == (
        "occurrenceId '8' is not a valid id; use the id field of an Occurrence."
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ADMINISTRATIVE", "an ADMINISTRATIVE"),
        ("SESSION", "a SESSION"),
        ("STANDARD", "a STANDARD"),
        ("Enrolment", "an Enrolment"),
        ("EnrolmentLink", "an EnrolmentLink"),
        ("Occurrence", "an Occurrence"),
        ("Attendance", "an Attendance"),
        ("Unit", "a Unit"),
        ("USI", "a USI"),
        ("Client", "a Client"),
        ("ReconciliationRun", "a ReconciliationRun"),
    ],
)
def test_with_article_follows_sound(name: str, expected: str) -> None:
    assert with_article(name) == expected
