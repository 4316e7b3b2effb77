"""Every mutation in the schema is FORBIDDEN to a partner token and changes nothing.

The mutation fields and their inputs are read from the schema, so a mutation added later is
covered without editing this file. Ids in the inputs name rows the partner may read, so the
only reason left to reject the call is the partner's role.
"""

from __future__ import annotations

import re
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
    get_named_type,
)
from sqlalchemy import text

from models.tables import Base
from schema import build_schema
from tests.access.conftest import World
from tests.api.conftest import GraphQLClient

SCHEMA = build_schema()._schema

# Values for scalars that are not ids; each passes GraphQL's own input coercion.
SCALAR_VALUES: dict[str, Any] = {
    "String": "PARTNER1",
    "Int": 1,
    "Float": 1.0,
    "Boolean": False,
    "Date": "2026-03-02",
    "DateTime": "2026-03-02T09:00:00+10:00",
    "Decimal": "10.00",
}

# For an id input named like `sessionEnrolmentId` or `unitIds`, the row it names.
ID_ROWS = {
    "Enrolment": ("Enrolment", "a1.s1"),
    "Occurrence": ("Occurrence", "s1"),
    "Unit": ("Unit", "u1"),
    "Client": ("Client", "a1"),
    "Programme": ("Programme", "ps1"),
    "Class": ("Class", "c1"),
    "Partner": ("Partner", "acme"),
    "Result": ("Result", None),
    "Attendance": ("Attendance", "att.a1"),
    "Payment": ("Payment", "pay.a1"),
}


def _id_for(field_name: str, world: World) -> str:
    words = re.findall(r"[A-Z]?[a-z]+", field_name.removesuffix("Ids").removesuffix("Id"))
    type_name = words[-1].capitalize() if words else "Enrolment"
    node_type, key = ID_ROWS.get(type_name, ID_ROWS["Enrolment"])
    if key is None:
        key = next(name for name in world.ids if name.startswith("a1.s1.r"))
    return world.gid(node_type, key)


def _value(field_name: str, input_type: GraphQLInputType, world: World) -> Any:
    if isinstance(input_type, GraphQLNonNull):
        return _value(field_name, input_type.of_type, world)
    if isinstance(input_type, GraphQLList):
        return [_value(field_name, input_type.of_type, world)]
    if isinstance(input_type, GraphQLInputObjectType):
        return {
            name: _value(name, definition.type, world)
            for name, definition in input_type.fields.items()
            if isinstance(definition.type, GraphQLNonNull) and definition.default_value is Undefined
        }
    if isinstance(input_type, GraphQLEnumType):
        return next(iter(input_type.values))
    assert isinstance(input_type, GraphQLScalarType)
    if input_type.name == "ID":
        return _id_for(field_name, world)
    if field_name == "attendanceType":
        return "PRESENT"
    return SCALAR_VALUES[input_type.name]


def _document(name: str) -> tuple[str, list[str]]:
    assert SCHEMA.mutation_type is not None
    definition = SCHEMA.mutation_type.fields[name]
    arguments = [
        argument
        for argument, spec in definition.args.items()
        if isinstance(spec.type, GraphQLNonNull) and spec.default_value is Undefined
    ]
    declarations = ", ".join(
        f"${argument}: {definition.args[argument].type}" for argument in arguments
    )
    passed = ", ".join(f"{argument}: ${argument}" for argument in arguments)
    payload = get_named_type(definition.type)
    assert isinstance(payload, GraphQLObjectType)
    selection = "errors { code message }" if "errors" in payload.fields else "__typename"
    header = f"mutation ({declarations})" if arguments else "mutation"
    call = f"{name}({passed})" if arguments else name
    return f"{header} {{ {call} {{ {selection} }} }}", arguments


async def _all_rows(graphql: GraphQLClient) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with graphql.app.state.enrolink.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            result = await session.execute(text(f"SELECT * FROM {table.name} ORDER BY 1"))
            rows[table.name] = [tuple(row) for row in result.all()]
    return rows


async def test_partner_mutations_are_forbidden(graphql: GraphQLClient, world: World) -> None:
    assert SCHEMA.mutation_type is not None
    names = sorted(SCHEMA.mutation_type.fields)
    assert names, "the schema has no mutations to check"
    # A first request records the token's last_used_at; later ones within a minute do not.
    await graphql.execute("{ partners { code } }", token=world.tokens["ACME"])
    before = await _all_rows(graphql)

    for name in names:
        document, arguments = _document(name)
        definition = SCHEMA.mutation_type.fields[name]
        variables = {
            argument: _value(argument, definition.args[argument].type, world)
            for argument in arguments
        }

        body = await graphql.execute(document, variables, token=world.tokens["ACME"])

        payload = (body.get("data") or {}).get(name) or {}
        codes = [error["code"] for error in payload.get("errors", [])]
        top_level = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
        assert codes == ["FORBIDDEN"] or top_level == ["FORBIDDEN"], (name, variables, body)

    after = await _all_rows(graphql)
    changed = [table for table in before if before[table] != after[table]]
    assert changed == [], f"partner mutations changed {changed}"
