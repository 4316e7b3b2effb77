"""GraphQL fuzzing with schemathesis against a running `enrolink serve`.

schemathesis reads the schema by introspection and generates queries and mutations for every
root field, valid ones (positive mode) and ones that break the schema (negative mode). Two
things make the generated documents reach past "not found":

- the custom scalars get strategies of their own: ``Decimal`` as a string, ``Date`` mostly in
  the years the seeded data covers, ``DateTime`` with a UTC offset;
- a ``flatmap_body`` hook replaces most generated ``ID`` values (``enrolmentId``, ``unitIds``,
  ``node(id:)``...) with global ids of rows that exist, read from the database between
  operations.

A response fails the run when its status is 5xx, when an error carries the extensions code
INTERNAL_SERVER_ERROR (the server masked an unexpected exception), or when a non-null field
came back null.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import graphql
import requests
import schemathesis
from graphql.language import ast as gql_ast
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes
from schemathesis.hooks import HookContext, HookDispatcher, HookScope

from schema.ids import encode_cursor, encode_id
from tests.reliability.client import (
    CREATE_CLASS,
    CREATE_CLIENT,
    CREATE_OCCURRENCE,
    CREATE_PARTNER,
    CREATE_PROGRAMME,
    CREATE_UNIT,
    ENROL_CLIENT,
    RECORD_PAYMENT,
    RECORD_RESULT,
    ApiClient,
)
from tests.reliability.servers import sql

# The seeded occurrences run in 2026; most generated dates fall near them so that date rules
# (inside the enrolment, start before end) are reached, the rest anywhere from year 1 to 9999.
NEAR_START = date(2025, 10, 1)
NEAR_END = date(2027, 3, 31)
# Share of generated ids replaced by ids of existing rows; the rest stay random strings, which
# exercise the "not a valid id" paths.
ID_SUBSTITUTION_RATE = 0.85
# Rows per table offered to the substitution: the newest, so ids created by earlier fuzzed
# mutations are used too.
POOL_ROWS_PER_TABLE = 40
REQUEST_TIMEOUT_SECONDS = 30.0

# The GraphQL type whose ids an argument or input field named so takes.
ID_FIELD_TYPES = {
    "enrolmentId": "Enrolment",
    "sessionEnrolmentId": "Enrolment",
    "administrativeEnrolmentId": "Enrolment",
    "clientId": "Client",
    "occurrenceId": "Occurrence",
    "unitId": "Unit",
    "unitIds": "Unit",
    "programmeId": "Programme",
    "partnerId": "Partner",
    "classId": "Class",
}
# Root fields whose `id` argument names one type; `node(id:)` takes any.
ROOT_ID_TYPES = {"occurrence": "Occurrence", "client": "Client", "enrolment": "Enrolment"}
# The table behind each node type.
NODE_TABLES = {
    "Unit": "units",
    "Programme": "programmes",
    "Partner": "partners",
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

_OFFSETS = [timedelta(hours=hours) for hours in (-11, -5, 0, 5.5, 8, 9.5, 10, 11, 14)]


def _dates() -> st.SearchStrategy[date]:
    return st.one_of(
        st.dates(NEAR_START, NEAR_END),
        st.dates(NEAR_START, NEAR_END),
        st.dates(NEAR_START, NEAR_END),
        st.dates(),
    )


def _date_times() -> st.SearchStrategy[str]:
    offsets = st.sampled_from([timezone(offset) for offset in _OFFSETS])
    near = st.datetimes(
        datetime.combine(NEAR_START, datetime.min.time()),
        datetime.combine(NEAR_END, datetime.min.time()),
        timezones=offsets,
    )
    anywhere = st.datetimes(timezones=offsets)
    return st.one_of(near, near, anywhere).map(lambda value: value.isoformat())


def _decimals() -> st.SearchStrategy[str]:
    amounts = st.decimals(
        min_value=Decimal("-1e13"), max_value=Decimal("1e13"), allow_nan=False, places=2
    )
    odd_precision = st.decimals(allow_nan=False, allow_infinity=False)
    unusual = st.sampled_from(
        ["0", "0.00", "-0", "0.001", "1e3", "1E-2", "NaN", "Infinity", "-Infinity", "", " 5",
         "1,000.00", "12345678901234567890.12", "abc"]
    )  # fmt: skip
    return st.one_of(amounts.map(str), amounts.map(str), odd_precision.map(str), unusual)


def register_scalars() -> None:
    """Register strategies for the schema's custom scalars (schemathesis has none for them)."""
    schemathesis.graphql.scalar("Decimal", _decimals().map(nodes.String))
    schemathesis.graphql.scalar("Date", _dates().map(lambda day: nodes.String(day.isoformat())))
    schemathesis.graphql.scalar("DateTime", _date_times().map(nodes.String))


