"""A bounded schemathesis run over every query and mutation, with a worker rolling up."""

from __future__ import annotations

from tests.reliability.client import ApiClient
from tests.reliability.fuzzing import fuzz, seed_world
from tests.reliability.servers import ApiServer, sql
from tests.workers.conftest import WorkerStack

FAILED_TASKS = "SELECT id, task_name, last_error FROM outbox WHERE last_error IS NOT NULL"

# About ten documents per root field; measured at about 40 s on a 2-core machine.
FUZZ_OPERATIONS = 300
FUZZ_SEED = 20260601


def test_fuzzed_operations_find_no_server_fault(
    worker_stack: WorkerStack, database_url: str
) -> None:
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
        seed_value=FUZZ_SEED,
    )

    failures = "\n\n".join(
        f"{failure.operation} ({failure.mode}):\n{failure.error}" for failure in report.failures
    )
    assert not report.failures, failures
    assert report.operations >= FUZZ_OPERATIONS, report.summary()
    assert sql(database_url, FAILED_TASKS) == []
