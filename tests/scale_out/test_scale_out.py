"""Scale-out on one machine: two API processes and two workers share one PostgreSQL and Redis.

The test builds a qualification and a cohort through both APIs, records results through both
at once, and SIGKILLs one worker while it is in the middle of a roll-up. It then checks that
every outbox row was processed and that the killed worker's task was delivered again. The
administrative results must be what the roll-up rule gives for the session results that the
APIs acknowledged, with no repeated history and no lost write.

The processes use a redis-server of the test's own. kombu's Redis transport (5.7) keeps every
consumer's unacknowledged messages in one index per Redis database, and a worker with a short
visibility timeout delivers again any message in that index older than its timeout. With the
5 s timeout here, a shared Redis would see other test runs' tasks delivered early.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import Outcome, TokenRole
from models.tokens import create_token
from schema.ids import split_id
from tests.scale_out.cluster import (
    HTTP_TIMEOUT_SECONDS,
    ApiProcess,
    Cluster,
    WorkerProcess,
    metric_total,
)
from tests.workers.conftest import PrivateRedis, ServiceProcess, WorkerStack, wait_until

pytestmark = pytest.mark.slow

# Short, so the killed worker's task is delivered again within seconds of the kill.
VISIBILITY_TIMEOUT_SECONDS = 5
# Bound on the wait for the outbox to drain after the last write: the visibility timeout, the
# 1 s restore sweep, and the backlog of one worker on a loaded 2-core machine.
SETTLED_WITHIN_SECONDS = 45.0
# Bound on the wait for both workers to block on the test's row locks.
BLOCKED_WITHIN_SECONDS = 20.0
# Bound on the wait for a worker's metrics to catch up with its log.
METRICS_WITHIN_SECONDS = 10.0

CLIENT_COUNT = 16
# Fixed, so the outcomes are the same in every run, though the interleaving of requests is not.
RANDOM_SEED = 2026

YEAR_START = date(2026, 2, 2)
YEAR_END = date(2026, 11, 27)
UNIT_CODES = ("SCL101", "SCL102", "SCL103", "SCL104", "SCL105")


@dataclass(frozen=True)
class SessionPlan:
    code: str
    start: date
    end: date
    unit_indexes: tuple[int, ...]


# Neighbouring sessions share a unit, so an administrative result has two candidates to choose
# from. The last unit is in no session and must stay unrecorded.
SESSION_PLANS = (
    SessionPlan("SCL-S1", date(2026, 3, 2), date(2026, 3, 27), (0, 1)),
    SessionPlan("SCL-S2", date(2026, 4, 6), date(2026, 5, 1), (1, 2)),
    SessionPlan("SCL-S3", date(2026, 5, 4), date(2026, 5, 29), (2, 3)),
)

# Two of each kind, so both halves of the rule (final first, then the newest) decide results.
OUTCOMES = (
    Outcome.COMPETENCY_ACHIEVED,
    Outcome.COMPETENCY_NOT_ACHIEVED,
    Outcome.CREDIT_TRANSFER,
    Outcome.CONTINUING,
    Outcome.NOT_YET_STARTED,
)
# The roll-up rule's non-final outcomes, written out here so the expectation does not come
# from the code under test.
NON_FINAL_OUTCOMES = frozenset({Outcome.CONTINUING, Outcome.NOT_YET_STARTED})

_ERRORS = "errors { code message field }"

CREATE_UNIT = f"""
mutation CreateUnit($input: CreateUnitInput!) {{
  createUnit(input: $input) {{ unit {{ id }} {_ERRORS} }}
}}
"""
CREATE_PROGRAMME = f"""
mutation CreateProgramme($input: CreateProgrammeInput!) {{
  createProgramme(input: $input) {{ programme {{ id }} {_ERRORS} }}
}}
"""
CREATE_OCCURRENCE = f"""
mutation CreateOccurrence($input: CreateOccurrenceInput!) {{
  createOccurrence(input: $input) {{ occurrence {{ id }} {_ERRORS} }}
}}
"""
CREATE_CLIENT = f"""
mutation CreateClient($input: CreateClientInput!) {{
  createClient(input: $input) {{ client {{ id }} {_ERRORS} }}
}}
"""
ENROL_CLIENT = f"""
mutation EnrolClient($input: EnrolClientInput!) {{
  enrolClient(input: $input) {{
    enrolment {{ id }}
    link {{ administrativeEnrolment {{ id }} }}
    {_ERRORS}
  }}
}}
"""
_RECORDED = "id outcome startDate endDate recordedAt"
RECORD_RESULT = f"""
mutation RecordResult($input: RecordResultInput!) {{
  recordResult(input: $input) {{ result {{ {_RECORDED} }} {_ERRORS} }}
}}
"""
RECORD_RESULTS = f"""
mutation RecordResults($input: RecordResultsInput!) {{
  recordResults(input: $input) {{ results {{ {_RECORDED} }} {_ERRORS} }}
}}
"""
CLIENT_RESULTS = """
query ClientResults($id: ID!) {
  client(id: $id) {
    enrolments(first: 10) {
      edges {
        node {
          id
          rollUp { pending }
          results {
            id unit { id } outcome outcomeCode source startDate endDate recordedAt
            sourceResult { id }
          }
        }
      }
    }
  }
}
"""

_LOCK_ADMINISTRATIVE_RESULTS = text(
    """
    SELECT eu.id FROM enrolled_units AS eu
    JOIN enrolments AS e ON e.id = eu.enrolment_id
    JOIN occurrences AS o ON o.id = e.occurrence_id
    WHERE o.kind = 'ADMINISTRATIVE'
    FOR UPDATE OF eu
    """
)
_WORKERS_WAITING_FOR_LOCKS = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database()
      AND application_name = 'enrolink-worker'
      AND wait_event_type = 'Lock'
    """
)
_OUTBOX_STATE = text(
    """
    SELECT count(*) AS total,
           count(*) FILTER (WHERE processed_at IS NULL) AS unprocessed,
           count(*) FILTER (WHERE publish_count = 0) AS never_published,
           count(*) FILTER (WHERE last_error IS NOT NULL) AS with_error
    FROM outbox
    """
)
_HISTORY = text(
    """
    SELECT h.enrolled_unit_id, h.outcome, h.start_date, h.end_date, h.source,
           h.source_enrolled_unit_id, h.recorded_at, h.recorded_by, h.replaced_by,
           o.kind = 'ADMINISTRATIVE' AS administrative
    FROM enrolled_unit_history AS h
    JOIN enrolled_units AS eu ON eu.id = h.enrolled_unit_id
    JOIN enrolments AS e ON e.id = eu.enrolment_id
    JOIN occurrences AS o ON o.id = e.occurrence_id
    ORDER BY h.enrolled_unit_id, h.id
    """
)
_ADMINISTRATIVE_VALUES = text(
    """
    SELECT eu.id, eu.outcome, eu.start_date, eu.end_date, eu.source,
           eu.source_enrolled_unit_id, eu.recorded_at, eu.recorded_by
    FROM enrolled_units AS eu
    JOIN enrolments AS e ON e.id = eu.enrolment_id
    JOIN occurrences AS o ON o.id = e.occurrence_id
    WHERE o.kind = 'ADMINISTRATIVE'
    """
)


