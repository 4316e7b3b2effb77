"""Compile a validated query operation into one SQL statement that returns the ``data`` JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationType,
    get_operation_ast,
)
from sqlalchemy import text

from models.errors import DomainError
from schema.compiled.build import Build, Fallback, Handler, Plan
from schema.compiled.objects import (
    NODE_TABLES,
    OBJECTS,
    _all,
    _by_global_id,
    _connection,
    _enum,
    _no_conditions,
    _text,
)
from schema.compiled.selection import CollectedField, Unsupported
from schema.compiled.sql import quote
from schema.ids import split_id
from schema.query import _search_pattern
from schema.types import NODE_LOADERS

if TYPE_CHECKING:
    from schema.context import Context


def _node_type(value: Any, _context: Context) -> str:
    """Return the type named in a global id.

    A malformed id or an unknown type falls back to the resolvers, which raise the NOT_FOUND
    error for it.
    """
    parts = split_id(value)
    if parts is None or parts[0] not in NODE_LOADERS:
        raise Fallback(value)
    if parts[0] not in NODE_TABLES:
        raise Fallback(parts[0])
    return parts[0]


def _node_key(value: Any, _context: Context) -> int | None:
    parts = split_id(value)
    return None if parts is None else parts[1]


def _node(build: Build, _row: str, field: CollectedField) -> str:
    type_name = build.argument(field, "id", _node_type, "text")
    key = build.argument(field, "id", _node_key, "bigint")
    branches = []
    for name, table in NODE_TABLES.items():
        alias = build.alias()
        element = build.object(name, alias, field.selection_sets)
        row = f"(SELECT {element} FROM {table} {alias} WHERE {alias}.id = {key})"
        branches.append(f"WHEN {quote(name)} THEN {row}")
    return f"(CASE {type_name} {' '.join(branches)} END)"


def _search(value: Any, _context: Context) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return _search_pattern(value)
    except DomainError as error:
        raise Fallback from error


def _occurrence_kind(build: Build, _row: str, inner: str, field: CollectedField) -> list[str]:
    kind = build.argument(field, "kind", _enum, "text")
    return [f"({kind} IS NULL OR {inner}.kind = {kind})"]


def _client_search(build: Build, _row: str, inner: str, field: CollectedField) -> list[str]:
    pattern = build.argument(field, "search", _search, "text")
    columns = ("client_code", "given_name", "surname", "email", "usi")
    matches = " OR ".join(f"{inner}.{column} ILIKE {pattern} ESCAPE '\\'" for column in columns)
    return [f"({pattern} IS NULL OR {matches})"]


QUERY: dict[str, Handler] = {
    "node": _node,
    "occurrence": _by_global_id("Occurrence", "occurrences"),
    "client": _by_global_id("Client", "clients"),
    "enrolment": _by_global_id("Enrolment", "enrolments"),
    "occurrences": _connection("Occurrence", "occurrences", _occurrence_kind),
    "clients": _connection("Client", "clients", _client_search),
    "units": _connection("Unit", "units", _no_conditions),
    "programmes": _connection("Programme", "programmes", _no_conditions),
    "reconciliationRuns": _connection(
        "ReconciliationRun", "reconciliation_runs", _no_conditions, descending=True
    ),
    "partners": _all("Partner", "partners", "{a}.code"),
    "attendanceTypes": _all("AttendanceType", "attendance_types", "{a}.id"),
}

_ = _text  # kept for arguments that pass through as text


def compile_operation(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """Return the plan of a query operation, or None when any part of it is not modelled."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    if operation.directives or schema.query_type is None:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    objects = {**OBJECTS, schema.query_type.name: QUERY}
    build = Build(schema, fragments, objects)
    try:
        data = build.object(schema.query_type.name, "", [operation.selection_set])
    except Unsupported:
        return None
    return Plan(
        statement=text(f"SELECT ({data})::text"),
        variable_definitions=tuple(operation.variable_definitions or ()),
        sources=tuple(build.sources),
        binds=tuple(build.binds),
    )