@dataclass
class IdPool:
    """Global ids of existing rows, by node type, refreshed from the database."""

    database_url: str
    ids: dict[str, list[str]] = field(default_factory=dict)
    max_keys: dict[str, int] = field(default_factory=dict)

    def refresh(self) -> None:
        for type_name, table in NODE_TABLES.items():
            rows = sql(
                self.database_url,
                f"SELECT id FROM {table} ORDER BY id DESC LIMIT {POOL_ROWS_PER_TABLE}",
            )
            self.ids[type_name] = [encode_id(type_name, row[0]) for row in rows]
            self.max_keys[type_name] = max((row[0] for row in rows), default=0)

    def pick(self, type_name: str | None, rng: random.Random) -> str | None:
        if type_name is None:
            candidates = [ids for ids in self.ids.values() if ids]
            choices = rng.choice(candidates) if candidates else []
        else:
            choices = self.ids.get(type_name, [])
        return rng.choice(choices) if choices else None

    def cursor(self, rng: random.Random) -> str:
        return encode_cursor(rng.randint(0, max(self.max_keys.values(), default=0) + 2))


def _substitute_value(
    value: gql_ast.ValueNode, type_name: str | None, pool: IdPool, rng: random.Random
) -> gql_ast.ValueNode:
    if isinstance(value, gql_ast.ListValueNode):
        values = tuple(_substitute_value(item, type_name, pool, rng) for item in value.values)
        return gql_ast.ListValueNode(values=values)
    if not isinstance(value, gql_ast.StringValueNode | gql_ast.IntValueNode):
        return value
    if rng.random() >= ID_SUBSTITUTION_RATE:
        return value
    picked = pool.pick(type_name, rng)
    return value if picked is None else gql_ast.StringValueNode(value=picked)


def _substitute_object(
    value: gql_ast.ValueNode, pool: IdPool, rng: random.Random
) -> gql_ast.ValueNode:
    """Replace the id-typed fields of an input object literal, recursing into nested ones."""
    if isinstance(value, gql_ast.ListValueNode):
        return gql_ast.ListValueNode(
            values=tuple(_substitute_object(item, pool, rng) for item in value.values)
        )
    if not isinstance(value, gql_ast.ObjectValueNode):
        return value
    fields = []
    for object_field in value.fields:
        name = object_field.name.value
        if name in ID_FIELD_TYPES:
            new_value = _substitute_value(object_field.value, ID_FIELD_TYPES[name], pool, rng)
        else:
            new_value = _substitute_object(object_field.value, pool, rng)
        fields.append(gql_ast.ObjectFieldNode(name=object_field.name, value=new_value))
    return gql_ast.ObjectValueNode(fields=tuple(fields))


class _IdSubstitution(graphql.Visitor):
    def __init__(self, pool: IdPool, rng: random.Random) -> None:
        super().__init__()
        self.pool = pool
        self.rng = rng

    def enter_field(self, node: gql_ast.FieldNode, *_: Any) -> gql_ast.FieldNode | None:
        if not node.arguments:
            return None
        arguments = []
        for argument in node.arguments:
            name = argument.name.value
            value = argument.value
            if name == "id" and node.name.value in (*ROOT_ID_TYPES, "node"):
                value = _substitute_value(
                    value, ROOT_ID_TYPES.get(node.name.value), self.pool, self.rng
                )
            elif name == "after" and isinstance(value, gql_ast.StringValueNode):
                if self.rng.random() < ID_SUBSTITUTION_RATE:
                    value = gql_ast.StringValueNode(value=self.pool.cursor(self.rng))
            elif name in ID_FIELD_TYPES:
                value = _substitute_value(value, ID_FIELD_TYPES[name], self.pool, self.rng)
            else:
                value = _substitute_object(value, self.pool, self.rng)
            arguments.append(gql_ast.ArgumentNode(name=argument.name, value=value))
        return gql_ast.FieldNode(
            alias=node.alias,
            name=node.name,
            arguments=tuple(arguments),
            directives=node.directives,
            selection_set=node.selection_set,
        )


def substitute_ids(
    document: gql_ast.DocumentNode, pool: IdPool, rng: random.Random
) -> gql_ast.DocumentNode:
    """Return the document with most id arguments naming rows that exist."""
    substituted: gql_ast.DocumentNode = graphql.visit(document, _IdSubstitution(pool, rng))
    return substituted


