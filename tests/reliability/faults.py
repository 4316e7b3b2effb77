"""A whole deployment on loopback for the fault tests, and the checks run after each fault.

PostgreSQL and Redis here are private to the tests (a cluster in a temporary folder and a
redis-server on free ports), so restarting them does not affect other test runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx
import pytest

from models.migrate import upgrade_to_head
from schema.ids import split_id
from tests.reliability.client import (
    CREATE_CLIENT,
    CREATE_OCCURRENCE,
    CREATE_PROGRAMME,
    CREATE_UNIT,
    ENROL_CLIENT,
    ApiClient,
)
from tests.reliability.load import Key, LoadLog
from tests.reliability.roll_up_model import StoredResult, roll_up_unit
from tests.reliability.servers import ApiServer, PrivatePostgres, sql
from tests.workers.conftest import PrivateRedis, ServiceProcess, WorkerStack

# The API's pool in these tests: enough for the load threads and the aborted burst to queue.
API_POOL_SIZE = 5
API_MAX_OVERFLOW = 5
WORKER_PROCESSES = 2
# The pool size tests/workers/conftest.py gives each worker process.
WORKER_POOL_SIZE = 2
STACK_SETTINGS = {
    # The relay runs every second and sends again what Redis lost after 5 s, so a restart
    # of Redis that loses the queues is repaired within the test's waits.
    "ENROLINK_OUTBOX_RELAY_INTERVAL_SECONDS": "1",
    "ENROLINK_OUTBOX_PUBLISH_GRACE_SECONDS": "2",
    "ENROLINK_OUTBOX_REPUBLISH_AFTER_SECONDS": "5",
    # A killed worker's unacknowledged task comes back after this many seconds.
    "ENROLINK_TASK_VISIBILITY_TIMEOUT_SECONDS": "10",
    "ENROLINK_TASK_RETRY_BACKOFF_MAX_SECONDS": "4",
}
CLIENTS = 6
WRITERS = 3

PING = "{ attendanceTypes { code } }"

_CONNECTIONS = """
SELECT application_name, state, count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'enrolink-%%'
  AND pid <> pg_backend_pid()