# ---------------------------------------------------------------------------------------------
# GraphQL over both API processes


@dataclass
class GraphQLClient:
    """Sends documents to one API process, at most its connection pool's worth at a time."""

    api: ApiProcess
    http: httpx.AsyncClient

    async def query(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with self.api.in_flight:
            response = await self.http.post(
                "/graphql", json={"query": document, "variables": variables}
            )
        assert response.status_code == 200, f"{self.api.name}: {response.text}"
        body: dict[str, Any] = response.json()
        assert "errors" not in body, f"{self.api.name}: {body['errors']}"
        data: dict[str, Any] = body["data"]
        return data

    async def mutate(self, document: str, field: str, values: dict[str, Any]) -> dict[str, Any]:
        """Send a mutation and return its payload. Fail the test unless the write succeeded."""
        payload: dict[str, Any] = (await self.query(document, {"input": values}))[field]
        assert payload["errors"] == [], f"{self.api.name} {field} {values}: {payload['errors']}"
        return payload


@dataclass
class Traffic:
    """Hands out the API processes in turn, so consecutive requests go to different ones."""

    clients: list[GraphQLClient]
    _turns: itertools.count[int] = field(default_factory=itertools.count)

    def next(self) -> GraphQLClient:
        return self.clients[next(self._turns) % len(self.clients)]


# ---------------------------------------------------------------------------------------------
# What was built and recorded


@dataclass(frozen=True)
class OccurrenceInfo:
    id: str
    start: date
    end: date
    unit_ids: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    unit_ids: tuple[str, ...]
    administrative: OccurrenceInfo
    sessions: tuple[OccurrenceInfo, ...]


@dataclass(frozen=True)
class Learner:
    client_id: str
    administrative_enrolment_id: str
    # Session occurrence id to the learner's linked enrolment in it.
    session_enrolment_ids: dict[str, str]


# (session enrolment id, unit id), both global ids
ResultKey = tuple[str, str]


@dataclass(frozen=True)
class RecordedResult:
    """A session result as an acknowledged mutation returned it."""

    result_id: str
    outcome: Outcome
    start_date: str
    end_date: str
    recorded_at: datetime

    @property
    def row_id(self) -> int:
        return primary_key(self.result_id)


@dataclass
class Ledger:
    """Every acknowledged write per session result, oldest first.

    The test never has two writes to one session result in flight at once, so the order of
    acknowledgement is the order of commit.
    """

    writes: dict[ResultKey, list[RecordedResult]] = field(default_factory=dict)

    def add(self, key: ResultKey, recorded: RecordedResult) -> None:
        self.writes.setdefault(key, []).append(recorded)

    def current(self, key: ResultKey) -> RecordedResult | None:
        writes = self.writes.get(key)
        return writes[-1] if writes else None


@dataclass(frozen=True)
class ExpectedResult:
    outcome_code: int | None
    source_result_id: str | None
    recorded_at: datetime | None
    start_date: str | None
    end_date: str | None


def primary_key(global_id: str) -> int:
    parts = split_id(global_id)
    assert parts is not None, f"{global_id!r} is not a global id"
    return parts[1]


def recorded_from(payload: dict[str, Any]) -> RecordedResult:
    return RecordedResult(
        result_id=payload["id"],
        outcome=Outcome[payload["outcome"]],
        start_date=payload["startDate"],
        end_date=payload["endDate"],
        recorded_at=datetime.fromisoformat(payload["recordedAt"]),
    )


def expected_administrative_result(
    ledger: Ledger, learner: Learner, catalogue: Catalogue, unit_id: str
) -> ExpectedResult:
    """Apply the roll-up rule to the learner's acknowledged session results for one unit.

    A final outcome beats a non-final one, then the most recently recorded wins, then the
    higher id. The start is the earliest among the candidates unless it falls after the chosen
    end date.
    """
    candidates = []
    for session in catalogue.sessions:
        recorded = ledger.current((learner.session_enrolment_ids[session.id], unit_id))
        if recorded is not None:
            candidates.append(recorded)
    if not candidates:
        return ExpectedResult(None, None, None, None, None)

    chosen = max(
        candidates,
        key=lambda result: (
            result.outcome not in NON_FINAL_OUTCOMES,
            result.recorded_at,
            result.row_id,
        ),
    )
    earliest_start = min(date.fromisoformat(result.start_date) for result in candidates)
    start = earliest_start if earliest_start <= date.fromisoformat(chosen.end_date) else None
    return ExpectedResult(
        outcome_code=chosen.outcome.value,
        source_result_id=chosen.result_id,
        recorded_at=chosen.recorded_at,
        start_date=start.isoformat() if start else None,
        end_date=chosen.end_date,
    )


# ---------------------------------------------------------------------------------------------
# The workload


async def create_catalogue(traffic: Traffic) -> Catalogue:
    units = await asyncio.gather(
        *(
            traffic.next().mutate(
                CREATE_UNIT, "createUnit", {"code": code, "title": f"Scale-out unit {code}"}
            )
            for code in UNIT_CODES
        )
    )
    unit_ids = tuple(payload["unit"]["id"] for payload in units)
    programme = await traffic.next().mutate(
        CREATE_PROGRAMME,
        "createProgramme",
        {"code": "SCL50001", "name": "Diploma of Scaling Out", "unitIds": list(unit_ids)},
    )
    programme_id = programme["programme"]["id"]

    plans = [("SCL-ADM", "ADMINISTRATIVE", YEAR_START, YEAR_END, unit_ids)] + [
        (
            plan.code,
            "SESSION",
            plan.start,
            plan.end,
            tuple(unit_ids[index] for index in plan.unit_indexes),
        )
        for plan in SESSION_PLANS
    ]
    created = await asyncio.gather(
        *(
            traffic.next().mutate(
                CREATE_OCCURRENCE,
                "createOccurrence",
                {
                    "programmeId": programme_id,
                    "code": code,
                    "name": f"Occurrence {code}",
                    "kind": kind,
                    "startDate": start.isoformat(),
                    "endDate": end.isoformat(),
                    "unitIds": list(units_of),
                },
            )
            for code, kind, start, end, units_of in plans
        )
    )
    occurrences = [
        OccurrenceInfo(payload["occurrence"]["id"], start, end, units_of)
        for payload, (_, _, start, end, units_of) in zip(created, plans, strict=True)
    ]
    return Catalogue(unit_ids, occurrences[0], tuple(occurrences[1:]))


async def enrol_learner(traffic: Traffic, catalogue: Catalogue, number: int) -> Learner:
    """Create a client, enrol them administratively, then in each session with link: true."""
    client = await traffic.next().mutate(
        CREATE_CLIENT,
        "createClient",
        {"clientCode": f"SCL{number:04d}", "givenName": "Sam", "surname": f"Scale{number}"},
    )
    client_id = client["client"]["id"]
    administrative = await traffic.next().mutate(
        ENROL_CLIENT,
        "enrolClient",
        {"clientId": client_id, "occurrenceId": catalogue.administrative.id},
    )
    administrative_id = administrative["enrolment"]["id"]

    session_enrolment_ids = {}
    for session in catalogue.sessions:
        enrolled = await traffic.next().mutate(
            ENROL_CLIENT,
            "enrolClient",
            {"clientId": client_id, "occurrenceId": session.id, "link": True},
        )
        assert enrolled["link"]["administrativeEnrolment"]["id"] == administrative_id
        session_enrolment_ids[session.id] = enrolled["enrolment"]["id"]
    return Learner(client_id, administrative_id, session_enrolment_ids)


def all_result_keys(catalogue: Catalogue, learners: Sequence[Learner]) -> list[ResultKey]:
    return [
        (learner.session_enrolment_ids[session.id], unit_id)
        for learner in learners
        for session in catalogue.sessions
        for unit_id in session.unit_ids
    ]


def new_outcome(rng: random.Random, ledger: Ledger, key: ResultKey) -> Outcome:
    """Pick an outcome other than the current one, so every write changes the result."""
    current = ledger.current(key)
    return rng.choice(
        [outcome for outcome in OUTCOMES if current is None or outcome is not current.outcome]
    )


async def record_one_by_one(
    traffic: Traffic, ledger: Ledger, rng: random.Random, keys: Sequence[ResultKey]
) -> None:
    """Send one recordResult per key, all at once, spread over the API processes."""
    outcomes = [new_outcome(rng, ledger, key) for key in keys]

    async def record(key: ResultKey, outcome: Outcome) -> None:
        enrolment_id, unit_id = key
        payload = await traffic.next().mutate(
            RECORD_RESULT,
            "recordResult",
            {"enrolmentId": enrolment_id, "unitId": unit_id, "outcome": outcome.name},
        )
        ledger.add(key, recorded_from(payload["result"]))

    await asyncio.gather(
        *(record(key, outcome) for key, outcome in zip(keys, outcomes, strict=True))
    )


async def record_in_batches(
    traffic: Traffic,
    ledger: Ledger,
    rng: random.Random,
    catalogue: Catalogue,
    learners: Sequence[Learner],
) -> None:
    """Send one recordResults per session and unit, for half the cohort, all at once."""

    async def record(session: OccurrenceInfo, unit_id: str, group: Sequence[Learner]) -> None:
        keys = [(learner.session_enrolment_ids[session.id], unit_id) for learner in group]
        outcomes = [new_outcome(rng, ledger, key) for key in keys]
        payload = await traffic.next().mutate(
            RECORD_RESULTS,
            "recordResults",
            {
                "occurrenceId": session.id,
                "unitId": unit_id,
                "entries": [
                    {"enrolmentId": enrolment_id, "outcome": outcome.name}
                    for (enrolment_id, _), outcome in zip(keys, outcomes, strict=True)
                ],
            },
        )
        for key, result in zip(keys, payload["results"], strict=True):
            ledger.add(key, recorded_from(result))

    await asyncio.gather(
        *(
            record(session, unit_id, rng.sample(list(learners), len(learners) // 2))
            for session in catalogue.sessions
            for unit_id in session.unit_ids
        )
    )


# ---------------------------------------------------------------------------------------------
# Workers and their logs


async def workers_waiting_for_locks(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        waiting: int = (await session.execute(_WORKERS_WAITING_FOR_LOCKS)).scalar_one()
    return waiting


def unfinished_tasks(process: ServiceProcess) -> list[dict[str, Any]]:
    """Return the task.started lines of attempts that logged no end (finished, retried, failed)."""
    ended = Counter(
        event["task_id"]
        for name in ("task.finished", "task.retried", "task.failed")
        for event in process.events(name)
    )
    unfinished = []
    for event in process.events("task.started"):
        if ended[event["task_id"]] > 0:
            ended[event["task_id"]] -= 1
        else:
            unfinished.append(event)
    return unfinished


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
        response = await http.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.text


async def worker_counts_match_log(worker: WorkerProcess) -> bool:
    """Tell whether the worker's roll-up success counter equals its task.finished lines."""
    served = await scrape(f"http://127.0.0.1:{worker.metrics_port}/metrics")
    succeeded = metric_total(served, "enrolink_tasks_succeeded_total", task="enrolink.roll_up")
    logged = [
        event
        for event in worker.process.events("task.finished")
        if event.get("task_name") == "enrolink.roll_up"
    ]
    return len(logged) > 0 and succeeded == len(logged)


# ---------------------------------------------------------------------------------------------
# The test


async def test_scale_out_survives_killed_worker(
    database_url: str,
    private_redis: PrivateRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    stack = WorkerStack(
        database_url=database_url,
        redis_url=private_redis.url,
        folder=tmp_path,
        overrides={"ENROLINK_TASK_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS)},
    )
    cluster = Cluster(stack)
    try:
        for _ in range(2):
            cluster.start_api()
        for _ in range(2):
            cluster.start_worker()
        await cluster.wait_until_ready()
        killed, survivor = cluster.workers

        async with sessionmaker() as session:
            issued = await create_token(session, role=TokenRole.STAFF, name="scale-out test")
            await session.commit()
        headers = {"Authorization": f"Bearer {issued.secret}"}

        async with (
            httpx.AsyncClient(
                base_url=cluster.apis[0].url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS
            ) as first_http,
            httpx.AsyncClient(
                base_url=cluster.apis[1].url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS
            ) as second_http,
        ):
            traffic = Traffic(
                [
                    GraphQLClient(cluster.apis[0], first_http),
                    GraphQLClient(cluster.apis[1], second_http),
                ]
            )
            await run_workload_and_check(traffic, cluster, killed, survivor, sessionmaker)
    finally:
        cluster.stop()

    assert cluster.leftover_processes() == []


async def run_workload_and_check(
    traffic: Traffic,
    cluster: Cluster,
    killed: WorkerProcess,
    survivor: WorkerProcess,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(RANDOM_SEED)
    ledger = Ledger()

    # given: a qualification and a linked cohort, built through both APIs at once
    catalogue = await create_catalogue(traffic)
    learners = list(
        await asyncio.gather(
            *(enrol_learner(traffic, catalogue, number) for number in range(1, CLIENT_COUNT + 1))
        )
    )
    keys = all_result_keys(catalogue, learners)

    # when: every session result is recorded, through both APIs at once
    await record_one_by_one(traffic, ledger, rng, keys)

    # and: half of them again, while one worker is killed in the middle of a roll-up
    orphan = await record_while_killing(
        traffic, ledger, rng, rng.sample(keys, len(keys) // 2), killed, sessionmaker
    )

    # and: results recorded in batches while the killed worker's task waits to be redelivered
    await record_in_batches(traffic, ledger, rng, catalogue, learners)

    # then: every outbox row is processed, the orphaned one by the surviving worker
    async def outbox_drained() -> bool:
        async with sessionmaker() as session:
            return int((await session.execute(_OUTBOX_STATE)).one().unprocessed) == 0

    await wait_until(
        outbox_drained, within_seconds=SETTLED_WITHIN_SECONDS, what="every outbox row processed"
    )
    async with sessionmaker() as session:
        outbox = (await session.execute(_OUTBOX_STATE)).one()
    assert outbox.total > len(keys)
    assert outbox.never_published == 0
    assert outbox.with_error == 0
    check_worker_logs(killed, survivor, orphan)

    # and: no roll-up is pending, results follow the rule, and the history is complete
    enrolments = await read_when_rolled_up(traffic, learners)
    check_session_results(enrolments, ledger)
    check_administrative_results(enrolments, ledger, learners, catalogue)
    await check_history(sessionmaker, ledger)
    await check_metrics(cluster, survivor)


async def record_while_killing(
    traffic: Traffic,
    ledger: Ledger,
    rng: random.Random,
    keys: Sequence[ResultKey],
    worker: WorkerProcess,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    """Record ``keys`` again and SIGKILL ``worker`` in the middle of a roll-up.

    The test locks every administrative result, so each worker stops inside a roll-up's UPDATE
    until both are waiting. The kill then finds the worker with an unacknowledged task, whose
    task.started log line is returned.
    """
    recording = asyncio.create_task(record_one_by_one(traffic, ledger, rng, keys))
    try:
        async with sessionmaker() as holder, holder.begin():
            await holder.execute(_LOCK_ADMINISTRATIVE_RESULTS)

            async def both_workers_blocked() -> bool:
                return await workers_waiting_for_locks(sessionmaker) == 2

            await wait_until(
                both_workers_blocked,
                within_seconds=BLOCKED_WITHIN_SECONDS,
                what="both workers to wait for the administrative results' row locks",
            )
            worker.process.kill()
        await recording
    except BaseException:
        recording.cancel()
        raise

    in_hand = unfinished_tasks(worker.process)
    assert len(in_hand) == 1, f"expected one task in hand at the kill: {in_hand}"
    return in_hand[0]


def check_worker_logs(
    killed: WorkerProcess, survivor: WorkerProcess, orphan: dict[str, Any]
) -> None:
    """The survivor ran the killed worker's task, failed none, and no roll-up deadlocked."""
    redelivered = [
        event
        for event in survivor.process.events("task.finished")
        if event["task_id"] == orphan["task_id"]
    ]
    assert redelivered, (
        f"task {orphan['task_id']} was not run again:\n{survivor.process.log_text()}"
    )
    assert survivor.process.events("task.failed") == []
    # Every multi-row lock is taken in id order, so a deadlock means one is not. A retry after a
    # lock timeout is allowed, because the test's own row locks may outlast the task lock timeout.
    deadlocks = [
        event
        for worker in (killed, survivor)
        for event in worker.process.events("task.retried")
        if "deadlock detected" in event.get("error", "")
    ]
    assert deadlocks == []


async def read_when_rolled_up(
    traffic: Traffic, learners: Sequence[Learner]
) -> dict[str, dict[str, Any]]:
    """Read the cohort's enrolments until no administrative roll-up is pending."""
    enrolments: dict[str, dict[str, Any]] = {}

    async def nothing_pending() -> bool:
        enrolments.update(await read_enrolments(traffic, learners))
        return all(
            not enrolments[learner.administrative_enrolment_id]["rollUp"]["pending"]
            for learner in learners
        )

    await wait_until(
        nothing_pending, within_seconds=SETTLED_WITHIN_SECONDS, what="no roll-up pending"
    )
    return enrolments


async def read_enrolments(
    traffic: Traffic, learners: Sequence[Learner]
) -> dict[str, dict[str, Any]]:
    """Return every enrolment of the cohort by id, each client read through the next API."""
    answers = await asyncio.gather(
        *(traffic.next().query(CLIENT_RESULTS, {"id": learner.client_id}) for learner in learners)
    )
    return {
        edge["node"]["id"]: edge["node"]
        for answer in answers
        for edge in answer["client"]["enrolments"]["edges"]
    }


def results_by_unit(enrolment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["unit"]["id"]: result for result in enrolment["results"]}


def check_session_results(enrolments: dict[str, dict[str, Any]], ledger: Ledger) -> None:
    """Each session result has the value of the last acknowledged write to it."""
    for (enrolment_id, unit_id), writes in ledger.writes.items():
        result = results_by_unit(enrolments[enrolment_id])[unit_id]
        last = writes[-1]
        assert result["id"] == last.result_id
        assert result["outcome"] == last.outcome.name, (enrolment_id, unit_id)
        assert datetime.fromisoformat(result["recordedAt"]) == last.recorded_at


def check_administrative_results(
    enrolments: dict[str, dict[str, Any]],
    ledger: Ledger,
    learners: Sequence[Learner],
    catalogue: Catalogue,
) -> None:
    """Each administrative result is what the roll-up rule gives for the session results."""
    for learner in learners:
        results = results_by_unit(enrolments[learner.administrative_enrolment_id])
        assert sorted(results) == sorted(catalogue.unit_ids)
        for unit_id, result in results.items():
            expected = expected_administrative_result(ledger, learner, catalogue, unit_id)
            where = (learner.administrative_enrolment_id, unit_id)
            source = result["sourceResult"]
            recorded_at = result["recordedAt"]
            assert result["outcomeCode"] == expected.outcome_code, where
            assert (source["id"] if source else None) == expected.source_result_id, where
            assert (
                datetime.fromisoformat(recorded_at) if recorded_at else None
            ) == expected.recorded_at, where
            assert result["startDate"] == expected.start_date, where
            assert result["endDate"] == expected.end_date, where
            if expected.outcome_code is not None:
                assert result["source"] == "ROLLED_UP", where


async def check_history(sessionmaker: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
    """Session history keeps every overwritten write. Administrative history repeats no value."""
    async with sessionmaker() as session:
        history = (await session.execute(_HISTORY)).all()
        current = {row.id: tuple(row[1:]) for row in await session.execute(_ADMINISTRATIVE_VALUES)}

    session_history: dict[int, list[Any]] = {}
    administrative_history: dict[int, list[tuple[Any, ...]]] = {}
    for row in history:
        if row.administrative:
            assert row.replaced_by == "roll-up", row
            value = (
                row.outcome,
                row.start_date,
                row.end_date,
                row.source,
                row.source_enrolled_unit_id,
                row.recorded_at,
                row.recorded_by,
            )
            administrative_history.setdefault(row.enrolled_unit_id, []).append(value)
        else:
            session_history.setdefault(row.enrolled_unit_id, []).append(row)

    # Nothing lost: every write but the last is in the result's history, in order.
    for key, writes in ledger.writes.items():
        kept = session_history.get(writes[0].row_id, [])
        assert [(row.outcome, row.recorded_at) for row in kept] == [
            (write.outcome.value, write.recorded_at) for write in writes[:-1]
        ], key

    # No duplicates: a roll-up that finds nothing to change writes no history, so neither two
    # consecutive rows nor the newest row and the current value may be equal.
    assert administrative_history, "the roll-ups wrote no administrative history at all"
    for enrolled_unit_id, values in administrative_history.items():
        for earlier, later in itertools.pairwise([*values, current[enrolled_unit_id]]):
            assert earlier != later, (enrolled_unit_id, values)


async def check_metrics(cluster: Cluster, survivor: WorkerProcess) -> None:
    """Both APIs report an empty outbox; the survivor's metrics count what its log shows."""
    for api in cluster.apis:
        served = await scrape(f"{api.url}/metrics")
        assert metric_total(served, "enrolink_outbox_query_success") == 1, api.name
        assert metric_total(served, "enrolink_outbox_waiting_rows") == 0, api.name

    async def counts_match() -> bool:
        return await worker_counts_match_log(survivor)

    await wait_until(
        counts_match,
        within_seconds=METRICS_WITHIN_SECONDS,
        what=f"{survivor.name}'s roll-up counter to equal its task.finished lines",
    )