def id_substitution_hooks(pool: IdPool) -> HookDispatcher:
    """Return hooks that apply :func:`substitute_ids` to positive cases' documents."""
    dispatcher = HookDispatcher(scope=HookScope.TEST)

    def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        if not isinstance(body, gql_ast.DocumentNode):
            return st.just(body)
        return st.randoms(use_true_random=False).map(lambda rng: substitute_ids(body, pool, rng))

    dispatcher.register_hook_with_name(flatmap_body, "flatmap_body")
    return dispatcher


def _non_null_violations(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        error
        for error in errors
        if "Cannot return null for non-nullable field" in str(error.get("message", ""))
    ]


def server_faults(status_code: int, body: Any) -> list[str]:
    """Return why a response shows a server fault: a 5xx, a masked error, or a null non-null."""
    faults = []
    if status_code >= 500:
        faults.append(f"HTTP {status_code}")
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        errors = [error for error in body["errors"] if isinstance(error, dict)]
        for error in errors:
            extensions = error.get("extensions") or {}
            if extensions.get("code") == "INTERNAL_SERVER_ERROR":
                faults.append(f"masked unexpected error at {error.get('path')}: {error}")
        for error in _non_null_violations(errors):
            faults.append(f"non-null field returned null: {error}")
    return faults


@schemathesis.check
def no_server_fault(ctx: schemathesis.CheckContext, response: Any, case: Any) -> bool | None:
    """Fail on a 5xx, an INTERNAL_SERVER_ERROR, or a non-null field that came back null."""
    try:
        body = response.json()
    except ValueError:
        body = None
    faults = server_faults(response.status_code, body)
    if faults:
        raise AssertionError("; ".join(faults))
    return None


@dataclass
class FuzzFailure:
    operation: str
    mode: str
    error: str


@dataclass
class FuzzReport:
    operations: int = 0
    """Requests sent to /graphql, shrinking included."""
    statuses: dict[int, int] = field(default_factory=dict)
    rejected: int = 0
    """Responses with top-level errors (invalid documents, limits, bad arguments)."""
    accepted: dict[str, int] = field(default_factory=dict)
    """Mutations that changed something (a payload with no user errors), by operation."""
    failures: list[FuzzFailure] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.operations} operations in {self.seconds:.0f} s, statuses {self.statuses}, "
            f"{self.rejected} with top-level errors, {sum(self.accepted.values())} accepted "
            f"mutations {self.accepted}, {len(self.failures)} failures"
        )


def _accepted_mutation(body: Any) -> bool:
    """Return True for a mutation response whose payload shows that the mutation succeeded.

    That is an empty ``errors`` list, or, when the document did not select ``errors``, a
    payload field that is not null.
    """
    if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
        return False
    payloads = list(body["data"].values())
    if len(payloads) != 1 or not isinstance(payloads[0], dict):
        return False
    payload = payloads[0]
    if "errors" in payload:
        return bool(payload["errors"] == [])
    return any(value is not None for value in payload.values())


def _operation_settings(examples: int, seed_value: int) -> Callable[[Any], Any]:
    def decorate(test: Any) -> Any:
        configured = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )(test)
        return seed(seed_value)(configured)

    return decorate


def fuzz(
    *,
    graphql_url: str,
    token: str,
    database_url: str,
    operations: int,
    seed_value: int,
    negative_share: float = 0.25,
    log: Callable[[str], None] = print,
) -> FuzzReport:
    """Send at least ``operations`` generated documents, spread over every root field.

    Rounds go over every query and mutation field in both modes until the count is reached.
    Each round uses new seeds derived from ``seed_value``, so a run is repeatable.
    """
    register_scalars()
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.graphql.from_url(graphql_url, headers=headers)
    api_operations = [_operation(result) for result in schema.get_all_operations()]
    pool = IdPool(database_url)
    hooks = id_substitution_hooks(pool)
    report = FuzzReport()
    started = time.monotonic()
    per_field = max(1, math.ceil(operations / len(api_operations)))
    negative = max(1, round(per_field * negative_share))
    plan = [(GenerationMode.POSITIVE, per_field - negative), (GenerationMode.NEGATIVE, negative)]

    with requests.Session() as http:
        for round_number in _rounds():
            for index, operation in enumerate(api_operations):
                pool.refresh()
                for mode, examples in plan:
                    if examples <= 0:
                        continue
                    seed_for = seed_value + 1000 * round_number + 2 * index + (mode.is_negative)
                    _fuzz_operation(
                        operation, mode, examples, seed_for, hooks, http, headers, report
                    )
            report.seconds = time.monotonic() - started
            log(f"fuzz round {round_number + 1}: {report.summary()}")
            if report.operations >= operations:
                break
    report.seconds = time.monotonic() - started
    return report


