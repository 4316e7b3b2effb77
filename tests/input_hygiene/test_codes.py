"""Codes: unit codes, client codes and USIs with their check character."""

from __future__ import annotations

from models.validation import USI_ALPHABET
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import snapshot, valid_usi
from tests.input_hygiene.world import given_world, returned, send


async def test_unit_code_accepted_forms(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    cases = [
        ("BSBWHS411", "BSBWHS411"),
        ("ABCDEFGHIJ12", "ABCDEFGHIJ12"),
        (" bsbwhs412 ", "BSBWHS412"),
        ("7", "7"),
    ]

    for sent, stored in cases:
        input = world.valid_input("createUnit")
        input["code"] = sent

        payload = await send(graphql, "createUnit", input)

        assert payload["errors"] == [], sent
        assert returned(payload, "code") == stored, sent


async def test_unit_code_rejected_forms(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)

    for sent in ["ABCDEFGHIJ123", "BSB-411", "BSB 411", "\u00c4BC1", "BSB_1", ""]:
        input = world.valid_input("createUnit")
        input["code"] = sent

        payload = await send(graphql, "createUnit", input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("INVALID_INPUT", "code")
        ], sent

    assert await snapshot(graphql) == before


async def test_client_code_ten_characters(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    input = world.valid_input("createClient")
    input["clientCode"] = "C123456789"
    too_long = world.valid_input("createClient")
    too_long["clientCode"] = "C1234567890"

    accepted = await send(graphql, "createClient", input)
    rejected = await send(graphql, "createClient", too_long)

    assert returned(accepted, "clientCode") == "C123456789"
    assert [(error["code"], error["field"]) for error in rejected["errors"]] == [
        ("INVALID_INPUT", "clientCode")
    ]


async def test_usi_valid_check_characters(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    bodies = ["BNGH7C75F", "222222222", "ZZZZZZZZZ", "23456789A", "JKLMNPQRS", "WXYZ2345T"]

    for body in bodies:
        usi = valid_usi(body)
        input = world.valid_input("createClient")
        input["usi"] = f" {usi.lower()} "

        payload = await send(graphql, "createClient", input)

        assert payload["errors"] == [], usi
        assert returned(payload, "usi") == usi, usi


async def test_usi_wrong_check_characters(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    usi = valid_usi("BNGH7C75F")
    before = await snapshot(graphql)

    for character in USI_ALPHABET.replace(usi[9], ""):
        input = world.valid_input("createClient")
        input["usi"] = usi[:9] + character

        payload = await send(graphql, "createClient", input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("INVALID_USI", "usi")
        ], character

    assert await snapshot(graphql) == before


async def test_usi_wrong_shape(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    usi = valid_usi("BNGH7C75F")
    before = await snapshot(graphql)
    # Too short, too long, and each of 0, 1, I and O, which the USI alphabet leaves out.
    cases = [usi[:9], usi + "2", "0" + usi[1:], "1" + usi[1:], "I" + usi[1:], "O" + usi[1:]]

    for sent in cases:
        input = world.valid_input("createClient")
        input["usi"] = sent

        payload = await send(graphql, "createClient", input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("INVALID_USI", "usi")
        ], sent

    assert await snapshot(graphql) == before
