"""Faults under a steady load: PostgreSQL and Redis restarts, a killed worker, aborted requests.

Each test runs the load from loopback threads, injects one fault, and then requires that the
API responds again within seconds without being restarted, that no database connection is
left busy, that every acknowledged write is in the database, that every administrative
result equals the roll-up rule with no write applied twice, and that the logs name the fault
and the retries it caused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.reliability.client import RECORD_RESULT
from tests.reliability.faults import (
    API_POOL_SIZE,
    WORKER_POOL_SIZE,
    Deployment,
    deployment,
    missing_acknowledged,
    pending_roll_ups,
    processed_times,
    repeated_writes,
    roll_up_differences,
    seconds_until_answering,
    session_values,
    unexplained_values,
    wait_for_idle_connections,
    wait_for_outbox,
)
from tests.reliability.load import NESTED_QUERY, LoadLog, LoadThreads, abort_requests

__all__ = ["deployment"]

# Load before and after each fault, in seconds: long enough for a few hundred requests.
WARM_UP_SECONDS = 3.0
AFTER_FAULT_SECONDS = 3.0
# Bounds on recovery, with room for a loaded machine. PostgreSQL restarts in about a second and
# Redis at once. A worker waits at most 4 s between retries (the backoff maximum set here), and
# a killed worker's task comes back after the 10 s visibility timeout or the relay's 5 s.
ANSWERS_WITHIN_SECONDS = 15.0
OUTBOX_DRAINED_WITHIN_SECONDS = 60.0
IDLE_WITHIN_SECONDS = 15.0
ABORTED_REQUESTS = 200
POSTGRES_DOWN_SECONDS = 2.5


@dataclass
class FaultRun:
    log: LoadLog
    before: dict[tuple[int, int], Any]
    recovered_seconds: float
    drained_seconds: float


def run_with_fault(deployment: Deployment, fault: Callable[[], None], seed: int) -> FaultRun:
    api_pid = deployment.api.process.pid if deployment.api.process else None
    before = session_values(deployment.database_url)
    load = LoadThreads(
        deployment.api.graphql_url,
        deployment.api.token,
        deployment.world.writer_keys,
        deployment.world.read_ids,
        seed=seed,
    )
    load.start()
    try:
        time.sleep(WARM_UP_SECONDS)
        fault()
        recovered = seconds_until_answering(deployment.api, within_seconds=ANSWERS_WITHIN_SECONDS)
        time.sleep(AFTER_FAULT_SECONDS)
    finally:
        log = load.stop()

    assert deployment.api.process is not None
    assert deployment.api.process.running(), "the API process exited"
    assert deployment.api.process.pid == api_pid, "the API process was restarted"
    drained = wait_for_outbox(deployment.database_url, within_seconds=OUTBOX_DRAINED_WITHIN_SECONDS)
    print(
        f"{len(log.attempts)} writes ({len(log.acknowledged)} acknowledged, failures "
        f"{log.failures_by_kind}), {log.reads} reads ({log.read_failures} failed); answering "
        f"again after {recovered:.1f} s; outbox drained {drained:.1f} s after the load"
    )
    return FaultRun(log, before, recovered, drained)


def assert_consistent(deployment: Deployment, run: FaultRun) -> None:
    database_url = deployment.database_url
    assert run.log.acknowledged, "the load got no write acknowledged"
    assert missing_acknowledged(database_url, run.log) == []
    assert unexplained_values(database_url, run.log, run.before) == []
    assert pending_roll_ups(database_url) == []
    assert roll_up_differences(database_url) == []
    assert repeated_writes(database_url) == []

    # Once idle, a pool closes its overflow connections and keeps at most its pool size.
    totals = wait_for_idle_connections(database_url, within_seconds=IDLE_WITHIN_SECONDS)
    print(f"connections once idle: {totals}")
    assert totals.get("enrolink-api", 0) <= API_POOL_SIZE, totals
    workers = sum(process.running() for process in deployment.workers)
    assert totals.get("enrolink-worker", 0) <= workers * WORKER_POOL_SIZE, totals


def test_postgres_restart_under_load(deployment: Deployment) -> None:
    def restart_postgres() -> None:
        # Down for longer than the relay's 1 s interval, so a task meets the outage too.
        deployment.postgres.restart(down_seconds=POSTGRES_DOWN_SECONDS)

    run = run_with_fault(deployment, restart_postgres, seed=1)

    assert_consistent(deployment, run)
    assert run.log.failures_by_kind, "no request failed while PostgreSQL was down"
    unavailable = deployment.events("auth.database_unavailable")
    masked = deployment.events("graphql.unexpected_error")
    assert unavailable or masked, "the API logged nothing about the lost database"
    assert all(event.get("request_id") for event in [*unavailable, *masked])
    retried = deployment.events("task.retried")
    assert retried, "no task was retried while PostgreSQL was down"
    assert all(event.get("error") and event.get("task_id") for event in retried)


def test_redis_restart_under_load(deployment: Deployment) -> None:
    def restart_redis() -> None:
        deployment.redis.stop()
        time.sleep(1.0)
        deployment.redis.start()

    run = run_with_fault(deployment, restart_redis, seed=2)

    assert_consistent(deployment, run)
    assert deployment.events("outbox.publish_failed"), "no publish failed while Redis was down"
    assert deployment.events("outbox.relayed"), "the relay sent nothing after Redis came back"
    for worker in deployment.workers:
        assert "Connection to broker lost" in worker.log_text(), worker.name


def test_killed_worker_under_load(deployment: Deployment) -> None:
    victim = deployment.workers[0]
    killed_at: list[datetime] = []

    def kill_worker() -> None:
        victim.kill()
        killed_at.append(datetime.now(UTC))
        deployment.workers.remove(victim)

    run = run_with_fault(deployment, kill_worker, seed=3)
    deployment.start_worker()

    assert not victim.running()
    assert_consistent(deployment, run)
    # A task the worker had started but not finished, and whose work had not committed, ran
    # again in another worker: delivered again by Redis or sent again by the outbox relay.
    finished = {event.get("task_id") for event in victim.events("task.finished")}
    cut_short = {
        event["outbox_id"]
        for event in victim.events("task.started")
        if event.get("task_id") not in finished and event.get("outbox_id") is not None
    }
    processed_later = {
        outbox_id
        for outbox_id, processed_at in processed_times(deployment.database_url, cut_short)
        if processed_at > killed_at[0]
    }
    rerun = {
        event.get("outbox_id")
        for worker in deployment.workers
        for event in worker.events("task.started")
    }
    assert processed_later <= rerun, processed_later - rerun
    print(f"tasks cut short by the kill: {sorted(cut_short)}, run again: {sorted(processed_later)}")


def test_aborted_requests_under_load(deployment: Deployment) -> None:
    keys = deployment.world.abort_keys
    bodies = []
    for number in range(ABORTED_REQUESTS):
        key = keys[number % len(keys)]
        if number % 2:
            bodies.append({"query": NESTED_QUERY, "variables": {"id": key.enrolment_id}})
        else:
            variables = {
                "input": {
                    "enrolmentId": key.enrolment_id,
                    "unitId": key.unit_id,
                    "outcome": "CONTINUING" if number % 4 else "COMPETENCY_ACHIEVED",
                }
            }
            bodies.append({"query": RECORD_RESULT, "variables": variables})
    reports = []

    def abort_burst() -> None:
        reports.append(
            abort_requests(
                deployment.api.port,
                deployment.api.token,
                bodies,
                request_id_prefix="aborted",
                seed=4,
            )
        )

    run = run_with_fault(deployment, abort_burst, seed=4)

    (report,) = reports
    print(f"aborted {report.sent} requests, {report.unanswered_at_abort} still unanswered")
    assert report.sent == ABORTED_REQUESTS
    assert report.unanswered_at_abort > 0
    assert_consistent(deployment, run)
    # Every aborted request was seen through to its end by the server and logged under its id.
    finished = {
        event["request_id"]
        for event in deployment.events("http.request_finished")
        if str(event.get("request_id", "")).startswith("aborted-")
    }
    assert len(finished) == ABORTED_REQUESTS