def _operation(result: Any) -> Any:
    """Return the operation of a schemathesis result, raising the schema error it may hold."""
    return result.ok()


def _rounds() -> Iterator[int]:
    number = 0
    while True:
        yield number
        number += 1


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    seed_value: int,
    hooks: HookDispatcher,
    http: requests.Session,
    headers: dict[str, str],
    report: FuzzReport,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, hooks=hooks)

    @_operation_settings(examples, seed_value)
    @given(case=strategy)
    def send(case: Any) -> None:
        response = case.call(session=http, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        report.operations += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("errors"):
            report.rejected += 1
        if operation.label.startswith("Mutation.") and _accepted_mutation(body):
            report.accepted[operation.label] = report.accepted.get(operation.label, 0) + 1
        case.validate_response(response, checks=[no_server_fault], headers=headers)

    try:
        send()
    except (Exception, BaseExceptionGroup) as error:
        # schemathesis reports failed checks as a FailureGroup, a BaseExceptionGroup.
        report.failures.append(FuzzFailure(operation.label, mode.value, str(error)[:4000]))


def seed_world(client: ApiClient) -> None:
    """Create a small world through the API: units, occurrences of each kind, linked enrolments.

    Ids of these rows are what the fuzzer's id substitution mostly picks from.
    """
    units = [
        client.create(CREATE_UNIT, {"code": f"FZU{n}", "title": f"Fuzz unit {n}"}, "unit")
        for n in range(1, 5)
    ]
    client.create(CREATE_PARTNER, {"code": "FZP", "name": "Fuzz partner"}, "partner")
    programme = client.create(
        CREATE_PROGRAMME,
        {"code": "FZPROG", "name": "Fuzz qualification", "unitIds": units},
        "programme",
    )

    def occurrence(code: str, kind: str, start: str, end: str, unit_ids: list[str]) -> str:
        variables = {
            "input": {
                "programmeId": programme,
                "code": code,
                "name": f"Fuzz {code}",
                "kind": kind,
                "startDate": start,
                "endDate": end,
                "unitIds": unit_ids,
                **({"fee": "1200.00"} if kind != "SESSION" else {}),
            }
        }
        return client.create(CREATE_OCCURRENCE, variables, "occurrence")

    administrative = occurrence("FZADM", "ADMINISTRATIVE", "2026-01-05", "2026-12-18", units)
    first_session = occurrence("FZS1", "SESSION", "2026-02-02", "2026-03-27", units[:2])
    second_session = occurrence("FZS2", "SESSION", "2026-05-04", "2026-06-26", units[2:])
    standard = occurrence("FZSTD", "STANDARD", "2026-03-02", "2026-03-06", units[:1])
    client.create(
        CREATE_CLASS,
        {
            "occurrence": first_session,
            "startsAt": "2026-02-03T09:00:00+11:00",
            "endsAt": "2026-02-03T16:00:00+11:00",
        },
        "class",
    )

    for number in range(1, 4):
        client_id = client.create(
            CREATE_CLIENT, {"code": f"FZC{number}", "surname": f"Fuzz{number}"}, "client"
        )
        administrative_enrolment = client.create(
            ENROL_CLIENT,
            {"input": {"clientId": client_id, "occurrenceId": administrative}},
            "enrolment",
        )
        client.create(
            RECORD_PAYMENT,
            {"enrolment": administrative_enrolment, "amount": "100.00", "paidOn": "2026-01-10"},
            "payment",
        )
        session_enrolment = client.create(
            ENROL_CLIENT,
            {"input": {"clientId": client_id, "occurrenceId": first_session, "link": True}},
            "enrolment",
        )
        client.create(
            ENROL_CLIENT,
            {"input": {"clientId": client_id, "occurrenceId": second_session, "link": True}},
            "enrolment",
        )
        client.create(
            ENROL_CLIENT, {"input": {"clientId": client_id, "occurrenceId": standard}}, "enrolment"
        )
        client.create(
            RECORD_RESULT,
            {
                "input": {
                    "enrolmentId": session_enrolment,
                    "unitId": units[0],
                    "outcome": "COMPETENCY_ACHIEVED",
                    "startDate": "2026-02-02",
                    "endDate": "2026-02-20",
                }
            },
            "result",
        )
