"""A field that fails while a sibling field is still querying must not break the request."""

from __future__ import annotations

from tests.api.conftest import GraphQLClient, app_settings, graphql

__all__ = ["app_settings", "graphql"]

SETUP = """
mutation {
  createUnit(input: {code: "CXU1", title: "Cancel unit"}) { unit { id } errors { code } }
}
"""
PROGRAMME = """
mutation ($unit: ID!) {
  createProgramme(input: {code: "CXP", name: "Cancel programme", unitIds: [$unit]}) {
    programme { id } errors { code }
  }
}
"""
OCCURRENCE = """
mutation ($programme: ID!) {
  createOccurrence(input: {programmeId: $programme, code: "CXS", name: "Cancel session",
                           kind: SESSION, startDate: "2026-02-02", endDate: "2026-03-27"}) {
    occurrence { id } errors { code }
  }
}
"""
CLASS = """
mutation ($occurrence: ID!) {
  createClass(input: {occurrenceId: $occurrence, startsAt: "2026-02-03T09:00:00+11:00",
                      endsAt: "2026-02-03T16:00:00+11:00"}) { class { id } errors { code } }
}
"""
# `first` over the maximum page size fails the non-null `enrolments` field while `classes`,
# a sibling, may still be waiting for its rows.
OVERSIZED_PAGE = """
query ($id: ID!) {
  occurrence(id: $id) {
    classes { location }
    enrolments(first: 804, status: CANCELLED) { edges { cursor } }
  }
}
"""


async def test_oversized_page_beside_sibling_field(graphql: GraphQLClient) -> None:
    unit = (await graphql.data(SETUP))["createUnit"]["unit"]["id"]
    programme = (await graphql.data(PROGRAMME, {"unit": unit}))["createProgramme"]["programme"]
    occurrence = (await graphql.data(OCCURRENCE, {"programme": programme["id"]}))[
        "createOccurrence"
    ]["occurrence"]["id"]
    await graphql.data(CLASS, {"occurrence": occurrence})

    for _ in range(20):
        body = await graphql.execute(OVERSIZED_PAGE, {"id": occurrence})

        assert body["data"] == {"occurrence": None}
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "INVALID_INPUT"
        assert error["extensions"]["field"] == "first"
