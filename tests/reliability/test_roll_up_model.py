"""Random sequences against the service and a worker, checked against the reference model."""

from __future__ import annotations

from tests.reliability.client import ApiClient
from tests.reliability.machine import Environment, run_sequences
from tests.reliability.servers import ApiServer
from tests.workers.conftest import WorkerStack

# Measured: one to two seconds per sequence on a loaded 2-core machine.
SEQUENCES = 30
STEPS_PER_SEQUENCE = 25


def test_roll_up_matches_reference_model(worker_stack: WorkerStack, database_url: str) -> None:
    worker_stack.start_worker()
    server = ApiServer(worker_stack)
    server.start()
    client = ApiClient(server.graphql_url, server.token)
    environment = Environment(client=client, database_url=database_url)
    try:
        run_sequences(environment, sequences=SEQUENCES, steps=STEPS_PER_SEQUENCE)
    finally:
        print(environment.stats)
        client.close()
        environment.close()

    assert environment.stats.sequences >= SEQUENCES
    assert environment.stats.results_rolled_up > 0
