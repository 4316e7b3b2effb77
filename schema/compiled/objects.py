"""The SQL of each GraphQL type's fields, mirroring schema/types.py and schema/loaders.py.

A handler takes the build, the alias of the row being printed and the collected field, and
returns one SQL expression. Orders, filters and null rules copy the resolvers and loaders they
stand for. A field that is not listed here makes the whole document fall back to Strawberry.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from models.errors import DomainError
from schema.compiled.build import Build, Fallback, Handler
from schema.compiled.selection import CollectedField, Unsupported
from schema.compiled.sql import (
    cursor,
    datetime_text,
    decimal_text,
    global_id,
    json_list,
    outcome_name,
    quote,
)
from schema.ids import decode_cursor, split_id

if TYPE_CHECKING:
    from schema.context import Context


# Argument converters: the value Strawberry's resolver would compute, or Fallback where the
# resolver raises, so that the error comes from the one place that words it.


def _page_size(value: Any, context: Context) -> int:
    try:
        return context.page_size(value)
    except DomainError as error:
        raise Fallback from error


def _after(value: Any, _context: Context) -> int:
    try:
        return decode_cursor(value)
    except DomainError as error:
        raise Fallback from error


def _enum(value: Any, _context: Context) -> str | None:
    if value is None:
        return None
    return str(value.value if isinstance(value, Enum) else value)


def _text(value: Any, _context: Context) -> str | None:
    return None if value is None else str(value)


def _key_of(type_name: str) -> Callable[[Any, Context], int]:
    """Build a converter of an id of ``type_name`` to its key.

    Any other value falls back to the resolvers, which raise the NOT_FOUND error for it.
    """

    def convert(value: Any, _context: Context) -> int:
        parts = split_id(value)
        if parts is None or parts[0] != type_name:
            raise Fallback(value)
        return parts[1]

    return convert


# Field handler factories.


def _column(name: str) -> Handler:
    return lambda _build, row, _field: f"{row}.{name}"


def _datetime(name: str) -> Handler:
    return lambda _build, row, _field: datetime_text(f"{row}.{name}")


def _decimal(name: str) -> Handler:
    return lambda _build, row, _field: decimal_text(f"{row}.{name}")


def _node_id(type_name: str) -> Handler:
    return lambda _build, row, _field: global_id(type_name, f"{row}.id")


def _one(type_name: str, table: str, key: str) -> Handler:
    """Return a handler for a to-one relation: the row of ``table`` whose id is ``key``, or null."""

    def handler(build: Build, row: str, field: CollectedField) -> str:
        alias = build.alias()
        element = build.object(type_name, alias, field.selection_sets)
        condition = f"{alias}.id = {key.format(row=row)}"
        return f"(SELECT {element} FROM {table} {alias} WHERE {condition})"

    return handler


def _many(type_name: str, source: str, order: str) -> Handler:
    """Return a handler for a list; ``source`` and ``order`` use ``{a}`` for the element row.

    They use ``{row}`` for the parent row, and ``{x}`` and ``{y}`` for joined tables.
    """

    def handler(build: Build, row: str, field: CollectedField) -> str:
        alias = build.alias()
        names = {"a": alias, "row": row, "x": build.alias(), "y": build.alias()}
        element = build.object(type_name, alias, field.selection_sets)
        return json_list(element, source.format(**names), order.format(**names))

    return handler


Conditions = Callable[[Build, str, str, CollectedField], list[str]]


def _connection(
    node_type: str, table: str, conditions: Conditions, *, descending: bool = False
) -> Handler:
    """Return a handler for a keyset-paginated connection ordered by id, like PageLoader's.

    One row more than ``first`` is read to tell whether another page follows. With
    ``first: 0`` Strawberry reads nothing, so hasNextPage is false there.
    """

    def handler(build: Build, row: str, field: CollectedField) -> str:
        first = build.argument(field, "first", _page_size, "integer")
        after = build.argument(field, "after", _after, "bigint")
        inner = build.alias()
        page = build.alias()
        direction = "DESC" if descending else "ASC"
        if descending:
            after_condition = f"({after} = 0 OR {inner}.id < {after})"
        else:
            after_condition = f"{inner}.id > {after}"
        where = " AND ".join([after_condition, *conditions(build, row, inner, field)])
        source = (
            f"(SELECT {inner}.*, row_number() OVER (ORDER BY {inner}.id {direction}) "
            f"AS page_position FROM {table} {inner} WHERE {where} "
            f"ORDER BY {inner}.id {direction} LIMIT {first} + 1) {page}"
        )
        on_page = f"{page}.page_position <= {first}"
        last_id = f"{'min' if descending else 'max'}({page}.id) FILTER (WHERE {on_page})"

        connection_type = build.field_type_name(field)
        pairs: list[tuple[str, str]] = []
        for part in build.fields(connection_type, field.selection_sets):
            if part.name == "__typename":
                pairs.append((part.response_key, quote(connection_type)))
            elif part.name == "edges":
                edge = _edge(build, page, node_type, part)
                aggregate = (
                    f"json_agg({edge} ORDER BY {page}.id {direction}) FILTER (WHERE {on_page})"
                )
                pairs.append((part.response_key, f"COALESCE({aggregate}, '[]'::json)"))
            elif part.name == "pageInfo":
                pairs.append((part.response_key, _page_info(build, part, first, last_id)))
            else:
                raise Unsupported(f"{connection_type}.{part.name}")
        return f"(SELECT {build.json_object(pairs)} FROM {source})"

    return handler


def _edge(build: Build, page: str, node_type: str, field: CollectedField) -> str:
    edge_type = build.field_type_name(field)
    pairs: list[tuple[str, str]] = []
    for part in build.fields(edge_type, field.selection_sets):
        if part.name == "__typename":
            pairs.append((part.response_key, quote(edge_type)))
        elif part.name == "cursor":
            pairs.append((part.response_key, cursor(f"{page}.id")))
        else:
            pairs.append((part.response_key, build.object(node_type, page, part.selection_sets)))
    return build.json_object(pairs)


def _page_info(build: Build, field: CollectedField, first: str, last_id: str) -> str:
    pairs: list[tuple[str, str]] = []
    for part in build.fields("PageInfo", field.selection_sets):
        if part.name == "__typename":
            pairs.append((part.response_key, "'PageInfo'"))
        elif part.name == "hasNextPage":
            pairs.append((part.response_key, f"({first} > 0 AND count(*) > {first})"))
        else:
            pairs.append((part.response_key, cursor(last_id)))
    return build.json_object(pairs)


def _live_enrolments(parent_column: str) -> Conditions:
    """Enrolments not deleted under one parent, optionally of one status (``Occurrence`` only)."""

    def conditions(build: Build, row: str, inner: str, field: CollectedField) -> list[str]:
        result = [f"{inner}.{parent_column} = {row}.id", f"{inner}.deleted_at IS NULL"]
        assert field.definition is not None
        if "status" in field.definition.args:
            status = build.argument(field, "status", _enum, "text")
            result.append(f"({status} IS NULL OR {inner}.status = {status})")
        return result

    return conditions


def _occurrence_kind(row: str) -> str:
    return f"(SELECT kind FROM occurrences WHERE id = {row}.occurrence_id)"


def _linked_pairs(row: str, link: str) -> str:
    """Return a subquery of the other enrolment of each active link of ``row``, as ``other_id``."""
    return (
        f"(SELECT {link}.session_enrolment_id AS other_id FROM enrolment_links {link} "
        f"WHERE {link}.administrative_enrolment_id = {row}.id AND {link}.unlinked_at IS NULL "
        f"UNION ALL SELECT {link}.administrative_enrolment_id FROM enrolment_links {link} "
        f"WHERE {link}.session_enrolment_id = {row}.id AND {link}.unlinked_at IS NULL)"
    )


def _linked_enrolments(build: Build, row: str, field: CollectedField) -> str:
    alias, pairs = build.alias(), build.alias()
    element = build.object("Enrolment", alias, field.selection_sets)
    source = (
        f"{_linked_pairs(row, build.alias())} {pairs} JOIN enrolments {alias} "
        f"ON {alias}.id = {pairs}.other_id WHERE {alias}.deleted_at IS NULL"
    )
    return json_list(element, source, f"{alias}.start_date, {alias}.id")


def _administrative_enrolment(build: Build, row: str, field: CollectedField) -> str:
    alias, pairs = build.alias(), build.alias()
    element = build.object("Enrolment", alias, field.selection_sets)
    first_linked = (
        f"(SELECT {element} FROM {_linked_pairs(row, build.alias())} {pairs} "
        f"JOIN enrolments {alias} ON {alias}.id = {pairs}.other_id "
        f"WHERE {alias}.deleted_at IS NULL ORDER BY {alias}.start_date, {alias}.id LIMIT 1)"
    )
    return f"(CASE WHEN {_occurrence_kind(row)} = 'SESSION' THEN {first_linked} END)"


def _roll_up(build: Build, row: str, field: CollectedField) -> str:
    state = build.object("RollUpState", row, field.selection_sets)
    return f"(CASE WHEN {_occurrence_kind(row)} = 'ADMINISTRATIVE' THEN {state} END)"


def _balance(build: Build, row: str, _field: CollectedField) -> str:
    charge, payment, movement = build.alias(), build.alias(), build.alias()
    total = (
        f"(SELECT sum({movement}.amount) FROM ("
        f"SELECT {charge}.amount FROM charges {charge} WHERE {charge}.enrolment_id = {row}.id "
        f"UNION ALL SELECT -{payment}.amount FROM payments {payment} "
        f"WHERE {payment}.enrolment_id = {row}.id) {movement})"
    )
    # A session carries no money, so its balance is null; with no rows the total is 0.00.
    return (
        f"(CASE WHEN {_occurrence_kind(row)} = 'SESSION' THEN NULL "
        f"ELSE {decimal_text(f'COALESCE({total}, 0.00)')} END)"
    )


def _by_global_id(type_name: str, table: str) -> Handler:
    def handler(build: Build, _row: str, field: CollectedField) -> str:
        key = build.argument(field, "id", _key_of(type_name), "bigint")
        alias = build.alias()
        element = build.object(type_name, alias, field.selection_sets)
        return f"(SELECT {element} FROM {table} {alias} WHERE {alias}.id = {key})"

    return handler


def _all(type_name: str, table: str, order: str) -> Handler:
    return _many(type_name, f"{table} {{a}}", order)


def _no_conditions(_build: Build, _row: str, _inner: str, _field: CollectedField) -> list[str]:
    return []


_UNITS_OF_OCCURRENCE = _many(
    "Unit",
    "occurrence_units {x} JOIN units {a} ON {a}.id = {x}.unit_id "
    "WHERE {x}.occurrence_id = {row}.id",
    "{x}.position, {a}.id",
)

_SHARED_UNITS = _many(
    "Unit",
    "enrolments {x} JOIN enrolments {y} ON {y}.id = {row}.session_enrolment_id "
    "JOIN occurrence_units su_{a} ON su_{a}.occurrence_id = {y}.occurrence_id "
    "JOIN occurrence_units au_{a} ON au_{a}.occurrence_id = {x}.occurrence_id "
    "AND au_{a}.unit_id = su_{a}.unit_id "
    "JOIN units {a} ON {a}.id = su_{a}.unit_id WHERE {x}.id = {row}.administrative_enrolment_id",
    "su_{a}.position",
)

OBJECTS: dict[str, dict[str, Handler]] = {
    "Unit": {
        "id": _node_id("Unit"),
        "code": _column("code"),
        "title": _column("title"),
        "nominalHours": _column("nominal_hours"),
    },
    "Partner": {
        "id": _node_id("Partner"),
        "code": _column("code"),
        "name": _column("name"),
    },
    "Programme": {
        "id": _node_id("Programme"),
        "code": _column("code"),
        "name": _column("name"),
        "units": _many(
            "Unit",
            "programme_units {x} JOIN units {a} ON {a}.id = {x}.unit_id "
            "WHERE {x}.programme_id = {row}.id",
            "{x}.position, {a}.id",
        ),
    },
    "Occurrence": {
        "id": _node_id("Occurrence"),
        "code": _column("code"),
        "name": _column("name"),
        "kind": _column("kind"),
        "startDate": _column("start_date"),
        "endDate": _column("end_date"),
        "location": _column("location"),
        "fee": _decimal("fee"),
        "programme": _one("Programme", "programmes", "{row}.programme_id"),
        "units": _UNITS_OF_OCCURRENCE,
        "classes": _many(
            "Class", "classes {a} WHERE {a}.occurrence_id = {row}.id", "{a}.starts_at, {a}.id"
        ),
        "enrolments": _connection("Enrolment", "enrolments", _live_enrolments("occurrence_id")),
    },
    "Client": {
        "id": _node_id("Client"),
        "clientCode": _column("client_code"),
        "givenName": _column("given_name"),
        "surname": _column("surname"),
        "dateOfBirth": _column("date_of_birth"),
        "email": _column("email"),
        "usi": _column("usi"),
        "partner": _one("Partner", "partners", "{row}.partner_id"),
        "enrolments": _connection("Enrolment", "enrolments", _live_enrolments("client_id")),
    },
    "Enrolment": {
        "id": _node_id("Enrolment"),
        "status": _column("status"),
        "startDate": _column("start_date"),
        "endDate": _column("end_date"),
        "withdrawnOn": _column("withdrawn_on"),
        "deletedAt": _datetime("deleted_at"),
        "createdAt": _datetime("created_at"),
        "client": _one("Client", "clients", "{row}.client_id"),
        "occurrence": _one("Occurrence", "occurrences", "{row}.occurrence_id"),
        "linkedEnrolments": _linked_enrolments,
        "administrativeEnrolment": _administrative_enrolment,
        "links": _many(
            "EnrolmentLink",
            "enrolment_links {a} WHERE {a}.administrative_enrolment_id = {row}.id "
            "OR {a}.session_enrolment_id = {row}.id",
            "{a}.linked_at DESC, {a}.id DESC",
        ),
        # One result per unit the occurrence has now, in the occurrence's unit order.
        "results": _many(
            "Result",
            "enrolled_units {a} JOIN occurrence_units {x} "
            "ON {x}.occurrence_id = {row}.occurrence_id AND {x}.unit_id = {a}.unit_id "
            "WHERE {a}.enrolment_id = {row}.id",
            "{x}.position, {a}.id",
        ),
        "rollUp": _roll_up,
        "attendances": _many(
            "Attendance",
            "attendances {a} JOIN classes {x} ON {x}.id = {a}.class_id "
            "WHERE {a}.enrolment_id = {row}.id",
            "{x}.starts_at, {a}.id",
        ),
        "payments": _many(
            "Payment", "payments {a} WHERE {a}.enrolment_id = {row}.id", "{a}.paid_on, {a}.id"
        ),
        "charges": _many(
            "Charge", "charges {a} WHERE {a}.enrolment_id = {row}.id", "{a}.charged_on, {a}.id"
        ),
        "balance": _balance,
    },
    "RollUpState": {
        "pending": lambda _build, row, _field: (
            f"({row}.roll_up_version <> {row}.roll_up_computed_version)"
        ),
        "lastComputedAt": _datetime("roll_up_computed_at"),
    },
    "Result": {
        "id": _node_id("Result"),
        "source": _column("source"),
        "startDate": _column("start_date"),
        "endDate": _column("end_date"),
        "recordedAt": _datetime("recorded_at"),
        "recordedBy": _column("recorded_by"),
        "outcome": lambda _build, row, _field: outcome_name(f"{row}.outcome"),
        "outcomeCode": _column("outcome"),
        "unit": _one("Unit", "units", "{row}.unit_id"),
        "enrolment": _one("Enrolment", "enrolments", "{row}.enrolment_id"),
        "sourceResult": _one("Result", "enrolled_units", "{row}.source_enrolled_unit_id"),
    },
    "EnrolmentLink": {
        "id": _node_id("EnrolmentLink"),
        "linkedAt": _datetime("linked_at"),
        "unlinkedAt": _datetime("unlinked_at"),
        "unlinkReason": _column("unlink_reason"),
        "administrativeEnrolment": _one(
            "Enrolment", "enrolments", "{row}.administrative_enrolment_id"
        ),
        "sessionEnrolment": _one("Enrolment", "enrolments", "{row}.session_enrolment_id"),
        "sharedUnits": _SHARED_UNITS,
    },
    "Class": {
        "id": _node_id("Class"),
        "startsAt": _datetime("starts_at"),
        "endsAt": _datetime("ends_at"),
        "location": _column("location"),
        "occurrence": _one("Occurrence", "occurrences", "{row}.occurrence_id"),
    },
    "AttendanceType": {
        "code": _column("code"),
        "name": _column("name"),
        "counting": _column("counting"),
    },
    # Attendance.hours is left to Strawberry: it rounds with Python's half-even rule.
    "Attendance": {
        "id": _node_id("Attendance"),
        "notes": _column("notes"),
        "recordedAt": _datetime("recorded_at"),
        "class": _one("Class", "classes", "{row}.class_id"),
        "enrolment": _one("Enrolment", "enrolments", "{row}.enrolment_id"),
        "attendanceType": _one("AttendanceType", "attendance_types", "{row}.attendance_type_id"),
    },
    "Payment": {
        "id": _node_id("Payment"),
        "amount": _decimal("amount"),
        "paidOn": _column("paid_on"),
        "method": _column("method"),
        "reference": _column("reference"),
        "enrolment": _one("Enrolment", "enrolments", "{row}.enrolment_id"),
    },
    "Charge": {
        "amount": _decimal("amount"),
        "description": _column("description"),
        "chargedOn": _column("charged_on"),
    },
    "ReconciliationCount": {
        "cause": _column("cause"),
        "found": _column("found"),
        "repaired": _column("repaired"),
    },
    "ReconciliationRun": {
        "id": _node_id("ReconciliationRun"),
        "startedAt": _datetime("started_at"),
        "finishedAt": _datetime("finished_at"),
        "trigger": _column("trigger"),
        "counts": _many(
            "ReconciliationCount",
            "reconciliation_counts {a} WHERE {a}.run_id = {row}.id",
            "{a}.cause",
        ),
    },
}

# The tables of the Node types that `node(id:)` can return through the compiled path.
NODE_TABLES = {
    "Unit": "units",
    "Partner": "partners",
    "Programme": "programmes",
    "Occurrence": "occurrences",
    "Client": "clients",
    "Enrolment": "enrolments",
    "Result": "enrolled_units",
    "EnrolmentLink": "enrolment_links",
    "Class": "classes",
    "Attendance": "attendances",
    "Payment": "payments",
    "ReconciliationRun": "reconciliation_runs",
}
