"""Dates and decimal amounts."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import snapshot
from tests.input_hygiene.world import document, given_world, returned, send


async def test_dates_start_after_end_rejected(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    input = world.valid_input("createOccurrence")
    input["startDate"] = "2026-06-02"
    input["endDate"] = "2026-06-01"
    before = await snapshot(graphql)

    payload = await send(graphql, "createOccurrence", input)

    assert [(error["code"], error["field"]) for error in payload["errors"]] == [
        ("INVALID_INPUT", "startDate")
    ]
    assert "2026-06-02" in payload["errors"][0]["message"]
    assert await snapshot(graphql) == before


async def test_dates_leap_day_accepted(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    occurrence = world.valid_input("createOccurrence")
    occurrence["startDate"] = "2028-02-29"
    occurrence["endDate"] = "2028-02-29"
    client = world.valid_input("createClient")
    client["dateOfBirth"] = "2000-02-29"
    payment = world.valid_input("recordPayment")
    payment["paidOn"] = "2028-02-29"

    created_occurrence = await send(graphql, "createOccurrence", occurrence)
    created_client = await send(graphql, "createClient", client)
    recorded_payment = await send(graphql, "recordPayment", payment)

    assert returned(created_occurrence, "startDate") == "2028-02-29"
    assert returned(created_client, "dateOfBirth") == "2000-02-29"
    assert returned(recorded_payment, "paidOn") == "2028-02-29"


async def test_dates_non_leap_day_rejected(graphql: GraphQLClient) -> None:
    # The Date scalar rejects the variable before any resolver runs, so the error is a
    # GraphQL error of the request instead of a payload error.
    world = await given_world(graphql)
    input = world.valid_input("createOccurrence")
    input["startDate"] = "2027-02-29"
    before = await snapshot(graphql)

    body = await graphql.execute(document("createOccurrence"), {"input": input})

    assert body.get("data") is None
    assert "2027-02-29" in body["errors"][0]["message"]
    assert await snapshot(graphql) == before


async def test_decimals_too_many_places_rejected(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    before = await snapshot(graphql)
    cases: list[tuple[str, str, Any]] = [
        ("createOccurrence", "fee", "4500.001"),
        ("createOccurrence", "fee", 4500.125),
        ("createOccurrence", "fee", "1E-3"),
        ("recordPayment", "amount", "10.005"),
        ("recordPayment", "amount", 0.001),
    ]

    for mutation, field, value in cases:
        input = world.valid_input(mutation)
        input[field] = value

        payload = await send(graphql, mutation, input)

        assert [(error["code"], error["field"]) for error in payload["errors"]] == [
            ("INVALID_INPUT", field)
        ], (mutation, value)

    assert await snapshot(graphql) == before


async def test_decimals_whole_cents_accepted(graphql: GraphQLClient) -> None:
    world = await given_world(graphql)
    cases: list[tuple[str, str, Any, str]] = [
        ("createOccurrence", "fee", "4500", "4500.00"),
        ("createOccurrence", "fee", 4500.5, "4500.50"),
        ("createOccurrence", "fee", "4500.120", "4500.12"),
        ("recordPayment", "amount", "0.01", "0.01"),
        ("recordPayment", "amount", 19.99, "19.99"),
    ]

    for mutation, field, value, stored in cases:
        input = world.valid_input(mutation)
        input[field] = value

        payload = await send(graphql, mutation, input)

        assert payload["errors"] == [], (mutation, value)
        assert returned(payload, field) == stored, (mutation, value)
