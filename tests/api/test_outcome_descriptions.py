"""The Outcome enum documents each value's AVETMISS code, in the schema and in the guide."""

from __future__ import annotations

import re
from pathlib import Path

from models.enums import Outcome
from tests.api.conftest import GraphQLClient

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
OUTCOME_VALUES = '{ __type(name: "Outcome") { enumValues { name description } } }'
# A row of the guide's outcome table: | `NAME` | code | AVETMISS outcome | yes or no |
GUIDE_ROW = re.compile(r"^\| `([A-Z_]+)` \| (\d+) \| [^|]+ \| (yes|no) \|$", re.MULTILINE)


async def test_outcome_values_describe_codes(graphql: GraphQLClient) -> None:
    data = await graphql.data(OUTCOME_VALUES)

    descriptions = {value["name"]: value["description"] for value in data["__type"]["enumValues"]}
    assert sorted(descriptions) == sorted(outcome.name for outcome in Outcome)
    for outcome in Outcome:
        assert f"AVETMISS outcome {outcome.value}." in descriptions[outcome.name], outcome
    assert descriptions["COMPETENCY_ACHIEVED"] == (
        "Competency achieved/pass, AVETMISS outcome 20. Final."
    )
    assert descriptions["CONTINUING"] == (
        "Continuing enrolment, AVETMISS outcome 70. Not final, because the unit is still open."
    )


def test_guide_lists_every_outcome() -> None:
    rows = {name: (int(code), final) for name, code, final in GUIDE_ROW.findall(GUIDE.read_text())}

    assert rows == {
        outcome.name: (outcome.value, "yes" if outcome.is_final else "no") for outcome in Outcome
    }
