"""A partner reads its own clients and what they reach, through every edge of the schema.

The queries are generated from the schema, so a field added later is walked too: a field with a
required argument the walk does not know makes the test fail until a case is written for it.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    get_named_type,
    is_leaf_type,
)

from schema import build_schema
from schema.ids import split_id
from tests.access.conftest import Node, World
from tests.api.conftest import GraphQLClient

SCHEMA = build_schema()._schema
NODE_INTERFACE = SCHEMA.get_type("Node")
# Aliases per document stay under the default alias limit of 30.
ALIASES_PER_DOCUMENT = 25

NESTED_PATH = """
query ($id: ID!) {
  occurrence(id: $id) {
    enrolments(first: 20) {
      edges { node {
        client { clientCode }
        linkedEnrolments {
          client { clientCode }
          occurrence { enrolments(first: 20) { edges { node { client { clientCode } } } } }
        }
      } }
    }
  }
}
"""

ROOT_LISTS = """
{
  occurrences { edges { node { code } } }
  clients { edges { node { clientCode } } }
  reconciliationRuns { edges { node { id } } }
  partners { code }
}
"""


def _is_node(named: Any) -> bool:
    if named is NODE_INTERFACE:
        return True
    return isinstance(named, GraphQLObjectType) and NODE_INTERFACE in named.interfaces


def _required_arguments(name: str, definition: GraphQLField) -> list[str]:
    return [
        argument
        for argument, spec in definition.args.items()
        if isinstance(spec.type, GraphQLNonNull) and spec.default_value is Undefined
    ]


def _selection(field_type: GraphQLOutputType, owner: str, depth: int = 0) -> str:
    """Select ids of the nodes a field returns, expanding non-node objects on the way."""
    named = get_named_type(field_type)
    if is_leaf_type(named):
        return ""
    if _is_node(named):
        return "{ __typename ... on Node { id } }"
    assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType), named
    assert depth < 4, f"{owner}: non-node objects nest more than 4 levels; extend the walk"
    parts = ["__typename"]
    for name, definition in named.fields.items():
        if is_leaf_type(get_named_type(definition.type)):
            continue
        required = _required_arguments(name, definition)
        assert not required, f"{named.name}.{name} needs {required}; add a case to the walk"
        parts.append(f"{name} {_selection(definition.type, f'{named.name}.{name}', depth + 1)}")
    return "{ " + " ".join(parts) + " }"


def _expansion(type_name: str) -> str:
    """Select every object field of a node type, one level deep."""
    object_type = SCHEMA.get_type(type_name)
    assert isinstance(object_type, GraphQLObjectType)
    parts = []
    for name, definition in object_type.fields.items():
        if is_leaf_type(get_named_type(definition.type)):
            continue
        required = _required_arguments(name, definition)
        assert not required, f"{type_name}.{name} needs {required}; add a case to the walk"
        parts.append(f"{name} {_selection(definition.type, f'{type_name}.{name}')}")
    return " ".join(parts)


def _nodes_in(value: Any) -> set[Node]:
    found: set[Node] = set()
    if isinstance(value, dict):
        if "id" in value and value.get("__typename") is not None:
            parts = split_id(value["id"])
            assert parts is not None, value
            assert parts[0] == value["__typename"], value
            found.add(parts)
        for item in value.values():
            found |= _nodes_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _nodes_in(item)
    return found


async def _read(graphql: GraphQLClient, token: str, document: str, **variables: Any) -> Any:
    body = await graphql.execute(document, variables, token=token)
    assert "errors" not in body, (document, body["errors"])
    return body["data"]


def _root_fields() -> tuple[list[str], list[str]]:
    """Split the root fields into lists (no required argument) and lookups by one id."""
    assert SCHEMA.query_type is not None
    lists, lookups = [], []
    for name, definition in SCHEMA.query_type.fields.items():
        required = _required_arguments(name, definition)
        if not required:
            lists.append(name)
        elif required == ["id"]:
            lookups.append(name)
        else:
            pytest.fail(f"Query.{name} needs {required}; add a case to the walk")
    return lists, lookups


@pytest.mark.parametrize("partner", ["ACME", "BETA"])
async def test_walk_stays_in_partner_scope(
    graphql: GraphQLClient, world: World, partner: str
) -> None:
    token = world.tokens[partner]
    lists, _ = _root_fields()
    assert SCHEMA.query_type is not None

    seen: set[Node] = set()
    for name in lists:
        definition = SCHEMA.query_type.fields[name]
        data = await _read(graphql, token, f"{{ {name} {_selection(definition.type, name)} }}")
        seen |= _nodes_in(data)

    expanded: set[Node] = set()
    while pending := seen - expanded:
        for type_name, key in sorted(pending):
            expanded.add((type_name, key))
            document = (
                "query ($id: ID!) { node(id: $id) { __typename "
                f"... on {type_name} {{ {_expansion(type_name) or '__typename'} }} }} }}"
            )
            data = await _read(graphql, token, document, id=f"{_gid(type_name, key)}")
            assert data["node"] is not None, (type_name, key)
            seen |= _nodes_in(data)

    outside = seen - world.visible[partner]
    missing = world.visible[partner] - seen
    assert not outside, f"{partner} reached nodes outside its scope: {sorted(outside)}"
    assert not missing, f"{partner} could not reach nodes in its scope: {sorted(missing)}"


def _gid(type_name: str, key: int) -> str:
    from schema.ids import encode_id

    return encode_id(type_name, key)


@pytest.mark.parametrize("partner", ["ACME", "BETA"])
async def test_lookup_by_id_outside_scope_is_null(
    graphql: GraphQLClient, world: World, partner: str
) -> None:
    token = world.tokens[partner]
    _, lookups = _root_fields()
    assert SCHEMA.query_type is not None
    assert "node" in lookups

    for name in lookups:
        returned = get_named_type(SCHEMA.query_type.fields[name].type).name
        cases = sorted(world.all_nodes)
        for start in range(0, len(cases), ALIASES_PER_DOCUMENT):
            batch = cases[start : start + ALIASES_PER_DOCUMENT]
            document = (
                "{ "
                + " ".join(
                    f'n{index}: {name}(id: "{_gid(*node)}") {{ __typename ... on Node {{ id }} }}'
                    for index, node in enumerate(batch)
                )
                + " }"
            )
            body = await graphql.execute(document, token=token)
            data = body["data"]
            errors = {error["path"][0]: error for error in body.get("errors", [])}
            for index, node in enumerate(batch):
                alias = f"n{index}"
                if returned not in {"Node", node[0]}:
                    # An id of another type is an error whether or not the partner may read the
                    # row, so the response shows nothing about rows outside the scope.
                    assert data[alias] is None, (partner, name, node)
                    assert errors[alias]["extensions"]["code"] == "NOT_FOUND", (name, node)
                    assert errors[alias]["message"].startswith(f"id {_gid(*node)!r} is the id of")
                    continue
                assert alias not in errors, (partner, name, node, errors.get(alias))
                expected = node in world.visible[partner]
                found = data[alias] is not None
                assert found == expected, f"{partner}: {name}(id:) of {node} returned {data[alias]}"


async def test_nested_path_keeps_partner_clients(graphql: GraphQLClient, world: World) -> None:
    variables = {"id": world.gid("Occurrence", "admin")}

    partner = await _read(graphql, world.tokens["ACME"], NESTED_PATH, **variables)
    staff = await _read(graphql, graphql.token, NESTED_PATH, **variables)

    partner_codes = _client_codes(partner)
    staff_codes = _client_codes(staff)
    assert partner_codes == {"A1", "A2"}
    assert staff_codes == {"A1", "A2", "B1", "N1"}


def _client_codes(value: Any) -> set[str]:
    if isinstance(value, dict):
        codes = {value["clientCode"]} if "clientCode" in value else set()
        for item in value.values():
            codes |= _client_codes(item)
        return codes
    if isinstance(value, list):
        return set().union(*(_client_codes(item) for item in value)) if value else set()
    return set()


async def test_root_lists_show_partner_rows(graphql: GraphQLClient, world: World) -> None:
    data = await _read(graphql, world.tokens["ACME"], ROOT_LISTS)

    occurrences = {edge["node"]["code"] for edge in data["occurrences"]["edges"]}
    clients = {edge["node"]["clientCode"] for edge in data["clients"]["edges"]}
    assert occurrences == {"ADMIN", "S1", "S2"}
    assert clients == {"A1", "A2"}
    assert data["reconciliationRuns"]["edges"] == []
    assert data["partners"] == [{"code": "ACME"}]


async def test_occurrence_enrolments_page_counts_partner_rows(
    graphql: GraphQLClient, world: World
) -> None:
    document = """
    query ($id: ID!) {
      occurrence(id: $id) {
        enrolments(first: 1) { edges { node { id } } pageInfo { hasNextPage } }
      }
    }
    """
    variables = {"id": world.gid("Occurrence", "s1")}

    data = await _read(graphql, world.tokens["ACME"], document, **variables)

    page = data["occurrence"]["enrolments"]
    assert [edge["node"]["id"] for edge in page["edges"]] == [world.gid("Enrolment", "a1.s1")]
    assert page["pageInfo"]["hasNextPage"] is False
