"""Query limits: each oversized document is rejected quickly, naming the limit and its value."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from graphql import GraphQLError, parse, print_ast

from enrolink.app import create_graphql
from enrolink.settings import Settings
from schema import build_schema
from schema.limits import Limits, check_document
from tests.access.conftest import client_for
from tests.api.conftest import GraphQLClient

# A rejection must not cost the server noticeable time; the documents below took seconds to
# minutes in Strawberry's own limiters before the guard (see schema.limits).
MAX_SECONDS = 1.0

CYCLIC_FRAGMENTS = """
query { enrolment(id: "RW5yb2xtZW50OjE=") { ...A } }
fragment A on Enrolment { linkedEnrolments { ...B } }
fragment B on Enrolment { linkedEnrolments { ...A } }
"""
# 300 levels of fields: an enrolment, then its linked enrolments' linked enrolments, and so on.
NESTED_300 = (
    '{ enrolment(id: "RW5yb2xtZW50OjE=") {'
    + " linkedEnrolments {" * 299
    + " id"
    + " }" * 300
    + " }"
)
ALIAS_BOMB = "{ " + " ".join(f"a{index}: __typename" for index in range(1000)) + " }"
# Each fragment spreads the next twice: 2**24 fields once expanded, in about 200 tokens.
FRAGMENT_BOMB = (
    "{ ...F0 }\n"
    + "".join(
        f"fragment F{index} on Query {{ ...F{index + 1} ...F{index + 1} }}\n" for index in range(24)
    )
    + "fragment F24 on Query { __typename }"
)
# The bomb sits in an operation the request does not execute; validation walks it all the same.
UNSELECTED_BOMB = (
    "query Small { __typename }\nquery Bomb { ...F0 }\n" + FRAGMENT_BOMB.partition("\n")[2]
)
FRAGMENT_CHAIN = (
    "{ ...F0 }\n"
    + "".join(f"fragment F{index} on Query {{ ...F{index + 1} }}\n" for index in range(450))
    + "fragment F450 on Query { __typename }"
)
REPEATED_FIELD = "{" + " partners { code }" * 1200 + " }"
# Result.sourceResult is a single object, so this is deep without being costly.
TOO_DEEP = (
    '{ enrolment(id: "RW5yb2xtZW50OjE=") { results {'
    + " sourceResult {" * 12
    + " id"
    + " }" * 12
    + " } } }"
)
COSTLY = """
{ occurrences(first: 500) { edges { node { enrolments(first: 500) { edges { node { id } } } } } } }
"""
COSTLY_BY_VARIABLE = """
query ($size: Int) {
  occurrences(first: $size) {
    edges { node { enrolments(first: $size) { edges { node { id } } } } }
  }
}
"""
TOO_MANY_TOKENS = "{" + " __typename" * 6000 + " }"
INTROSPECTION = "{ __schema { queryType { name } } }"
HEALTHY = "{ partners { code } }"


async def _rejected(graphql: GraphQLClient, document: str, **variables: Any) -> dict[str, Any]:
    started = time.perf_counter()
    body = await graphql.execute(document, variables)
    elapsed = time.perf_counter() - started

    assert elapsed < MAX_SECONDS, f"rejecting took {elapsed:.2f} s"
    assert body.get("data") is None, body
    assert len(body["errors"]) >= 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


async def _still_serving(graphql: GraphQLClient) -> None:
    data = await graphql.data(HEALTHY)
    assert data == {"partners": []}


async def test_cyclic_fragments_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, CYCLIC_FRAGMENTS)

    assert error["extensions"]["code"] == "QUERY_LIMIT_EXCEEDED"
    assert error["extensions"]["limit"] == "maxQueryDepth"
    assert "A → B → A" in error["message"]
    assert "12" in error["message"]
    await _still_serving(graphql)


async def test_300_level_document_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, NESTED_300)

    assert error["extensions"]["code"] == "QUERY_LIMIT_EXCEEDED"
    assert error["extensions"]["maximum"] == 12
    assert "at most 12 fields deep" in error["message"]
    await _still_serving(graphql)


async def test_deep_nesting_rejected_again(graphql: GraphQLClient) -> None:
    # The nesting of small documents is cached, and large ones are measured every time.
    padded = NESTED_300 + " " * 10_000
    for document in (NESTED_300, NESTED_300, padded, padded):
        error = await _rejected(graphql, document)
        assert "at most 12 fields deep" in error["message"]


async def test_alias_bomb_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, ALIAS_BOMB)

    assert error["message"] == "1000 aliases found. Allowed: 30"
    await _still_serving(graphql)


async def test_fragment_bomb_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, FRAGMENT_BOMB)

    assert error["extensions"]["limit"] == "maxTokens"
    assert "16,777,216 fields" in error["message"]
    assert "5,000" in error["message"]
    await _still_serving(graphql)


async def test_bomb_in_unselected_operation_rejected(graphql: GraphQLClient) -> None:
    started = time.perf_counter()
    response = await graphql.http.post(
        "/graphql",
        json={"query": UNSELECTED_BOMB, "operationName": "Small"},
        headers={"Authorization": f"Bearer {graphql.token}"},
    )
    elapsed = time.perf_counter() - started

    assert elapsed < MAX_SECONDS, f"rejecting took {elapsed:.2f} s"
    assert response.json()["errors"][0]["extensions"]["limit"] == "maxTokens"
    await _still_serving(graphql)


async def test_fragment_chain_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, FRAGMENT_CHAIN)

    assert error["extensions"]["limit"] == "maxQueryDepth"
    assert "more than 28 levels deep" in error["message"]
    await _still_serving(graphql)


async def test_repeated_field_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, REPEATED_FIELD)

    assert error["extensions"]["limit"] == "maxAliases"
    assert "'partners' is selected 1,200 times" in error["message"]
    await _still_serving(graphql)


async def test_depth_over_limit_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, TOO_DEEP)

    assert "exceeds maximum operation depth of 12" in error["message"]
    await _still_serving(graphql)


async def test_cost_over_limit_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, COSTLY)

    assert error["extensions"]["limit"] == "maxQueryCost"
    assert error["extensions"]["maximum"] == 500_000
    assert "the maximum is 500,000" in error["message"]
    await _still_serving(graphql)


async def test_cost_counts_page_size_variables(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, COSTLY_BY_VARIABLE, size=500)

    assert error["extensions"]["limit"] == "maxQueryCost"


async def test_small_pages_within_cost(graphql: GraphQLClient) -> None:
    data = await graphql.data(COSTLY_BY_VARIABLE, {"size": 50})

    assert data == {"occurrences": {"edges": []}}


async def test_token_limit_rejected(graphql: GraphQLClient) -> None:
    error = await _rejected(graphql, TOO_MANY_TOKENS)

    assert "more than 5000 tokens" in error["message"]
    await _still_serving(graphql)


async def test_introspection_on_in_development(graphql: GraphQLClient) -> None:
    data = await graphql.data(INTROSPECTION)

    assert data == {"__schema": {"queryType": {"name": "Query"}}}


async def test_introspection_off_in_production(settings_for: Callable[..., Settings]) -> None:
    async with client_for(settings_for(environment="production")) as graphql:
        body = await graphql.execute(INTROSPECTION)

    assert body.get("data") is None
    assert "introspection has been disabled" in body["errors"][0]["message"]


MISSPELT_DOCUMENTS = [
    "{ partnres { code } }",
    "{ occurrences(frist: 1) { edges { cursor } } }",
    "{ occurrences(kind: SESION) { edges { cursor } } }",
]


async def test_field_suggestions_hidden_in_production(
    settings_for: Callable[..., Settings],
) -> None:
    async with client_for(settings_for(environment="production")) as graphql:
        bodies = [await graphql.execute(document) for document in MISSPELT_DOCUMENTS]

    for body in bodies:
        message = body["errors"][0]["message"]
        assert "Did you mean" not in message, message


async def test_field_suggestions_shown_in_development(graphql: GraphQLClient) -> None:
    misspelt_field = await graphql.execute(MISSPELT_DOCUMENTS[0])
    misspelt_argument = await graphql.execute(MISSPELT_DOCUMENTS[1])
    misspelt_enum = await graphql.execute(MISSPELT_DOCUMENTS[2])

    assert "Did you mean 'partners'?" in misspelt_field["errors"][0]["message"]
    assert "Did you mean 'first'?" in misspelt_argument["errors"][0]["message"]
    assert "Did you mean the enum value 'SESSION'?" in misspelt_enum["errors"][0]["message"]


async def test_field_suggestions_off_when_set_false(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(environment="development", field_suggestions=False)
    async with client_for(settings) as graphql:
        bodies = [await graphql.execute(document) for document in MISSPELT_DOCUMENTS]

    for body in bodies:
        message = body["errors"][0]["message"]
        assert "Did you mean" not in message, message


async def test_batched_requests_rejected(graphql: GraphQLClient) -> None:
    response = await graphql.http.post(
        "/graphql",
        json=[{"query": HEALTHY}, {"query": HEALTHY}],
        headers={"Authorization": f"Bearer {graphql.token}"},
    )

    assert response.status_code == 400
    assert "Batching is not enabled" in response.text


def test_strawberry_has_limiter_fixes() -> None:
    # 0.315.7 fixed fragments crashing the depth limiter and aliases in fragments escaping the
    # alias limiter; the limits here rely on both.
    installed = tuple(int(part) for part in version("strawberry-graphql").split(".")[:3])

    assert installed >= (0, 315, 7)


def test_cost_multiplies_page_sizes() -> None:
    # occurrences 1 + edges 1 + 2 nodes x (node 1 + code 1 + units 1 + 10 units x code 1) = 28
    document = parse("{ occurrences(first: 2) { edges { node { code units { code } } } } }")
    schema = build_schema()._schema

    def check(max_cost: int) -> GraphQLError | None:
        limits = Limits(12, 30, 5_000, max_cost, default_page_size=100)
        return check_document(document, schema, limits)

    over = check(27)
    assert over is not None
    assert "estimated cost of this query is 28" in over.message
    assert check(28) is None


async def test_validated_document_still_checks_cost(graphql: GraphQLClient) -> None:
    data = await graphql.data(COSTLY_BY_VARIABLE, {"size": 50})
    error = await _rejected(graphql, COSTLY_BY_VARIABLE, size=500)

    assert data == {"occurrences": {"edges": []}}
    assert error["extensions"]["limit"] == "maxQueryCost"


async def test_rejected_document_rejected_again(graphql: GraphQLClient) -> None:
    first = await _rejected(graphql, TOO_DEEP)
    second = await _rejected(graphql, TOO_DEEP)

    assert "exceeds maximum operation depth of 12" in first["message"]
    assert "exceeds maximum operation depth of 12" in second["message"]


async def test_validation_runs_once_per_document(
    monkeypatch: pytest.MonkeyPatch, settings_for: Callable[..., Settings]
) -> None:
    import strawberry.schema.schema as strawberry_schema

    calls: list[str] = []
    validate = strawberry_schema.validate_document

    def counting(*arguments: Any) -> list[GraphQLError]:
        calls.append(print_ast(arguments[1]))
        return validate(*arguments)

    monkeypatch.setattr(strawberry_schema, "validate_document", counting)
    schema = create_graphql(settings_for(environment="production"), None).schema
    context = {"request": None}

    # Introspection is off in production, so its document fails validation every time.
    for _ in range(3):
        result = await schema.execute(INTROSPECTION, context_value=context)
        assert result.errors is not None
        assert "introspection has been disabled" in result.errors[0].message
    for _ in range(3):
        result = await schema.execute("{ __typename }", context_value=context)
        assert result.errors is None

    assert len([call for call in calls if "__schema" in call]) == 3
    assert len([call for call in calls if "__schema" not in call]) == 1
