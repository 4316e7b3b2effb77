"""createProgramme: codes, units and the rule that a programme is not named after a unit."""

from __future__ import annotations

from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import create_programme, create_unit, snapshot

CREATE_PROGRAMME = """
mutation ($input: CreateProgrammeInput!) {
  createProgramme(input: $input) {
    programme { id code name units { code } }
    errors { code message field }
  }
}
"""

PROGRAMME = """
query ($id: ID!) { node(id: $id) { ... on Programme { code name units { code title } } } }
"""


async def test_create_programme_returns_units_in_order(graphql: GraphQLClient) -> None:
    second = await create_unit(graphql, "BSBOPS502", "Manage business operational plans")
    first = await create_unit(graphql, "BSBLDR523", "Lead and manage workplace relationships")

    data = await graphql.data(
        CREATE_PROGRAMME,
        {"input": {"code": " BSB50420-S1 ", "name": "Leading teams", "unitIds": [second, first]}},
    )

    payload = data["createProgramme"]
    assert payload["errors"] == []
    assert payload["programme"]["code"] == "BSB50420-S1"
    assert payload["programme"]["units"] == [{"code": "BSBOPS502"}, {"code": "BSBLDR523"}]
    node = await graphql.data(PROGRAMME, {"id": payload["programme"]["id"]})
    assert node["node"]["name"] == "Leading teams"


async def test_create_programme_rejects_duplicate_code(graphql: GraphQLClient) -> None:
    unit = await create_unit(graphql, "BSBOPS502")
    await create_programme(graphql, "BSB50420", [unit])
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME, {"input": {"code": "BSB50420", "name": "Other", "unitIds": [unit]}}
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("DUPLICATE_CODE", "code")]
    assert "BSB50420" in errors[0]["message"]
    assert data["createProgramme"]["programme"] is None
    assert await snapshot(graphql) == before


async def test_create_programme_rejects_missing_unit(graphql: GraphQLClient) -> None:
    unit = await create_unit(graphql, "BSBOPS502")
    missing = encode_id("Unit", 999_999)
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME,
        {"input": {"code": "BSB50420", "name": "Diploma", "unitIds": [unit, missing]}},
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("NOT_FOUND", "unitIds")]
    assert "unitIds[1]" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_programme_rejects_duplicate_unit(graphql: GraphQLClient) -> None:
    unit = await create_unit(graphql, "BSBOPS502")
    other = await create_unit(graphql, "BSBLDR523")
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME,
        {"input": {"code": "BSB50420", "name": "Diploma", "unitIds": [unit, other, unit]}},
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("INVALID_INPUT", "unitIds")]
    assert "unitIds[0] and unitIds[2]" in errors[0]["message"]
    assert "BSBOPS502" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_programme_rejects_no_units(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME, {"input": {"code": "BSB50420", "name": "Diploma", "unitIds": []}}
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("INVALID_INPUT", "unitIds")]
    assert await snapshot(graphql) == before


async def test_create_programme_rejects_unit_title_as_name(graphql: GraphQLClient) -> None:
    await create_unit(graphql, "BSBOPS502", "Manage business operational plans")
    unit = await create_unit(graphql, "BSBPEF502", "Develop and use emotional intelligence")
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME,
        {
            "input": {
                "code": "BSB50420-S2",
                "name": "  DEVELOP and use Emotional Intelligence ",
                "unitIds": [unit],
            }
        },
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [
        ("PROGRAMME_NAME_EQUALS_UNIT_TITLE", "name")
    ]
    assert "BSBPEF502" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_programme_accepts_title_of_other_unit(graphql: GraphQLClient) -> None:
    # The rule is about the programme's own units; another unit's title is no confusion.
    await create_unit(graphql, "BSBOPS502", "Manage business operational plans")
    unit = await create_unit(graphql, "BSBPEF502", "Develop and use emotional intelligence")

    data = await graphql.data(
        CREATE_PROGRAMME,
        {
            "input": {
                "code": "BSB50420-S2",
                "name": "Manage business operational plans",
                "unitIds": [unit],
            }
        },
    )

    assert data["createProgramme"]["errors"] == []


async def test_create_programme_rejects_wrong_id_type(graphql: GraphQLClient) -> None:
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_PROGRAMME,
        {
            "input": {
                "code": "BSB50420",
                "name": "Diploma",
                "unitIds": [encode_id("Client", 1)],
            }
        },
    )

    errors = data["createProgramme"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [("NOT_FOUND", "unitIds")]
    assert await snapshot(graphql) == before
