"""createOccurrence: kinds, dates, units and the fee."""

from __future__ import annotations

from typing import Any

from models.enums import OccurrenceKind
from schema.ids import encode_id
from tests.api.conftest import GraphQLClient
from tests.catalogue.builders import (
    create_occurrence,
    create_programme,
    create_unit,
    snapshot,
)

CREATE_OCCURRENCE = """
mutation ($input: CreateOccurrenceInput!) {
  createOccurrence(input: $input) {
    occurrence {
      id code name kind startDate endDate fee location
      programme { code }
      units { code }
    }
    errors { code message field }
  }
}
"""


async def _programme(graphql: GraphQLClient) -> tuple[str, list[str]]:
    units = [await create_unit(graphql, "BSBLDR523"), await create_unit(graphql, "BSBOPS502")]
    return await create_programme(graphql, "BSB50420", units), units


def _input(programme_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "programmeId": programme_id,
        "code": "BSB50420-ADM",
        "name": "Diploma 2026",
        "kind": "ADMINISTRATIVE",
        "startDate": "2026-02-02",
        "endDate": "2026-11-27",
        **fields,
    }


async def _errors(graphql: GraphQLClient, input: dict[str, Any]) -> list[tuple[str, str]]:
    data = await graphql.data(CREATE_OCCURRENCE, {"input": input})
    assert data["createOccurrence"]["occurrence"] is None
    return [(error["code"], error["field"]) for error in data["createOccurrence"]["errors"]]


async def test_create_occurrence_defaults_to_programme_units(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)

    data = await graphql.data(
        CREATE_OCCURRENCE,
        {"input": _input(programme_id, fee="4500.5", location=" Parramatta campus ")},
    )

    payload = data["createOccurrence"]
    assert payload["errors"] == []
    occurrence = payload["occurrence"]
    assert occurrence["units"] == [{"code": "BSBLDR523"}, {"code": "BSBOPS502"}]
    assert occurrence["programme"] == {"code": "BSB50420"}
    assert occurrence["kind"] == "ADMINISTRATIVE"
    assert occurrence["fee"] == "4500.50"
    assert occurrence["location"] == "Parramatta campus"


async def test_create_occurrence_takes_given_units(graphql: GraphQLClient) -> None:
    programme_id, units = await _programme(graphql)

    data = await graphql.data(
        CREATE_OCCURRENCE,
        {"input": _input(programme_id, kind="SESSION", unitIds=[units[1]])},
    )

    assert data["createOccurrence"]["occurrence"]["units"] == [{"code": "BSBOPS502"}]


async def test_create_occurrence_accepts_unit_outside_programme(graphql: GraphQLClient) -> None:
    # An imported elective is attached to the occurrence without being in the programme.
    programme_id, units = await _programme(graphql)
    elective = await create_unit(graphql, "BSBTWK503")

    data = await graphql.data(
        CREATE_OCCURRENCE, {"input": _input(programme_id, unitIds=[*units, elective])}
    )

    assert [unit["code"] for unit in data["createOccurrence"]["occurrence"]["units"]] == [
        "BSBLDR523",
        "BSBOPS502",
        "BSBTWK503",
    ]


async def test_create_occurrence_rejects_empty_units(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(programme_id, unitIds=[]))

    assert errors == [("INVALID_INPUT", "unitIds")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_rejects_missing_unit(graphql: GraphQLClient) -> None:
    programme_id, units = await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql, _input(programme_id, unitIds=[units[0], encode_id("Unit", 999_999)])
    )

    assert errors == [("NOT_FOUND", "unitIds")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_rejects_missing_programme(graphql: GraphQLClient) -> None:
    await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(encode_id("Programme", 999_999)))

    assert errors == [("NOT_FOUND", "programmeId")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_rejects_end_before_start(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(
        graphql, _input(programme_id, startDate="2026-11-27", endDate="2026-02-02")
    )

    assert errors == [("INVALID_INPUT", "startDate")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_accepts_one_day(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)

    data = await graphql.data(
        CREATE_OCCURRENCE,
        {
            "input": _input(
                programme_id, kind="STANDARD", startDate="2026-03-02", endDate="2026-03-02"
            )
        },
    )

    assert data["createOccurrence"]["errors"] == []


async def test_create_occurrence_rejects_fee_on_session(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    before = await snapshot(graphql)

    data = await graphql.data(
        CREATE_OCCURRENCE, {"input": _input(programme_id, kind="SESSION", fee="0")}
    )

    errors = data["createOccurrence"]["errors"]
    assert [(error["code"], error["field"]) for error in errors] == [
        ("PAYMENTS_NOT_ALLOWED_ON_SESSION", "fee")
    ]
    assert "ADMINISTRATIVE" in errors[0]["message"]
    assert await snapshot(graphql) == before


async def test_create_occurrence_accepts_fee_on_standard(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)

    data = await graphql.data(
        CREATE_OCCURRENCE, {"input": _input(programme_id, kind="STANDARD", fee="0")}
    )

    assert data["createOccurrence"]["occurrence"]["fee"] == "0.00"


async def test_create_occurrence_rejects_negative_fee(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(programme_id, fee="-1.00"))

    assert errors == [("INVALID_INPUT", "fee")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_rejects_fractional_cents(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(programme_id, fee="4500.005"))

    assert errors == [("INVALID_INPUT", "fee")]
    assert await snapshot(graphql) == before


async def test_create_occurrence_rejects_duplicate_code(graphql: GraphQLClient) -> None:
    programme_id, _ = await _programme(graphql)
    await create_occurrence(graphql, programme_id, "BSB50420-ADM", OccurrenceKind.ADMINISTRATIVE)
    before = await snapshot(graphql)

    errors = await _errors(graphql, _input(programme_id))

    assert errors == [("DUPLICATE_CODE", "code")]
    assert await snapshot(graphql) == before
