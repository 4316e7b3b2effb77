"""createClient: client codes, USIs, emails, dates of birth and partners."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.clients import create_client as create_client_operation
from models.enums import TokenRole
from models.errors import DomainError, ErrorCode
from schema.context import Caller, Context
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import create_client, create_partner, snapshot, valid_usi

CREATE_CLIENT = """
mutation ($input: CreateClientInput!) {
  createClient(input: $input) {
    client { id clientCode givenName surname dateOfBirth email usi partner { code } }
    errors { code message field }
  }
}
"""

USI = valid_usi("BNGH7C75F")


def _input(**fields: Any) -> dict[str, Any]:
    return {"clientCode": "C001", "givenName": "Mia", "surname": "Nguyen", **fields}


async def _errors(graphql: GraphQLClient, input: dict[str, Any]) -> list[tuple[str, str]]:
    data = await graphql.data(CREATE_CLIENT, {"input": input})
    assert data["createClient"]["client"] is None
    return [(error["code"], error["field"]) for error in data["createClient"]["errors"]]


async def test_create_client_returns_client(graphql: GraphQLClient) -> None:
    partner_id = await create_partner(graphql, "ACME")

    data = await graphql.data(
        CREATE_CLIENT,
        {
            "input": _input(
                clientCode=" C001 ",
                dateOfBirth="1990-02-28",
                email=" mia.nguyen@example.com.au ",
                usi=USI.lower(),
                partnerId=partner_id,
            )
        },
    )

    payload = data["createClient"]
    assert payload["errors"] == []
    assert payload["client"] == {
        "id": payload["client"]["id"],
        "clientCode": "C001",
        "givenName": "Mia",
        "surname": "Nguyen",
        "dateOfBirth": "1990-02-28",
        "email": "mia.nguyen@example.com.au",
        "usi": USI,
        "partner": {"code": "ACME"},
    }


async def test_create_client_rejects_duplicate_code(graphql: GraphQLClient) -> None:
    await create_client(graphql, "C001")
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input())

    assert errors == [("DUPLICATE_CODE", "clientCode")]
    assert await snapshot(graphql) == before


async def test_create_client_rejects_duplicate_usi(graphql: GraphQLClient) -> None:
    await create_client(graphql, "C001", usi=USI)
    before = await snapshot(graphql)

    data = await graphql.data(CREATE_CLIENT, {"input": _input(clientCode="C002", usi=USI)})

    errors = data["createClient"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("DUPLICATE_CODE", "usi")]
    assert "C001" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_client_rejects_bad_check_character(graphql: GraphQLClient) -> None:
    wrong = USI[:9] + ("A" if USI[9] != "A" else "B")
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(usi=wrong))

    assert errors == [("INVALID_USI", "usi")]
    assert await snapshot(graphql) == before


async def test_create_client_accepts_no_usi(graphql: GraphQLClient) -> None:
    data = await graphql.data(CREATE_CLIENT, {"input": _input(usi="  ")})

    assert data["createClient"]["client"]["usi"] is None


async def test_create_client_rejects_malformed_emails(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)
    emails = ["mia", "mia@", "@example.com", "mia@example", "mia nguyen@example.com", "a@b@c.au"]

    for email in emails:
        errors = await _errors(graphql, _input(email=email))

        assert errors == [("INVALID_INPUT", "email")], email

    assert await snapshot(graphql) == before


async def test_create_client_rejects_future_birth_date(graphql: GraphQLClient) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(dateOfBirth=tomorrow.isoformat()))

    assert errors == [("INVALID_INPUT", "dateOfBirth")]
    assert await snapshot(graphql) == before


async def test_create_client_rejects_birth_before_1900(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(dateOfBirth="1899-12-31"))

    assert errors == [("INVALID_INPUT", "dateOfBirth")]
    assert await snapshot(graphql) == before


async def test_create_client_accepts_first_day_of_1900(graphql: GraphQLClient) -> None:
    data = await graphql.data(CREATE_CLIENT, {"input": _input(dateOfBirth="1900-01-01")})

    assert data["createClient"]["client"]["dateOfBirth"] == "1900-01-01"


async def test_create_client_rejects_missing_partner(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(partnerId=encode_id("Partner", 999_999)))

    assert errors == [("NOT_FOUND", "partnerId")]
    assert await snapshot(graphql) == before


async def test_create_client_concurrent_requests(graphql: GraphQLClient) -> None:
    requests = [
        graphql.data(CREATE_CLIENT, {"input": _input(givenName=f"Mia {n}")}) for n in range(4)
    ]

    results = await asyncio.gather(*requests)

    created = [data for data in results if data["createClient"]["client"] is not None]
    codes = [error["code"] for data in results for error in data["createClient"]["errors"]]
    assert len(created) == 1
    assert codes == ["DUPLICATE_CODE"] * 3


def _context(session: AsyncSession) -> Context:
    return Context(
        session=session,
        caller=Caller(role=TokenRole.STAFF),
        request_id="test",
        default_page_size=10,
        max_page_size=100,
    )


async def test_create_client_race_maps_unique_index(graphql: GraphQLClient) -> None:
    # Both requests pass the Python check before either commits; the unique index decides.
    maker: async_sessionmaker[AsyncSession] = graphql.app.state.enrolink.sessionmaker
    fields: dict[str, Any] = {
        "client_code": "C001",
        "given_name": None,
        "surname": "Nguyen",
        "date_of_birth": date(1990, 2, 28),
        "email": None,
        "usi": None,
        "partner_id": None,
    }
    async with maker() as first, maker() as second:
        await create_client_operation(first, **fields)
        loser = asyncio.create_task(
            _context(second).write(lambda session: create_client_operation(session, **fields))
        )
        # Let the second insert reach the unique index, where it waits for the first.
        await asyncio.sleep(0.2)
        await first.commit()

        with pytest.raises(DomainError) as raised:
            await loser

    assert raised.value.code is ErrorCode.DUPLICATE_CODE
    assert raised.value.field == "clientCode"
    assert isinstance(raised.value.__cause__, IntegrityError)