GROUP BY application_name, state
"""


@dataclass
class LoadWorld:
    """The enrolments the load writes to and reads, made through the API."""

    writer_keys: list[list[Key]]
    abort_keys: list[Key]
    read_ids: list[str]


@dataclass
class Deployment:
    postgres: PrivatePostgres
    redis: PrivateRedis
    stack: WorkerStack
    api: ApiServer
    workers: list[ServiceProcess]
    beat: ServiceProcess
    database_url: str
    world: LoadWorld

    def start_worker(self) -> ServiceProcess:
        worker = self.stack.start_worker()
        self.workers.append(worker)
        return worker

    def logs(self) -> dict[str, str]:
        return {process.name: process.log_text() for process in self.stack.processes}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [event for process in self.stack.processes for event in process.events(name)]


def _pk(global_id: str) -> int:
    parts = split_id(global_id)
    assert parts is not None
    return parts[1]


def build_world(client: ApiClient) -> LoadWorld:
    """Units, one administrative and two session occurrences, clients enrolled and linked."""
    units = [
        client.create(CREATE_UNIT, {"code": f"LDU{n}", "title": f"Load unit {n}"}, "unit")
        for n in range(1, 5)
    ]
    programme = client.create(
        CREATE_PROGRAMME, {"code": "LDP", "name": "Load programme", "unitIds": units}, "programme"
    )
    occurrences = {}
    for code, kind, start, end, unit_ids in (
        ("LDADM", "ADMINISTRATIVE", date(2026, 1, 5), date(2026, 12, 18), units),
        ("LDS1", "SESSION", date(2026, 2, 2), date(2026, 3, 27), units[:2]),
        ("LDS2", "SESSION", date(2026, 4, 6), date(2026, 6, 26), units[1:]),
    ):
        variables = {
            "input": {
                "programmeId": programme,
                "code": code,
                "name": code,
                "kind": kind,
                "startDate": start.isoformat(),
                "endDate": end.isoformat(),
                "unitIds": unit_ids,
            }
        }
        occurrences[code] = (client.create(CREATE_OCCURRENCE, variables, "occurrence"), start, end)

    keys_by_client: list[list[Key]] = []
    read_ids: list[str] = []
    for number in range(1, CLIENTS + 3):
        client_id = client.create(
            CREATE_CLIENT, {"code": f"LD{number}", "surname": f"Load{number}"}, "client"
        )
        administrative = client.create(
            ENROL_CLIENT,
            {"input": {"clientId": client_id, "occurrenceId": occurrences["LDADM"][0]}},
            "enrolment",
        )
        read_ids.append(administrative)
        keys: list[Key] = []
        for code, session_units in (("LDS1", units[:2]), ("LDS2", units[1:])):
            occurrence_id, start, end = occurrences[code]
            session = client.create(
                ENROL_CLIENT,
                {"input": {"clientId": client_id, "occurrenceId": occurrence_id, "link": True}},
                "enrolment",
            )
            read_ids.append(session)
            keys += [Key(session, unit_id, start, end) for unit_id in session_units]
        keys_by_client.append(keys)

    writer_keys = [
        [key for keys in keys_by_client[writer:CLIENTS:WRITERS] for key in keys]
        for writer in range(WRITERS)
    ]
    abort_keys = [key for keys in keys_by_client[CLIENTS:] for key in keys]
    return LoadWorld(writer_keys, abort_keys, read_ids)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("deployment")
    postgres = PrivatePostgres()
    redis_folder = folder / "redis"
    redis_folder.mkdir()
    redis = PrivateRedis(redis_folder)
    stack: WorkerStack | None = None
    try:
        postgres.init()
        postgres.start()
        sql(postgres.url(), "CREATE DATABASE enrolink")
        database_url = postgres.url("enrolink")
        asyncio.run(upgrade_to_head(database_url))
        redis.start()

        stack = WorkerStack(
            database_url=database_url,
            redis_url=redis.url,
            folder=folder,
            overrides=dict(STACK_SETTINGS),
        )
        api = ApiServer(
            stack,
            extra_environment={
                "ENROLINK_DB_POOL_SIZE": str(API_POOL_SIZE),
                "ENROLINK_DB_MAX_OVERFLOW": str(API_MAX_OVERFLOW),
            },
        )
        api.start()
        workers = [stack.start_worker() for _ in range(WORKER_PROCESSES)]
        beat = stack.start_beat()
        client = ApiClient(api.graphql_url, api.token)
        try:
            world = build_world(client)
        finally:
            client.close()
        yield Deployment(postgres, redis, stack, api, workers, beat, database_url, world)
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        postgres.remove()


# ---------------------------------------------------------------------------------------------
# Checks


def seconds_until_answering(api: ApiServer, *, within_seconds: float) -> float:
    """Poll a cheap query until it succeeds; return how long that took."""
    started = time.monotonic()
    with httpx.Client(headers=api.headers, timeout=2.0) as http:
        while True:
            try:
                response = http.post(api.graphql_url, json={"query": PING})
                if response.status_code == 200 and not response.json().get("errors"):
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > within_seconds:
                pytest.fail(f"the API did not answer again within {within_seconds} s")
            time.sleep(0.1)


def wait_for_outbox(database_url: str, *, within_seconds: float) -> float:
    """Wait until every outbox row is processed; return the seconds waited."""
    started = time.monotonic()
    while True:
        pending = sql(database_url, "SELECT count(*) FROM outbox WHERE processed_at IS NULL")
        if pending[0][0] == 0:
            return time.monotonic() - started
        if time.monotonic() - started > within_seconds:
            rows = sql(
                database_url,
                "SELECT id, publish_count, published_at, last_error FROM outbox "
                "WHERE processed_at IS NULL ORDER BY id LIMIT 20",
            )
            pytest.fail(f"{pending[0][0]} outbox rows unprocessed after {within_seconds} s: {rows}")
        time.sleep(0.2)


def connections(database_url: str) -> dict[tuple[str, str], int]:
    return {
        (name, state or "none"): count for name, state, count in sql(database_url, _CONNECTIONS)
    }


def wait_for_idle_connections(database_url: str, *, within_seconds: float) -> dict[str, int]:
    """Wait until no enrolink connection is busy or idle in a transaction; return the counts.

    A connection left "idle in transaction" or "active" after the load has stopped belongs
    to a request or task that never finished: a leak.
    """
    started = time.monotonic()
    while True:
        counts = connections(database_url)
        busy = {key: count for key, count in counts.items() if key[1] != "idle"}
        if not busy:
            totals: dict[str, int] = {}
            for (name, _), count in counts.items():
                totals[name] = totals.get(name, 0) + count
            return totals
        if time.monotonic() - started > within_seconds:
            pytest.fail(f"connections still busy {within_seconds} s after the load: {busy}")
        time.sleep(0.2)


def _as_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value)


def stored_results(database_url: str) -> dict[int, StoredResult]:
    rows = sql(
        database_url,
        "SELECT id, enrolment_id, unit_id, outcome, start_date, end_date, recorded_at, "
        "source_enrolled_unit_id FROM enrolled_units",
    )
    return {row[0]: StoredResult(*row) for row in rows}


OUTCOME_CODES = {
    "COMPETENCY_ACHIEVED": 20,
    "COMPETENCY_NOT_ACHIEVED": 30,
    "WITHDRAWN": 40,
    "RPL_GRANTED": 51,
    "CREDIT_TRANSFER": 60,
    "CONTINUING": 70,
    "NOT_YET_STARTED": 85,
}


def missing_acknowledged(database_url: str, log: LoadLog) -> list[Any]:
    """Return the acknowledged writes found neither as a current value nor in history."""
    current = stored_results(database_url)
    history = {
        (row[0], row[1], row[2], row[3], row[4])
        for row in sql(
            database_url,
            "SELECT enrolled_unit_id, outcome, start_date, end_date, recorded_at "
            "FROM enrolled_unit_history",
        )
    }
    missing = []
    for attempt in log.acknowledged:
        assert attempt.result_id is not None and attempt.recorded_at is not None
        result_id = _pk(attempt.result_id)
        value = (
            result_id,
            OUTCOME_CODES[attempt.outcome],
            attempt.start_date,
            attempt.end_date,
            _as_datetime(attempt.recorded_at),
        )
        row = current[result_id]
        now = (row.id, row.outcome, row.start_date, row.end_date, row.recorded_at)
        if value != now and value not in history:
            missing.append(attempt)
    return missing


def unexplained_values(
    database_url: str, log: LoadLog, before: dict[tuple[int, int], Any]
) -> list[Any]:
    """Return the keys whose value is neither the last acknowledged nor a later attempt's.

    ``before`` contains each (enrolment, unit) value from before the load, for keys whose writes
    all failed.
    """
    current = stored_results(database_url)
    by_key = {(row.enrolment_id, row.unit_id): row for row in current.values()}
    wrong = []
    for key, values in log.possible_values().items():
        pair = (_pk(key.enrolment_id), _pk(key.unit_id))
        row = by_key[pair]
        now = (row.outcome, row.start_date, row.end_date)
        allowed = [
            before[pair] if value is None else (OUTCOME_CODES[value[0]], value[1], value[2])
            for value in values
        ]
        if now not in allowed:
            wrong.append((key, now, allowed))
    return wrong


def session_values(database_url: str) -> dict[tuple[int, int], Any]:
    """Return (outcome, start, end) of every enrolled unit, by (enrolment id, unit id)."""
    return {
        (row.enrolment_id, row.unit_id): (row.outcome, row.start_date, row.end_date)
        for row in stored_results(database_url).values()
    }


def roll_up_differences(database_url: str) -> list[Any]:
    """Compare every administrative result with the reference rule over the active links."""
    current = stored_results(database_url)
    links = sql(
        database_url,
        "SELECT l.administrative_enrolment_id, l.session_enrolment_id FROM enrolment_links AS l "
        "JOIN enrolments AS s ON s.id = l.session_enrolment_id "
        "WHERE l.unlinked_at IS NULL AND s.deleted_at IS NULL AND s.status <> 'CANCELLED'",
    )
    administrative_ids = {
        row[0]
        for row in sql(
            database_url,
            "SELECT e.id FROM enrolments AS e JOIN occurrences AS o ON o.id = e.occurrence_id "
            "WHERE o.kind = 'ADMINISTRATIVE'",
        )
    }
    sessions_of: dict[int, set[int]] = {}
    for administrative_id, session_id in links:
        sessions_of.setdefault(administrative_id, set()).add(session_id)
    differences = []
    for row in current.values():
        if row.enrolment_id not in administrative_ids:
            continue
        candidates = [
            other
            for other in current.values()
            if other.enrolment_id in sessions_of.get(row.enrolment_id, set())
            and other.unit_id == row.unit_id
        ]
        expected = roll_up_unit(candidates)
        actual = (row.outcome, row.start_date, row.end_date, row.source_enrolled_unit_id)
        wanted = (expected.outcome, expected.start_date, expected.end_date, expected.source_id)
        if actual != wanted:
            differences.append({"result": row.id, "actual": actual, "expected": wanted})
    return differences


# A history row whose value equals the value that replaced it records a write that changed
# nothing: a roll-up applied twice.
_REPEATED_WRITES = """
WITH ordered AS (
    SELECT h.enrolled_unit_id, h.id,
           (h.outcome, h.start_date, h.end_date, h.source, h.source_enrolled_unit_id,
            h.recorded_at) AS replaced,
           lead((h.outcome, h.start_date, h.end_date, h.source, h.source_enrolled_unit_id,
                 h.recorded_at)) OVER (PARTITION BY h.enrolled_unit_id ORDER BY h.id) AS next
    FROM enrolled_unit_history AS h
)
SELECT o.enrolled_unit_id, o.id
FROM ordered AS o
JOIN enrolled_units AS eu ON eu.id = o.enrolled_unit_id
WHERE o.replaced IS NOT DISTINCT FROM coalesce(
    o.next,
    (eu.outcome, eu.start_date, eu.end_date, eu.source, eu.source_enrolled_unit_id,
     eu.recorded_at)
)
"""


def repeated_writes(database_url: str) -> list[Any]:
    return sql(database_url, _REPEATED_WRITES)


def processed_times(database_url: str, outbox_ids: set[int]) -> list[tuple[int, datetime]]:
    if not outbox_ids:
        return []
    rows = sql(
        database_url,
        "SELECT id, processed_at FROM outbox WHERE id = ANY(%s)",
        (sorted(outbox_ids),),
    )
    return [(row[0], row[1]) for row in rows]


def pending_roll_ups(database_url: str) -> list[Any]:
    return sql(
        database_url,
        "SELECT e.id FROM enrolments AS e JOIN occurrences AS o ON o.id = e.occurrence_id "
        "WHERE o.kind = 'ADMINISTRATIVE' AND e.roll_up_version <> e.roll_up_computed_version",
    )
