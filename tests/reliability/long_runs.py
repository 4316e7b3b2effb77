"""Long runs of the reliability checks; pytest runs them only when this file is named.

    .venv/bin/python -m pytest tests/reliability/long_runs.py -s --basetemp=<folder>

ENROLINK_FUZZ_OPERATIONS (default 5000) and ENROLINK_MODEL_SEQUENCES (default 1000) set the
sizes; ENROLINK_RELIABILITY_SEED changes the seed.
"""

from __future__ import annotations

import os
import time

from tests.reliability.client import ApiClient
from tests.reliability.fuzzing import fuzz, seed_world
from tests.reliability.machine import Environment, run_sequences
from tests.reliability.servers import ApiServer, sql
from tests.workers.conftest import WorkerStack

FAILED_TASKS = "SELECT id, task_name, last_error FROM outbox WHERE last_error IS NOT NULL"

FUZZ_OPERATIONS = int(os.environ.get("ENROLINK_FUZZ_OPERATIONS", "5000"))
MODEL_SEQUENCES = int(os.environ.get("ENROLINK_MODEL_SEQUENCES", "1000"))
STEPS_PER_SEQUENCE = 25
SEED = int(os.environ.get("ENROLINK_RELIABILITY_SEED", "20260601"))


def test_fuzz_long_run(worker_stack: WorkerStack, database_url: str) -> None:
    worker_stack.start_worker()
    server = ApiServer(worker_stack)
    server.start()
    client = ApiClient(server.graphql_url, server.token)
    try:
        seed_world(client)
    finally:
        client.close()

    report = fuzz(
        graphql_url=server.graphql_url,
        token=server.token,
        database_url=database_url,
        operations=FUZZ_OPERATIONS,
        seed_value=SEED,
    )

    print(f"fuzz long run: {report.summary()}")
    failures = "\n\n".join(
        f"{failure.operation} ({failure.mode}):\n{failure.error}" for failure in report.failures
    )
    assert not report.failures, failures
    assert sql(database_url, FAILED_TASKS) == []


def test_model_long_run(worker_stack: WorkerStack, database_url: str) -> None:
    worker_stack.start_worker()
    server = ApiServer(worker_stack)
    server.start()
    client = ApiClient(server.graphql_url, server.token)
    environment = Environment(client=client, database_url=database_url)
    started = time.monotonic()
    try:
        run_sequences(
            environment, sequences=MODEL_SEQUENCES, steps=STEPS_PER_SEQUENCE, seed_value=SEED
        )
    finally:
        print(f"model long run: {time.monotonic() - started:.0f} s, {environment.stats}")
        client.close()
        environment.close()
