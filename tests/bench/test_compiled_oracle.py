"""The compiled read path returns exactly what the resolvers return, in one SQL statement.

Each document runs through two copies of the application over the same database, one with
ENROLINK_COMPILED_READS on and one with it off, and the parsed responses must be equal. The
dataset is built with set-based SQL (see tests/bench/conftest.py) and covers every scalar kind
and null the documents select.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from schema.compiled.extension import CompiledReads
from schema.ids import encode_id
from tests.bench.conftest import App

LADDER = """
query Ladder($id: ID!, $first: Int) {
  occurrence(id: $id) {
    enrolments(first: $first) {
      edges { node {
        id
        client { clientCode surname }
        results { unit { code } outcome }
        linkedEnrolments {
          id
          occurrence { code }
          results { unit { code } outcome sourceResult { id } }
        }
      } }
    }
  }
}
"""

FRAGMENTS = """
query Fragments($id: ID!) {
  first: occurrence(id: $id) { ...OccurrenceParts kind }
  second: occurrence(id: $id) { code __typename ... on Node { id } }
  __typename
}
fragment OccurrenceParts on Occurrence {
  __typename id code name startDate endDate location fee
  programme { __typename id code name units { id code title nominalHours } }
  units { code ...UnitParts }
  again: units { ... on Unit { title } }
}
fragment UnitParts on Unit { nominalHours }
"""

PAGE = """
query Page($id: ID!, $first: Int, $after: String, $status: EnrolmentStatus) {
  occurrence(id: $id) {
    enrolments(first: $first, after: $after, status: $status) {
      __typename
      edges { __typename cursor node { id status } }
      pageInfo { __typename hasNextPage endCursor }
    }
  }
}
"""

ENROLMENT = """
query Enrolment($id: ID!) {
  enrolment(id: $id) {
    id status startDate endDate withdrawnOn deletedAt createdAt balance
    rollUp { pending lastComputedAt }
    administrativeEnrolment { id status }
    linkedEnrolments { id deletedAt }
    client { id clientCode givenName surname dateOfBirth email usi partner { id code name } }
    occurrence { id kind fee classes { id startsAt endsAt location occurrence { code } } }
    links {
      id linkedAt unlinkedAt unlinkReason
      administrativeEnrolment { id } sessionEnrolment { id } sharedUnits { code }
    }
    results {
      id outcome outcomeCode source startDate endDate recordedAt recordedBy
      unit { id } enrolment { id } sourceResult { id outcome recordedAt }
    }
    payments { id amount paidOn method reference enrolment { id } }
    charges { amount description chargedOn }
    attendances {
      id notes recordedAt class { id startsAt } enrolment { id }
      attendanceType { code name counting }
    }
  }
}
"""

CLIENT = """
query Client($id: ID!, $after: String) {
  client(id: $id) {
    id clientCode givenName surname dateOfBirth email usi
    partner { __typename id code name }
    enrolments(first: 3, after: $after) {
      edges { cursor node { id occurrence { code kind } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Unit { code title nominalHours }
    ... on Programme { code units { code } }
    ... on Occurrence { code kind }
    ... on Client { clientCode partner { code } }
    ... on Enrolment { status rollUp { pending } }
    ... on Result { outcome outcomeCode sourceResult { id } }
    ... on EnrolmentLink { unlinkReason sharedUnits { code } }
    ... on Partner { code name }
    ... on Payment { amount }
    ... on Class { startsAt }
    ... on ReconciliationRun { trigger finishedAt counts { cause found repaired } }
  }
}
"""

ROOT_LISTS = """
query RootLists($kind: OccurrenceKind, $search: String, $after: String) {
  occurrences(first: 3, kind: $kind) {
    edges { cursor node { code kind startDate } }
    pageInfo { hasNextPage endCursor }
  }
  everything: occurrences { edges { node { code } } }
  clients(search: $search, first: 2) {
    edges { node { clientCode surname } }
    pageInfo { hasNextPage }
  }
  units(first: 5, after: $after) { edges { node { code nominalHours } } pageInfo { endCursor } }
  programmes(first: 2) { edges { node { code units { code } } } }
  reconciliationRuns { edges { cursor node { id trigger startedAt finishedAt counts { cause } } } }
  partners { code name }
  attendanceTypes { code name counting }
}
"""

# Documents the compiler leaves to Strawberry: both paths must still return the same response.
FALLBACKS = [
    (
        "query ($id: ID!) { occurrence(id: $id) { enrolments(first: 100000) "
        "{ edges { cursor } } } }",
        {"id": encode_id("Occurrence", 1)},
    ),
    (
        'query ($id: ID!) { occurrence(id: $id) { enrolments(after: "nope") '
        "{ edges { cursor } } } }",
        {"id": encode_id("Occurrence", 1)},
    ),
    (
        "query ($id: ID!, $yes: Boolean!) { occurrence(id: $id) { code @include(if: $yes) } }",
        {"id": encode_id("Occurrence", 1), "yes": False},
    ),
    ("{ __schema { queryType { name } } }", {}),
    (
        "query ($id: ID!) { node(id: $id) { id ... on Attendance { hours } } }",
        {"id": encode_id("Attendance", 1)},
    ),
]


async def _same(compiled: App, resolvers: App, document: str, variables: dict[str, Any]) -> Any:
    expected = await resolvers.post(document, variables)
    actual = await compiled.post(document, variables)
    assert "errors" not in expected, expected["errors"]
    assert actual == expected
    return actual


async def test_ladder_matches_resolvers(compiled: App, resolvers: App) -> None:
    for occurrence in (1, 2, 3):
        # 100, not the benchmark's 500: the default ENROLINK_MAX_QUERY_COST rejects 500 here.
        variables = {"id": encode_id("Occurrence", occurrence), "first": 100}
        await _same(compiled, resolvers, LADDER, variables)


async def test_fragments_and_aliases_match_resolvers(compiled: App, resolvers: App) -> None:
    data = await _same(compiled, resolvers, FRAGMENTS, {"id": encode_id("Occurrence", 1)})

    assert data["data"]["first"]["fee"] == "4500.00"


async def test_pages_match_resolvers(compiled: App, resolvers: App) -> None:
    variables: dict[str, Any] = {"id": encode_id("Occurrence", 1), "first": 1}
    pages = 0
    while True:
        data = await _same(compiled, resolvers, PAGE, variables)
        pages += 1
        page_info = data["data"]["occurrence"]["enrolments"]["pageInfo"]
        if not page_info["hasNextPage"]:
            break
        variables["after"] = page_info["endCursor"]

    assert pages == 4


@pytest.mark.parametrize(
    "arguments",
    [
        {"first": 0},
        {"first": 2, "status": "WITHDRAWN"},
        {"first": 3, "status": "ACTIVE"},
        {},
        {"first": 2, "after": "Y3Vyc29yOjI="},
        {"first": 2, "after": "Y3Vyc29yOjk5OQ=="},
    ],
)
async def test_page_arguments_match_resolvers(
    compiled: App, resolvers: App, arguments: dict[str, Any]
) -> None:
    variables = {"id": encode_id("Occurrence", 1), **arguments}

    await _same(compiled, resolvers, PAGE, variables)


@pytest.mark.parametrize("enrolment", [1, 3, 4, 9, 14, 40, 999])
async def test_enrolment_scalars_match_resolvers(
    compiled: App, resolvers: App, enrolment: int
) -> None:
    await _same(compiled, resolvers, ENROLMENT, {"id": encode_id("Enrolment", enrolment)})


@pytest.mark.parametrize("client", [1, 2, 8])
async def test_client_matches_resolvers(compiled: App, resolvers: App, client: int) -> None:
    variables = {"id": encode_id("Client", client)}
    data = await _same(compiled, resolvers, CLIENT, variables)

    after = data["data"]["client"]["enrolments"]["pageInfo"]["endCursor"]
    await _same(compiled, resolvers, CLIENT, {**variables, "after": after})


@pytest.mark.parametrize(
    "node_id",
    [
        encode_id("Unit", 1),
        encode_id("Programme", 3),
        encode_id("Occurrence", 2),
        encode_id("Client", 2),
        encode_id("Enrolment", 4),
        encode_id("Result", 1),
        encode_id("Result", 200),
        encode_id("EnrolmentLink", 6),
        encode_id("Partner", 1),
        encode_id("Payment", 1),
        encode_id("Class", 1),
        encode_id("ReconciliationRun", 2),
        encode_id("Unit", 999_999),
    ],
)
async def test_node_matches_resolvers(compiled: App, resolvers: App, node_id: str) -> None:
    await _same(compiled, resolvers, NODE, {"id": node_id})


@pytest.mark.parametrize("node_id", [encode_id("Nothing", 1), "not an id"])
async def test_node_errors_match_resolvers(compiled: App, resolvers: App, node_id: str) -> None:
    expected = await resolvers.post(NODE, {"id": node_id})
    actual = await compiled.post(NODE, {"id": node_id})

    assert [error["extensions"]["code"] for error in expected["errors"]] == ["NOT_FOUND"]
    assert actual == expected


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"kind": "SESSION", "search": "nguyen"},
        {"kind": "ADMINISTRATIVE", "search": "B000000", "after": "Y3Vyc29yOjM="},
        {"search": "   "},
        {"search": "100%_"},
    ],
)
async def test_root_lists_match_resolvers(
    compiled: App, resolvers: App, variables: dict[str, Any]
) -> None:
    await _same(compiled, resolvers, ROOT_LISTS, variables)


OPERATIONS = """
query Codes($id: ID!) { occurrence(id: $id) { code } }
query Cursors($id: ID!, $first: Int = 2) {
  occurrence(id: $id) { enrolments(first: $first) { edges { cursor } pageInfo { hasNextPage } } }
}
"""


@pytest.mark.parametrize("operation", ["Codes", "Cursors"])
async def test_named_operation_matches_resolvers(
    compiled: App, resolvers: App, operation: str
) -> None:
    variables = {"id": encode_id("Occurrence", 2)}
    expected = await resolvers.post(OPERATIONS, variables, operation)
    actual = await compiled.post(OPERATIONS, variables, operation)

    assert "errors" not in expected, expected["errors"]
    assert actual == expected


async def test_missing_objects_are_null(compiled: App, resolvers: App) -> None:
    document = """
    query ($occurrence: ID!, $enrolment: ID!, $client: ID!) {
      occurrence(id: $occurrence) { code }
      enrolment(id: $enrolment) { id }
      client(id: $client) { id }
    }
    """
    variables = {
        "occurrence": encode_id("Occurrence", 999_999),
        "enrolment": encode_id("Enrolment", 999_999),
        "client": encode_id("Client", 999_999),
    }
    data = await _same(compiled, resolvers, document, variables)

    assert data["data"] == {"occurrence": None, "enrolment": None, "client": None}


async def test_bad_ids_error_as_resolvers(compiled: App, resolvers: App) -> None:
    document = """
    query ($unit: ID!) {
      occurrence(id: "garbage") { code }
      enrolment(id: $unit) { id }
      client(id: $unit) { id }
    }
    """
    variables = {"unit": encode_id("Unit", 1)}
    expected = await resolvers.post(document, variables)
    actual = await compiled.post(document, variables)

    assert expected["data"] == {"occurrence": None, "enrolment": None, "client": None}
    assert [error["extensions"]["code"] for error in expected["errors"]] == ["NOT_FOUND"] * 3
    assert actual == expected


@pytest.mark.parametrize(("document", "variables"), FALLBACKS)
async def test_fallback_matches_resolvers(
    compiled: App, resolvers: App, document: str, variables: dict[str, Any]
) -> None:
    expected = await resolvers.post(document, variables)
    actual = await compiled.post(document, variables)

    assert actual == expected


async def test_compiled_ladder_is_one_statement(compiled: App) -> None:
    for first in (1, 4):
        variables = {"id": encode_id("Occurrence", 1), "first": first}

        assert await compiled.count(LADDER, variables) == 1


async def test_compiled_path_is_used(compiled: App, resolvers: App) -> None:
    variables = {"id": encode_id("Enrolment", 1)}

    assert await compiled.count(ENROLMENT, variables) == 1
    assert await resolvers.count(ENROLMENT, variables) > 1


async def test_limits_apply_before_compiling(compiled: App, resolvers: App) -> None:
    # Thirteen levels, one more than the default ENROLINK_MAX_QUERY_DEPTH of 12.
    nested = "id " + "linkedEnrolments { " * 12 + "id" + " }" * 12
    document = f"query ($id: ID!) {{ enrolment(id: $id) {{ {nested} }} }}"
    variables = {"id": encode_id("Enrolment", 1)}

    expected = await resolvers.post(document, variables)
    actual = await compiled.post(document, variables)

    assert expected["errors"][0]["extensions"]["code"] == "QUERY_LIMIT_EXCEEDED"
    assert actual == expected


async def test_partner_reads_use_resolvers(
    compiled: App, resolvers: App, partner_token: str
) -> None:
    compiled.token = partner_token
    resolvers.token = partner_token
    variables = {"id": encode_id("Client", 2)}

    expected = await resolvers.post(CLIENT, variables)
    actual = await compiled.post(CLIENT, variables)

    assert "errors" not in expected, expected["errors"]
    assert expected["data"]["client"] is not None
    assert actual == expected
    assert await compiled.count(CLIENT, variables) > 1


async def test_database_error_is_masked(compiled: App, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(*_arguments: Any) -> str:
        raise OperationalError("SELECT", {}, ConnectionResetError("connection lost"))

    monkeypatch.setattr(CompiledReads, "_fetch", fail)

    body = await compiled.post(LADDER, {"id": encode_id("Occurrence", 1), "first": 2})

    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"]
    assert "connection lost" not in error["message"]
