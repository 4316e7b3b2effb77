"""SQL expressions that print values exactly as Strawberry serialises them.

Each function takes an SQL expression and returns an SQL expression of type json, text, or a
type whose JSON form PostgreSQL already prints the way Strawberry does (text, integers,
booleans, dates). The oracle test in tests/bench compares both paths on every scalar kind.
"""

from __future__ import annotations

from models.enums import Outcome


def quote(text: str) -> str:
    """Return ``text`` as an SQL string literal; only names from the schema reach here."""
    return "'" + text.replace("'", "''") + "'"


def global_id(type_name: str, key: str) -> str:
    """Return base64 of ``<type name>:<key>``, as schema.ids.encode_id builds it.

    PostgreSQL's base64 output breaks lines after 76 characters, which is 57 bytes of input.
    The longest id, ``ReconciliationRun:`` and 19 digits, is 37 bytes, so no break occurs.
    """
    return f"encode(convert_to({quote(type_name + ':')} || {key}, 'UTF8'), 'base64')"


def cursor(key: str) -> str:
    """Return the connection cursor of a row, as schema.ids.encode_cursor builds it."""
    return f"encode(convert_to('cursor:' || {key}, 'UTF8'), 'base64')"


def datetime_text(value: str) -> str:
    """Return a timestamptz as Python's ``datetime.isoformat()`` prints an aware UTC value.

    asyncpg returns timestamptz values in UTC, so the offset is always ``+00:00``. Python prints
    microseconds only when they are not zero, and then always six digits; PostgreSQL's own JSON
    form drops trailing zeros, so it cannot be used.
    """
    utc = f"({value} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
        f"CASE WHEN to_char({utc}, 'US') = '000000' THEN '' ELSE '.' || to_char({utc}, 'US') END"
        " || '+00:00')"
    )


def decimal_text(value: str) -> str:
    """Return a numeric as ``str(Decimal)`` prints it; numeric's text form keeps the scale too."""
    return f"({value})::text"


def outcome_name(value: str) -> str:
    """Return the Outcome enum name of an AVETMISS outcome code, or NULL."""
    cases = " ".join(f"WHEN {outcome.value} THEN {quote(outcome.name)}" for outcome in Outcome)
    return f"(CASE {value} {cases} END)"


def json_list(element: str, source: str, order: str) -> str:
    """Return a correlated subquery that aggregates ``element`` over ``source`` into an array."""
    return f"(SELECT COALESCE(json_agg({element} ORDER BY {order}), '[]'::json) FROM {source})"
