"""Random sequences of enrolment, linking and result changes against the running service.

:class:`RollUpMachine` is a Hypothesis rule-based state machine. Its rules call the GraphQL API
of an `enrolink serve` process (or change rows in SQL, as an import would) and keep a
:class:`~tests.reliability.roll_up_model.World` of what the API accepted. Where the model can
predict a mutation's result, the rule checks it. After each sequence it waits until the
worker has processed every outbox row, runs the reconciler, waits again, and then requires
the database to match the model: the same active links, and every administrative result
equal to what the reference rule computes from the session results.

The service, the worker and the database are shared by all sequences of a run; each sequence
starts by emptying the domain tables.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, ClassVar, TypeVar

import psycopg2  # type: ignore[import-untyped]  # psycopg2 ships no type hints
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from schema.ids import split_id
from tests.reliability.client import (
    ADD_OCCURRENCE_UNITS,
    CREATE_CLIENT,
    CREATE_OCCURRENCE,
    CREATE_PROGRAMME,
    CREATE_UNIT,
    DELETE_ENROLMENT,
    ENROL_CLIENT,
    LINK_ENROLMENTS,
    RECONCILE_LINKS,
    RECORD_RESULT,
    RECORD_RESULTS,
    REMOVE_OCCURRENCE_UNIT,
    UNLINK_ENROLMENTS,
    WITHDRAW_ENROLMENT,
    ApiClient,
    iso,
)
from tests.reliability.roll_up_model import (
    ModelEnrolment,
    ModelOccurrence,
    RolledUp,
    StoredResult,
    World,
    link_candidates,
    link_error,
)
from tests.reliability.servers import psycopg2_dsn

F = TypeVar("F", bound=Callable[..., Any])

OUTCOMES = [
    "COMPETENCY_ACHIEVED",
    "COMPETENCY_NOT_ACHIEVED",
    "WITHDRAWN",
    "INCOMPLETE_RTO_CLOSURE",
    "RPL_GRANTED",
    "RPL_NOT_GRANTED",
    "RCC_GRANTED",
    "RCC_NOT_GRANTED",
    "CREDIT_TRANSFER",
    "SUPERSEDED_SUBJECT",
    "CONTINUING",
    "NON_ASSESSABLE_COMPLETED",
    "NON_ASSESSABLE_NOT_COMPLETED",
    "NOT_YET_STARTED",
]
# Date windows for occurrences: a qualification year, its first half, sessions inside it, and
# one session the next year that overlaps nothing.
WINDOWS = [
    (date(2026, 1, 5), date(2026, 12, 18)),
    (date(2026, 1, 5), date(2026, 6, 26)),
    (date(2026, 2, 2), date(2026, 3, 27)),
    (date(2026, 4, 6), date(2026, 5, 29)),
    (date(2026, 6, 1), date(2026, 8, 28)),
    (date(2027, 2, 1), date(2027, 3, 26)),
]
UNIT_COUNT = 5
# The domain tables emptied between sequences, children first; tokens and attendance types stay.
DOMAIN_TABLES = [
    "attendances",
    "payments",
    "charges",
    "classes",
    "enrolled_unit_history",
    "enrolment_links",
    "enrolled_units",
    "enrolments",
    "clients",
    "occurrence_units",
    "occurrences",
    "programme_units",
    "programmes",
    "units",
    "outbox",
    "reconciliation_counts",
    "reconciliation_runs",
]

# The tables the start is saved from, children first; the rest of DOMAIN_TABLES starts empty.
START_TABLES = [
    table
    for table in DOMAIN_TABLES
    if table not in ("outbox", "reconciliation_counts", "reconciliation_runs")
]

_PENDING_OUTBOX = "SELECT count(*) FROM outbox WHERE processed_at IS NULL"
_FAILED_OUTBOX = "SELECT id, task_name, last_error FROM outbox WHERE last_error IS NOT NULL"
_ACTIVE_LINKS = "SELECT session_enrolment_id, administrative_enrolment_id FROM enrolment_links " \
    "WHERE unlinked_at IS NULL"  # fmt: skip
_DELETE_IN_SQL = "UPDATE enrolments SET deleted_at = now() WHERE id = %s"
_ENROLMENT_STATES = "SELECT id, status, deleted_at IS NOT NULL, client_id FROM enrolments"
_OCCURRENCE_UNITS = "SELECT occurrence_id, unit_id FROM occurrence_units"
_RESULTS = """
SELECT id, enrolment_id, unit_id, outcome, start_date, end_date, recorded_at,
       source_enrolled_unit_id
