"""Text inputs: trimmed, NFC-normalised, free of control characters and limited in length."""

from __future__ import annotations

from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import snapshot
from tests.input_hygiene.world import given_world, returned, send

# (mutation, input field, maximum length). The output field has the input field's name.
TEXT_FIELDS = [
    ("createUnit", "title", 200),
    ("createProgramme", "code", 30),
    ("createProgramme", "name", 200),
    ("createPartner", "code", 30),
    ("createPartner", "name", 200),
    ("createOccurrence", "code", 30),
    ("createOccurrence", "name", 200),
    ("createOccurrence", "location", 200),
    ("createClient", "clientCode", 10),
    ("createClient", "givenName", 100),
    ("createClient", "surname", 100),
    ("createClass", "location", 200),
    ("recordAttendance", "notes", 2000),
    ("recordPayment", "method", 50),
    ("recordPayment", "reference", 100),
]

# C0 controls, DEL and C1 controls (U+0085 is NEXT LINE, U+009F the last C1 control).
CONTROL_CHARACTERS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\x9f"]
LINE_CHARACTERS = ["\n", "\r", "\t"]
MULTILINE_FIELDS = {("recordAttendance", "notes")}


async def test_text_trimmed_and_composed(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)

    for mutation, field, _ in TEXT_FIELDS:
        n = next(world.numbers)
        input = world.valid_input(mutation)
        # "e" followed by U+0301 COMBINING ACUTE ACCENT composes to U+00E9 under NFC.
        input[field] = f"  Cafe\u0301{n} \t"

        payload = await send(graphql, mutation, input)

        assert payload["errors"] == [], (mutation, field)
        assert returned(payload, field) == f"Caf\u00e9{n}", (mutation, field)


async def test_text_rejects_control_characters(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)

    for mutation, field, _ in TEXT_FIELDS:
        characters = CONTROL_CHARACTERS
        if (mutation, field) not in MULTILINE_FIELDS:
            characters = CONTROL_CHARACTERS + LINE_CHARACTERS
        for character in characters:
            input = world.valid_input(mutation)
            input[field] = f"Bad{character}{next(world.numbers)}"

            payload = await send(graphql, mutation, input)

            case = (mutation, field, hex(ord(character)))
            assert [(error["code"], error["field"]) for error in payload["errors"]] == [
                ("INVALID_INPUT", field)
            ], case
            assert f"U+{ord(character):04X}" in payload["errors"][0]["message"], case

    assert await snapshot(graphql) == before


async def test_text_notes_keep_line_breaks(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    input = world.valid_input("recordAttendance")
    input["notes"] = "Left early.\r\n\tBus strike."

    payload = await send(graphql, "recordAttendance", input)

    assert returned(payload, "notes") == "Left early.\r\n\tBus strike."


async def test_text_length_limits(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)

    for mutation, field, maximum in TEXT_FIELDS:
        for length in (maximum, maximum + 1):
            prefix = str(next(world.numbers))
            value = prefix + "x" * (length - len(prefix))
            input = world.valid_input(mutation)
            input[field] = value

            payload = await send(graphql, mutation, input)

            case = (mutation, field, length)
            if length == maximum:
                assert payload["errors"] == [], case
                assert returned(payload, field) == value, case
            else:
                assert [(error["code"], error["field"]) for error in payload["errors"]] == [
                    ("INVALID_INPUT", field)
                ], case
                assert str(maximum) in payload["errors"][0]["message"], case


async def test_text_blank_required_rejected(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)
    required = [
        ("createUnit", "title"),
        ("createProgramme", "code"),
        ("createProgramme", "name"),
        ("createOccurrence", "name"),
        ("createClient", "clientCode"),
        ("createClient", "surname"),
        ("createPartner", "name"),
    ]

    for mutation, field in required:
        input = world.valid_input(mutation)
        input[field] = " \u3000 "

        payload = await send(graphql, mutation, input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("INVALID_INPUT", field)
        ], (mutation, field)

    assert await snapshot(graphql) == before


async def test_text_other_scripts_returned_exactly(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    names = [
        # Outside the Basic Multilingual Plane: CJK Extension B and an emoji.
        ("givenName", "\U0002070e\U00020731"),
        ("surname", "Nguyen \U0001f998"),
        # Right-to-left: Hebrew and Arabic.
        ("givenName", "\u05d3\u05e0\u05d4"),
        ("surname", "\u0645\u0631\u064a\u0645"),
    ]

    for field, name in names:
        input = world.valid_input("createClient")
        input[field] = name

        payload = await send(graphql, "createClient", input)

        assert payload["errors"] == [], (field, name)
        assert returned(payload, field) == name, (field, name)


async def test_text_length_counts_characters(graphql: GraphQLClient) -> None:
    # 100 characters outside the BMP are 200 UTF-16 code units and 400 UTF-8 bytes; the limit
    # counts characters, as PostgreSQL's varchar(100) does.
    world = await given_world(graphql)
    input = world.valid_input("createClient")
    input["surname"] = "\U0002070e" * 100

    accepted = await send(graphql, "createClient", input)
    input = world.valid_input("createClient")
    input["surname"] = "\U0002070e" * 101
    rejected = await send(graphql, "createClient", input)

    assert returned(accepted, "surname") == "\U0002070e" * 100
    assert [error["field"] for error in rejected["errors"]] == ["surname"]


async def test_client_search_rejects_control_characters(graphql: GraphQLClient) -> None:
    await given_world(graphql)

    for character in CONTROL_CHARACTERS:
        body = await graphql.execute(
            "query ($search: String) { clients(search: $search) { edges { cursor } } }",
            {"search": f"Smi{character}th"},
        )

        (error,) = body["errors"]
        assert error["extensions"]["code"] == "INVALID_INPUT", (character, body)
        assert f"U+{ord(character):04X} at position 3" in error["message"], (character, body)


async def test_client_search_rejects_long_text(graphql: GraphQLClient) -> None:
    body = await graphql.execute(
        "query ($search: String) { clients(search: $search) { edges { cursor } } }",
        {"search": "x" * 255},
    )

    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", body
    assert "search is 255 characters long; at most 254" in error["message"], body
