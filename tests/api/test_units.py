"""createUnit and reading units back."""

from __future__ import annotations

from tests.api.conftest import GraphQLClient

CREATE_UNIT = """
mutation ($input: CreateUnitInput!) {
  createUnit(input: $input) {
    unit { id code title nominalHours }
    errors { code message field }
  }
}
"""

NODE = """
query ($id: ID!) { node(id: $id) { __typename ... on Unit { code title } } }
"""


async def test_create_unit_returns_unit(graphql: GraphQLClient) -> None:
    data = await graphql.data(
        CREATE_UNIT,
        {"input": {"code": " bsbwhs521 ", "title": "Ensure a safe workplace", "nominalHours": 50}},
    )

    payload = data["createUnit"]
    assert payload["errors"] == []
    assert payload["unit"]["code"] == "BSBWHS521"
    assert payload["unit"]["nominalHours"] == 50

    node = await graphql.data(NODE, {"id": payload["unit"]["id"]})
    assert node["node"] == {
        "__typename": "Unit",
        "code": "BSBWHS521",
        "title": "Ensure a safe workplace",
    }


async def test_create_unit_rejects_duplicate_code(graphql: GraphQLClient) -> None:
    unit = {"code": "BSBCMM511", "title": "Communicate with influence"}
    await graphql.data(CREATE_UNIT, {"input": unit})

    data = await graphql.data(CREATE_UNIT, {"input": unit})

    assert data["createUnit"]["unit"] is None
    assert [error["code"] for error in data["createUnit"]["errors"]] == ["DUPLICATE_CODE"]
    assert "BSBCMM511" in data["createUnit"]["errors"][0]["message"]


async def test_create_unit_rejects_control_character(graphql: GraphQLClient) -> None:
    data = await graphql.data(CREATE_UNIT, {"input": {"code": "BSB1", "title": "Bad\u0000title"}})

    errors = data["createUnit"]["errors"]
    assert errors[0]["code"] == "INVALID_INPUT"
    assert errors[0]["field"] == "title"