FROM enrolled_units
"""
_OUTCOMES_FOR_UNIT = """
SELECT count(*) FROM enrolled_units AS eu JOIN enrolments AS e ON e.id = eu.enrolment_id
WHERE e.occurrence_id = %s AND eu.unit_id = %s AND e.deleted_at IS NULL
  AND eu.outcome IS NOT NULL
"""
_PENDING_ROLL_UPS = """
SELECT e.id FROM enrolments AS e JOIN occurrences AS o ON o.id = e.occurrence_id
WHERE o.kind = 'ADMINISTRATIVE' AND e.roll_up_version <> e.roll_up_computed_version
"""


@dataclass
class Stats:
    sequences: int = 0
    steps: int = 0
    mutations: int = 0
    corruptions: int = 0
    user_errors: dict[str, int] = field(default_factory=dict)
    rule_calls: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0
    results_compared: int = 0
    results_rolled_up: int = 0
    contested: int = 0
    """Administrative units with more than one candidate result at the final check."""


@dataclass
class Environment:
    """The service the machine drives: its API, its database, and how long to wait for it."""

    client: ApiClient
    database_url: str
    drain_timeout_seconds: float = 30.0
    stats: Stats = field(default_factory=Stats)
    connection: Any = None
    start: Start | None = None

    def db(self) -> Any:
        if self.connection is None or self.connection.closed:
            self.connection = psycopg2.connect(psycopg2_dsn(self.database_url))
            self.connection.autocommit = True
        return self.connection

    def query(self, statement: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        with self.db().cursor() as cursor:
            cursor.execute(statement, parameters)
            return list(cursor.fetchall()) if cursor.description else []

    def reset(self) -> None:
        with self.db().cursor() as cursor:
            cursor.execute("BEGIN")
            for table in DOMAIN_TABLES:
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("COMMIT")

    def save_start(self) -> None:
        """Copy the domain tables aside, so later sequences start from them in one transaction.

        Restoring takes about 20 ms where building the start through the API takes about 20
        requests. The outbox and the reconciliation runs start empty every time.
        """
        with self.db().cursor() as cursor:
            for table in START_TABLES:
                cursor.execute(f"DROP TABLE IF EXISTS start_{table}")
                cursor.execute(f"CREATE TABLE start_{table} AS TABLE {table}")

    def restore_start(self) -> None:
        with self.db().cursor() as cursor:
            cursor.execute("BEGIN")
            for table in DOMAIN_TABLES:
                cursor.execute(f"DELETE FROM {table}")
            for table in reversed(START_TABLES):
                cursor.execute(f"INSERT INTO {table} SELECT * FROM start_{table}")
            cursor.execute("COMMIT")

    def drain(self) -> None:
        """Wait until the worker has processed every outbox row; fail after the timeout."""
        started = time.monotonic()
        deadline = started + self.drain_timeout_seconds
        delay = 0.01
        while self.query(_PENDING_OUTBOX)[0][0]:
            failed = self.query(_FAILED_OUTBOX)
            assert not failed, f"roll-up tasks failed: {failed}"
            if time.monotonic() > deadline:
                pending = self.query("SELECT * FROM outbox WHERE processed_at IS NULL")
                raise AssertionError(
                    f"the outbox was not drained within {self.drain_timeout_seconds} s: {pending}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.stats.drain_seconds += time.monotonic() - started

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def pk(global_id: str) -> int:
    parts = split_id(global_id)
    assert parts is not None, global_id
    return parts[1]


def step(function: F) -> F:
    """Mark the machine as mid-step while a rule runs, so teardown can tell that one failed."""

    @functools.wraps(function)
    def wrapper(self: RollUpMachine, *args: Any, **kwargs: Any) -> Any:
        self.step_failed = True
        calls = self.environment.stats.rule_calls
        calls[function.__name__] = calls.get(function.__name__, 0) + 1
        result = function(self, *args, **kwargs)
        self.step_failed = False
        self.environment.stats.steps += 1
        return result

    return wrapper  # type: ignore[return-value]


@dataclass
class Start:
    """The world every sequence starts from, built once through the API and kept in SQL."""

    world: World
    unit_gids: dict[int, str]
    client_gids: dict[int, str]
    programme: str


class RollUpMachine(RuleBasedStateMachine):
    environment: ClassVar[Environment]
    world: World
    unit_gids: dict[int, str]
    client_gids: dict[int, str]
    programme: str

    def __init__(self) -> None:
        super().__init__()
        self.step_failed = False
        env = self.environment
        env.stats.sequences += 1
        # A sequence that failed may have left tasks behind; let them finish before emptying.
        try:
            env.drain()
        except AssertionError:
            pass
        if env.start is None:
            env.reset()
            self.world = World()
            self.unit_gids = {}
            self.client_gids = {}
            self.build_start()
            env.drain()
            env.save_start()
            env.start = Start(
                copy.deepcopy(self.world), dict(self.unit_gids), dict(self.client_gids),
                self.programme,
            )  # fmt: skip
        else:
            env.restore_start()
            start = copy.deepcopy(env.start)
            self.world = start.world
            self.unit_gids = start.unit_gids
            self.client_gids = start.client_gids
            self.programme = start.programme

    # -----------------------------------------------------------------------------------------
    # Calls

    def mutate(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        self.environment.stats.mutations += 1
        payload = self.environment.client.payload(document, variables)
        for error in payload.get("errors") or []:
            code = error["code"]
            self.environment.stats.user_errors[code] = (
                self.environment.stats.user_errors.get(code, 0) + 1
            )
        return payload

    def expect(self, payload: dict[str, Any], code: str | None, description: str) -> None:
        """Require success (``code`` None) or exactly one error with ``code``."""
        codes = [error["code"] for error in payload["errors"]]
        if code is None:
            assert not codes, f"{description}: expected success, got {payload['errors']}"
        else:
            assert codes == [code], f"{description}: expected {code}, got {payload['errors']}"

    # -----------------------------------------------------------------------------------------
    # The start: five units, a programme, occurrences of both kinds, two clients

    def build_start(self) -> None:
        client = self.environment.client
        for number in range(1, UNIT_COUNT + 1):
            gid = client.create(
                CREATE_UNIT, {"code": f"MU{number}", "title": f"Unit {number}"}, "unit"
            )
            self.unit_gids[pk(gid)] = gid
            self.world.unit_ids.append(pk(gid))
        self.programme = client.create(
            CREATE_PROGRAMME,
            {
                "code": "MP",
                "name": "Qualification",
                "unitIds": list(self.unit_gids.values()),
            },
            "programme",
        )
        units = self.world.unit_ids
        self._create_occurrence("ADMINISTRATIVE", WINDOWS[0], units[:4])
        self._create_occurrence("ADMINISTRATIVE", WINDOWS[1], units[:2])
        self._create_occurrence("SESSION", WINDOWS[2], units[:2])
        self._create_occurrence("SESSION", WINDOWS[3], units[1:3])
        self._create_occurrence("SESSION", WINDOWS[4], [units[3], units[4]])
        self._create_occurrence("SESSION", WINDOWS[5], units[:1])
        for _ in range(2):
            self._create_client()
        # Both clients start in the year-long administrative occurrence and in linked sessions
        # with results, so every sequence has roll-ups to change from its first step. Sessions
        # 3 and 4 share unit 2, so their results compete for it; session 5 has unit 5, which
        # the administrative occurrence lacks.
        first, second = self.world.client_ids
        self._enrol(first, 1)
        self._enrol(second, 1)
        first_s3 = self._enrol(first, 3, link=True)
        first_s4 = self._enrol(first, 4, link=True)
        second_s4 = self._enrol(second, 4, link=True)
        second_s5 = self._enrol(second, 5, link=True)
        for enrolment, unit_number, outcome in (
            (first_s3, 1, "COMPETENCY_ACHIEVED"),
            (first_s3, 2, "COMPETENCY_ACHIEVED"),
            (first_s4, 2, "CONTINUING"),
            (first_s4, 3, "NOT_YET_STARTED"),
            (second_s4, 2, "RPL_GRANTED"),
            (second_s5, 4, "CONTINUING"),
            (second_s5, 5, "COMPETENCY_ACHIEVED"),
        ):
            variables = {
                "enrolmentId": enrolment.gid,
                "unitId": self.unit_gids[units[unit_number - 1]],
                "outcome": outcome,
            }
            self.expect(self.mutate(RECORD_RESULT, {"input": variables}), None, f"{variables}")

    def _enrol(
        self, client_id: int, occurrence_number: int, *, link: bool = False
    ) -> ModelEnrolment:
        occurrence = list(self.world.occurrences.values())[occurrence_number - 1]
        variables = {
            "clientId": self.client_gids[client_id],
            "occurrenceId": occurrence.gid,
            "link": link,
        }
        payload = self.mutate(ENROL_CLIENT, {"input": variables})
        self.expect(payload, None, f"enrol {variables}")
        return self._add_enrolment(payload, client_id, occurrence)

    def _add_enrolment(
        self, payload: dict[str, Any], client_id: int, occurrence: ModelOccurrence
    ) -> ModelEnrolment:
        enrolment_payload = payload["enrolment"]
        enrolment = ModelEnrolment(
            id=pk(enrolment_payload["id"]),
            gid=enrolment_payload["id"],
            client_id=client_id,
            occurrence=occurrence,
            start_date=date.fromisoformat(enrolment_payload["startDate"]),
            end_date=date.fromisoformat(enrolment_payload["endDate"]),
        )
        self.world.enrolments[enrolment.id] = enrolment
        if payload["link"] is not None:
            self.world.links[enrolment.id] = pk(payload["link"]["administrativeEnrolment"]["id"])
        return enrolment

    def _create_occurrence(
        self, kind: str, window: tuple[date, date], unit_ids: list[int]
    ) -> ModelOccurrence:
        serial = len(self.world.occurrences) + 1
        gid = self.environment.client.create(
            CREATE_OCCURRENCE,
            {
                "input": {
                    "programmeId": self.programme,
                    "code": f"OCC{serial}",
                    "name": f"{kind.title()} {serial}",
                    "kind": kind,
                    "startDate": iso(window[0]),
                    "endDate": iso(window[1]),
                    "unitIds": [self.unit_gids[unit_id] for unit_id in unit_ids],
                }
            },
            "occurrence",
        )
        occurrence = ModelOccurrence(pk(gid), gid, kind, window[0], window[1], set(unit_ids))
        self.world.occurrences[occurrence.id] = occurrence
        return occurrence

    def _create_client(self) -> None:
        serial = len(self.world.client_ids) + 1
        gid = self.environment.client.create(
            CREATE_CLIENT, {"code": f"C{serial}", "surname": f"Client{serial}"}, "client"
        )
        self.client_gids[pk(gid)] = gid
        self.world.client_ids.append(pk(gid))

    # -----------------------------------------------------------------------------------------
    # Creating

    @rule(data=st.data(), kind_of_row=st.sampled_from(["client", "occurrence"]))
    @step
    def create(self, data: st.DataObject, kind_of_row: str) -> None:
        if kind_of_row == "client":
            if len(self.world.client_ids) < 5:
                self._create_client()
            return
        if len(self.world.occurrences) >= 10:
            return
        kind = data.draw(st.sampled_from(["ADMINISTRATIVE", "SESSION"]), label="kind")
        window = data.draw(st.sampled_from(WINDOWS), label="window")
        unit_ids = data.draw(
            st.lists(st.sampled_from(self.world.unit_ids), min_size=1, max_size=3, unique=True),
            label="units",
        )
        self._create_occurrence(kind, window, sorted(unit_ids))

    # -----------------------------------------------------------------------------------------
    # Enrolling and linking

    @rule(data=st.data(), link=st.sampled_from(["none", "false", "true", "true", "target"]))
    @step
    def enrol(self, data: st.DataObject, link: str) -> None:
        world = self.world
        client_id = data.draw(st.sampled_from(world.client_ids), label="client")
        occurrences = list(world.occurrences.values())
        sessions = [occurrence for occurrence in occurrences if occurrence.kind == "SESSION"]
        if link in ("true", "target") and data.draw(st.integers(0, 4), label="session") > 0:
            occurrences = sessions
        occurrence = data.draw(st.sampled_from(occurrences), label="occurrence")
        target: ModelEnrolment | None = None
        administrative = world.of_kind("ADMINISTRATIVE")
        if link == "target":
            if not administrative:
                link = "true"
            else:
                target = data.draw(st.sampled_from(administrative), label="target")
        start, end = self._draw_range(data, occurrence.start_date, occurrence.end_date)

        variables: dict[str, Any] = {
            "clientId": self.client_gids[client_id],
            "occurrenceId": occurrence.gid,
        }
        if start is not None:
            variables |= {"startDate": iso(start), "endDate": iso(end)}
        if link == "false":
            variables["link"] = False
        elif link == "true":
            variables["link"] = True
        elif target is not None:
            variables["administrativeEnrolmentId"] = target.gid

        expected_code, expected_target = self._expected_enrolment(
            client_id, occurrence, link, target
        )
        payload = self.mutate(ENROL_CLIENT, {"input": variables})
        self.expect(payload, expected_code, f"enrol {variables}")
        if expected_code is not None:
            return

        link_payload = payload["link"]
        if expected_target is None:
            assert link_payload is None, payload
        else:
            assert link_payload is not None, payload
            assert pk(link_payload["administrativeEnrolment"]["id"]) == expected_target
        self._add_enrolment(payload, client_id, occurrence)

    def _expected_enrolment(
        self,
        client_id: int,
        occurrence: ModelOccurrence,
        link: str,
        target: ModelEnrolment | None,
    ) -> tuple[str | None, int | None]:
        """Return the error code enrolClient must give (or None) and the link target."""
        world = self.world
        wants_link = link in ("true", "target")
        if wants_link and occurrence.kind != "SESSION":
            return "WRONG_OCCURRENCE_KIND", None
        enrolled = [
            enrolment
            for enrolment in world.enrolments.values()
            if enrolment.client_id == client_id
            and enrolment.occurrence.id == occurrence.id
            and enrolment.status != "CANCELLED"
            and not enrolment.deleted
        ]
        if enrolled:
            return "ALREADY_ENROLLED", None
        if not wants_link:
            return None, None
        if target is None:
            candidates = link_candidates(world, client_id, occurrence)
            if not candidates:
                return "NO_ADMINISTRATIVE_ENROLMENT", None
            if len(candidates) > 1:
                return "AMBIGUOUS_ADMINISTRATIVE_ENROLMENT", None
            return None, candidates[0]
        # The new enrolment would be ACTIVE, in this occurrence, of this client.
        if target.client_id != client_id:
            return "CLIENT_MISMATCH", None
        if not target.live:
            return "ENROLMENT_NOT_ACTIVE", None
        if not (
            target.occurrence.start_date <= occurrence.end_date
            and occurrence.start_date <= target.occurrence.end_date
        ):
            return "DATES_DO_NOT_OVERLAP", None
        if not target.occurrence.units & occurrence.units:
            return "NO_SHARED_UNITS", None
        return None, target.id

    enrol_again = enrol

    @precondition(lambda self: bool(self.world.enrolments))
    @rule(data=st.data())
    @step
    def link(self, data: st.DataObject) -> None:
        world = self.world
        administrative_pool = world.of_kind("ADMINISTRATIVE") or list(world.enrolments.values())
        session_pool = world.of_kind("SESSION") or list(world.enrolments.values())
        # Now and then any enrolment on either side, to reach the kind checks.
        if data.draw(st.integers(0, 9), label="any kind") == 0:
            administrative_pool = session_pool = list(world.enrolments.values())
        administrative = data.draw(st.sampled_from(administrative_pool), label="administrative")
        session = data.draw(st.sampled_from(session_pool), label="session")
        if administrative.id == session.id:
            return
        expected = link_error(world, administrative.id, session.id)
        payload = self.mutate(
            LINK_ENROLMENTS, {"administrative": administrative.gid, "session": session.gid}
        )
        self.expect(payload, expected, f"link {administrative.id} <- {session.id}")
        if expected is None:
            world.links[session.id] = administrative.id

    @precondition(lambda self: bool(self.world.of_kind("SESSION")))
    @rule(data=st.data())
    @step
    def unlink(self, data: st.DataObject) -> None:
        pool = [self.world.enrolments[key] for key in self.world.links]
        if not pool or data.draw(st.booleans(), label="any session"):
            pool = self.world.of_kind("SESSION")
        session = data.draw(st.sampled_from(pool), label="session")
        expected = None if session.id in self.world.links else "NOT_LINKED"
        payload = self.mutate(UNLINK_ENROLMENTS, {"session": session.gid})
        self.expect(payload, expected, f"unlink {session.id}")
        if expected is None:
            assert pk(payload["link"]["administrativeEnrolment"]["id"]) == self.world.links.pop(
                session.id
            )

    # -----------------------------------------------------------------------------------------
    # Results

    def _draw_range(
        self, data: st.DataObject, start: date, end: date, *, outside: bool = False
    ) -> tuple[date | None, date]:
        """Draw (start, end) inside [start, end], or (None, end) for "leave the dates out"."""
        if data.draw(st.integers(0, 3), label="default dates") == 0:
            return None, end
        span = (end - start).days
        first = start + timedelta(days=data.draw(st.integers(0, span), label="start"))
        last = first + timedelta(days=data.draw(st.integers(0, (end - first).days), label="end"))
        if outside:
            first -= timedelta(days=data.draw(st.integers(1, 30), label="before"))
        return first, last

    def _record_result_error(
        self, enrolment: ModelEnrolment, unit_id: int, start: date | None, end: date
    ) -> str | None:
        if enrolment.kind == "ADMINISTRATIVE":
            return "RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE"
        if enrolment.deleted or enrolment.status not in ("ACTIVE", "COMPLETED"):
            return "ENROLMENT_NOT_ACTIVE"
        if unit_id not in enrolment.occurrence.units:
            return "UNIT_NOT_IN_ENROLMENT"
        if start is not None and not enrolment.start_date <= start <= enrolment.end_date:
            return "DATES_OUTSIDE_ENROLMENT"
        return None

    @precondition(lambda self: bool(self.world.enrolments))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    @step
    def record_result(self, data: st.DataObject, outcome: str) -> None:
        pool = self.world.of_kind("SESSION")
        if not pool or data.draw(st.integers(0, 5), label="any enrolment") == 0:
            pool = list(self.world.enrolments.values())
        enrolment = data.draw(st.sampled_from(pool), label="enrolment")
        unit_id = data.draw(st.sampled_from(self.world.unit_ids), label="unit")
        outside = data.draw(st.integers(0, 9), label="outside") == 0
        start, end = self._draw_range(
            data, enrolment.start_date, enrolment.end_date, outside=outside
        )
        variables: dict[str, Any] = {
            "enrolmentId": enrolment.gid,
            "unitId": self.unit_gids[unit_id],
            "outcome": outcome,
        }
        if start is not None:
            variables |= {"startDate": iso(start), "endDate": iso(end)}
        expected = self._record_result_error(enrolment, unit_id, start, end)
        payload = self.mutate(RECORD_RESULT, {"input": variables})
        self.expect(payload, expected, f"record {variables}")

    @precondition(lambda self: bool(self.world.links))
    @rule(data=st.data())
    @step
    def record_linked_results(self, data: st.DataObject) -> None:
        """Record results that roll up: live linked sessions, units both occurrences carry.

        Several at once, so that two sessions often hold results for the same unit and the
        ranking decides between them.
        """
        world = self.world
        choices = [
            (session, unit_id)
            for session_id, administrative_id in sorted(world.links.items())
            for session in [world.enrolments[session_id]]
            if session.live
            for unit_id in sorted(
                session.occurrence.units & world.enrolments[administrative_id].occurrence.units
            )
        ]
        if not choices:
            return
        picked = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=5), label="p")
        for session, unit_id in picked:
            outcome = data.draw(st.sampled_from(OUTCOMES), label="outcome")
            start, end = self._draw_range(data, session.start_date, session.end_date)
            variables: dict[str, Any] = {
                "enrolmentId": session.gid,
                "unitId": self.unit_gids[unit_id],
                "outcome": outcome,
            }
            if start is not None:
                variables |= {"startDate": iso(start), "endDate": iso(end)}
            payload = self.mutate(RECORD_RESULT, {"input": variables})
            self.expect(payload, None, f"record {variables}")

    # A rule listed under several names is drawn more often. Results that roll up are what the
    # checks compare, so they come most often.
    record_linked_results_again = record_linked_results
    record_linked_results_once_more = record_linked_results

    @precondition(lambda self: bool(self.world.of_kind("SESSION")))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    @step
    def record_results(self, data: st.DataObject, outcome: str) -> None:
        """Record one unit for several live enrolments of one session occurrence at once."""
        sessions = [enrolment for enrolment in self.world.of_kind("SESSION") if enrolment.live]
        if not sessions:
            return
        occurrence = data.draw(st.sampled_from(sessions), label="enrolment").occurrence
        if not occurrence.units:
            return
        members = [enrolment for enrolment in sessions if enrolment.occurrence is occurrence]
        chosen = data.draw(
            st.lists(st.sampled_from(members), min_size=1, unique_by=lambda e: e.id), label="e"
        )
        unit_id = data.draw(st.sampled_from(sorted(occurrence.units)), label="unit")
        entries = []
        for enrolment in chosen:
            start, end = self._draw_range(data, enrolment.start_date, enrolment.end_date)
            entry: dict[str, Any] = {"enrolmentId": enrolment.gid, "outcome": outcome}
            if start is not None:
                entry |= {"startDate": iso(start), "endDate": iso(end)}
            entries.append(entry)
        payload = self.mutate(
            RECORD_RESULTS,
            {
                "input": {
                    "occurrenceId": occurrence.gid,
                    "unitId": self.unit_gids[unit_id],
                    "entries": entries,
                }
            },
        )
        self.expect(payload, None, f"record results {entries}")

    # -----------------------------------------------------------------------------------------
    # Withdrawing and deleting

    @precondition(lambda self: bool(self.world.enrolments))
    @rule(data=st.data(), cascade=st.sampled_from([None, False, True]))
    @step
    def withdraw(self, data: st.DataObject, cascade: bool | None) -> None:
        world = self.world
        enrolment = data.draw(st.sampled_from(list(world.enrolments.values())), label="e")
        outside = data.draw(st.integers(0, 9), label="outside") == 0
        span = (enrolment.end_date - enrolment.start_date).days
        on = enrolment.start_date + timedelta(days=data.draw(st.integers(0, span), label="on"))
        if outside:
            on = enrolment.end_date + timedelta(days=1)
        linked_live = [
            world.enrolments[session_id]
            for session_id, administrative_id in world.links.items()
            if administrative_id == enrolment.id and world.enrolments[session_id].live
        ]

        expected: str | None = None
        if not enrolment.live:
            expected = "ENROLMENT_NOT_ACTIVE"
        elif outside:
            expected = "DATES_OUTSIDE_ENROLMENT"
        elif linked_live and not cascade:
            expected = "LINKED_SESSIONS_ACTIVE"

        payload = self.mutate(
            WITHDRAW_ENROLMENT, {"id": enrolment.gid, "on": iso(on), "cascade": cascade}
        )
        self.expect(payload, expected, f"withdraw {enrolment.id} on {on} cascade {cascade}")
        if expected is not None:
            return
        withdrawn = {pk(item["id"]) for item in payload["enrolments"]}
        assert withdrawn == {enrolment.id, *(session.id for session in linked_live)}, payload
        for enrolment_id in withdrawn:
            world.enrolments[enrolment_id].status = "WITHDRAWN"

    @precondition(lambda self: bool(self.world.enrolments))
    @rule(data=st.data())
    @step
    def delete(self, data: st.DataObject) -> None:
        enrolment = data.draw(st.sampled_from(list(self.world.enrolments.values())), label="e")
        payload = self.mutate(DELETE_ENROLMENT, {"id": enrolment.gid})
        self.expect(payload, None, f"delete {enrolment.id}")
        if not enrolment.deleted:
            enrolment.deleted = True
            self.world.close_links_of(enrolment.id)

    # -----------------------------------------------------------------------------------------
    # Occurrence units

    @rule(data=st.data())
    @step
    def add_units(self, data: st.DataObject) -> None:
        occurrence = data.draw(st.sampled_from(list(self.world.occurrences.values())), label="o")
        unit_ids = data.draw(
            st.lists(st.sampled_from(self.world.unit_ids), min_size=1, max_size=2, unique=True),
            label="units",
        )
        payload = self.mutate(
            ADD_OCCURRENCE_UNITS,
            {"occurrence": occurrence.gid, "units": [self.unit_gids[u] for u in unit_ids]},
        )
        self.expect(payload, None, f"add units {unit_ids} to {occurrence.id}")
        occurrence.units.update(unit_ids)

    @rule(data=st.data())
    @step
    def remove_unit(self, data: st.DataObject) -> None:
        occurrence = data.draw(st.sampled_from(list(self.world.occurrences.values())), label="o")
        unit_id = data.draw(st.sampled_from(self.world.unit_ids), label="unit")
        # Whether an outcome is recorded for the unit depends on withdrawals and roll-ups, which
        # the model does not follow. Once the roll-ups have run, the database records it, and a
        # replayed sequence gets the same result.
        self.environment.drain()
        has_outcomes = bool(
            self.environment.query(_OUTCOMES_FOR_UNIT, (occurrence.id, unit_id))[0][0]
        )
        payload = self.mutate(
            REMOVE_OCCURRENCE_UNIT, {"occurrence": occurrence.gid, "unit": self.unit_gids[unit_id]}
        )
        expected: str | None = None
        if unit_id not in occurrence.units:
            expected = None
        elif occurrence.units == {unit_id}:
            expected = "INVALID_INPUT"
        elif has_outcomes:
            expected = "UNIT_HAS_RESULTS"
        self.expect(payload, expected, f"remove unit {unit_id} from {occurrence.id}")
        if expected is None and unit_id in occurrence.units:
            occurrence.units.discard(unit_id)
            self.world.close_links_without_shared_units(occurrence.id)

    # -----------------------------------------------------------------------------------------
    # Changes an import makes in SQL, behind the API's back

    @precondition(lambda self: bool(self.world.links))
    @rule(
        data=st.data(),
        change=st.sampled_from(
            ["delete administrative", "delete session", "move to another client", "cancel"]
        ),
    )
    @step
    def corrupt(self, data: st.DataObject, change: str) -> None:
        """Change a linked enrolment in SQL, as an import does, leaving its link active."""
        world = self.world
        session_id = data.draw(st.sampled_from(sorted(world.links)), label="link")
        administrative_id = world.links[session_id]
        if change == "delete administrative":
            self._corrupt(_DELETE_IN_SQL, administrative_id)
            world.enrolments[administrative_id].deleted = True
        elif change == "delete session":
            self._corrupt(_DELETE_IN_SQL, session_id)
            world.enrolments[session_id].deleted = True
        elif change == "cancel":
            self._corrupt("UPDATE enrolments SET status = 'CANCELLED' WHERE id = %s", session_id)
            world.enrolments[session_id].status = "CANCELLED"
        else:
            enrolment = world.enrolments[
                data.draw(st.sampled_from([session_id, administrative_id]), label="side")
            ]
            others = [client for client in world.client_ids if client != enrolment.client_id]
            client_id = data.draw(st.sampled_from(others), label="client")
            try:
                self._corrupt(
                    "UPDATE enrolments SET client_id = %s WHERE id = %s", client_id, enrolment.id
                )
            except psycopg2.IntegrityError:
                # The other client already has a live enrolment in that occurrence.
                return
            enrolment.client_id = client_id

    def _corrupt(self, statement: str, *parameters: Any) -> None:
        self.environment.query(statement, parameters)
        self.environment.stats.corruptions += 1

    @rule(settle=st.booleans())
    @step
    def reconcile(self, settle: bool) -> None:
        """Run the reconciler, at once or once the worker has caught up and then check.

        Checking in mid-sequence compares links and results built so far before later steps
        close or withdraw them.
        """
        if settle:
            self.settle_and_check()
        else:
            self._reconcile()

    def _reconcile(self) -> None:
        payload = self.mutate(RECONCILE_LINKS, {})
        self.expect(payload, None, "reconcileLinks")
        closed = self.world.reconcile()
        repaired = {
            count["cause"]: count["repaired"]
            for count in payload["run"]["counts"]
            if count["cause"] != "STALE_RESULT" and count["repaired"]
        }
        assert repaired == closed, payload

    def teardown(self) -> None:
        if not self.step_failed:
            self.settle_and_check()

    def settle_and_check(self) -> None:
        """Wait for the worker, run the reconciler, wait again, then compare with the model."""
        env = self.environment
        env.drain()
        self._reconcile()
        env.drain()
        self.check_database()

    def check_database(self) -> None:
        env = self.environment
        world = self.world
        assert env.query(_PENDING_ROLL_UPS) == []

        assert dict(env.query(_ACTIVE_LINKS)) == world.links
        states = {row[0]: row[1:] for row in env.query(_ENROLMENT_STATES)}
        for enrolment in world.enrolments.values():
            expected_state = (enrolment.status, enrolment.deleted, enrolment.client_id)
            assert states[enrolment.id] == expected_state, enrolment
        occurrence_units: dict[int, set[int]] = {}
        for occurrence_id, unit_id in env.query(_OCCURRENCE_UNITS):
            occurrence_units.setdefault(occurrence_id, set()).add(unit_id)
        for occurrence in world.occurrences.values():
            assert occurrence_units.get(occurrence.id, set()) == occurrence.units

        stored: dict[int, list[StoredResult]] = {}
        for row in env.query(_RESULTS):
            stored.setdefault(row[1], []).append(StoredResult(*row))
        expected = world.expected_results(stored)
        actual = {
            (row.enrolment_id, row.unit_id): RolledUp(
                row.outcome, row.start_date, row.end_date, row.source_enrolled_unit_id,
                row.recorded_at,
            )
            for rows in stored.values()
            for row in rows
            if (row.enrolment_id, row.unit_id) in expected
        }  # fmt: skip
        assert set(actual) == set(expected)
        env.stats.results_compared += len(expected)
        env.stats.results_rolled_up += sum(value.outcome is not None for value in expected.values())
        env.stats.contested += world.contested(stored)
        wrong = {
            key: {"expected": value, "actual": actual[key]}
            for key, value in expected.items()
            if actual[key] != value
        }
        assert not wrong, f"administrative results differ from the roll-up rule: {wrong}"


def run_sequences(
    environment: Environment, *, sequences: int, steps: int, seed_value: int | None = None
) -> None:
    """Run the machine for ``sequences`` sequences of at most ``steps`` steps each.

    Without ``seed_value`` the run is derandomised (the same sequences every time), as the test
    suite wants; with one, another repeatable set.
    """
    machine = type("SeededRollUpMachine", (RollUpMachine,), {"environment": environment})
    if seed_value is not None:
        machine = seed(seed_value)(machine)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=sequences,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=seed_value is None,
            suppress_health_check=list(HealthCheck),
        ),
    )
