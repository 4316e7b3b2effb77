"""createPartner: organisations, such as employers, that follow some clients."""

from __future__ import annotations

import asyncio

from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import create_partner, snapshot

CREATE_PARTNER = """
mutation ($input: CreatePartnerInput!) {
  createPartner(input: $input) { partner { id code name } errors { code message field } }
}
"""

PARTNERS = "{ partners { code name } }"


async def test_create_partner_returns_partner(graphql: GraphQLClient) -> None:
    data = await graphql.data(
        CREATE_PARTNER, {"input": {"code": "ACME", "name": " Acme Plumbing Pty Ltd "}}
    )

    payload = data["createPartner"]
    assert payload["errors"] == []
    assert payload["partner"]["name"] == "Acme Plumbing Pty Ltd"
    listed = await graphql.data(PARTNERS)
    assert listed["partners"] == [{"code": "ACME", "name": "Acme Plumbing Pty Ltd"}]


async def test_create_partner_rejects_duplicate_code(graphql: GraphQLClient) -> None:
    await create_partner(graphql, "ACME")
    before = await snapshot(graphql)

    data = await graphql.data(CREATE_PARTNER, {"input": {"code": "ACME", "name": "Acme again"}})

    errors = data["createPartner"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("DUPLICATE_CODE", "code")]
    assert "ACME" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_partner_concurrent_duplicates(graphql: GraphQLClient) -> None:
    requests = [
        graphql.data(CREATE_PARTNER, {"input": {"code": "ACME", "name": f"Acme {n}"}})
        for n in range(4)
    ]

    results = await asyncio.gather(*requests)

    codes = sorted(error["code"] for data in results for error in data["createPartner"]["errors"])
    assert codes == ["DUPLICATE_CODE"] * 3
    listed = await graphql.data(PARTNERS)
    assert len(listed["partners"]) == 1


async def test_create_partner_rejects_blank_name(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    data = await graphql.data(CREATE_PARTNER, {"input": {"code": "ACME", "name": "   "}})

    errors = data["createPartner"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("INVALID_INPUT", "name")]
    assert await snapshot(graphql) == before
