"""`enrolink serve` and `enrolink worker` processes started side by side on 127.0.0.1.

Each process runs in a process group of its own (see ``ServiceProcess``), so stopping or killing
it also ends the pool processes a worker forks. Every process gets the same database, Redis and
queue names from one ``WorkerStack`` environment, as replicas of one deployment would.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.workers.conftest import (
    POLL_INTERVAL_SECONDS,
    READY_TIMEOUT_SECONDS,
    ServiceProcess,
    WorkerStack,
    free_port,
)

# Connections each API process may open. The test keeps at most this many requests in flight
# per process, so no request waits for a pooled connection.
API_POOL_SIZE = 4
API_MAX_OVERFLOW = 4
API_CONNECTIONS = API_POOL_SIZE + API_MAX_OVERFLOW
HTTP_TIMEOUT_SECONDS = 30.0
# Bound on the wait for stopped process groups to leave the process table.
EXIT_TIMEOUT_SECONDS = 10.0

_MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class ApiProcess:
    """One `enrolink serve` on 127.0.0.1, and the requests in flight to it."""

    process: ServiceProcess
    port: int
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(API_CONNECTIONS))

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class WorkerProcess:
    """One `enrolink worker`, with a metrics port and samples folder of its own."""

    process: ServiceProcess
    metrics_port: int

    @property
    def name(self) -> str:
        return self.process.name


@dataclass
class Cluster:
    """API and worker processes over the database and Redis of ``stack``."""

    stack: WorkerStack
    apis: list[ApiProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.stack.folder

    def start_api(self) -> ApiProcess:
        number = len(self.apis) + 1
        port = free_port()
        environment = self.stack.environment(
            ENROLINK_DB_POOL_SIZE=str(API_POOL_SIZE),
            ENROLINK_DB_MAX_OVERFLOW=str(API_MAX_OVERFLOW),
        )
        # One process per API, as in the deploy files, so /metrics needs no samples folder. A
        # folder inherited from the caller's environment would mix in other runs' samples.
        environment.pop(_MULTIPROCESS_DIR_VARIABLE, None)
        process = ServiceProcess(
            name=f"api {number}",
            command=[
                sys.executable,
                "-m",
                "enrolink",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            environment=environment,
            log_path=self.folder / f"api-{number}.log",
        )
        self.stack.processes.append(process)
        process.start()
        api = ApiProcess(process=process, port=port)
        self.apis.append(api)
        return api

    def start_worker(self) -> WorkerProcess:
        number = len(self.workers) + 1
        metrics_port = free_port()
        # A worker serves the sum of the samples files in its folder and deletes them at start,
        # so two workers sharing one would report, or wipe, each other's counts.
        samples = self.folder / f"worker-{number}-metrics"
        samples.mkdir()
        process = ServiceProcess(
            name=f"worker {number}",
            command=[sys.executable, "-m", "enrolink", "worker", "--concurrency", "1"],
            environment=self.stack.environment(
                ENROLINK_WORKER_METRICS_PORT=str(metrics_port),
                **{_MULTIPROCESS_DIR_VARIABLE: str(samples)},
            ),
            log_path=self.folder / f"worker-{number}.log",
        )
        self.stack.processes.append(process)
        process.start()
        worker = WorkerProcess(process=process, metrics_port=metrics_port)
        self.workers.append(worker)
        return worker

    async def wait_until_ready(self) -> None:
        """Wait for every API to return 200 from /readyz and every worker to log its start."""
        async with httpx.AsyncClient(timeout=1.0) as http:
            for api in self.apis:
                await _wait_for_readyz(http, api)
        for worker in self.workers:
            worker.process.wait_for_event("worker.ready")
            worker.process.wait_for_event("metrics.server_started")

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after a timeout."""
        self.stack.stop()

    def leftover_processes(self) -> list[str]:
        """Return the processes still alive (zombies aside) in the groups this cluster started."""
        groups = {process.pid for process in self.stack.processes if process.process is not None}
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        while True:
            alive = _live_processes_in_groups(groups)
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(POLL_INTERVAL_SECONDS)


async def _wait_for_readyz(http: httpx.AsyncClient, api: ApiProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if not api.process.running():
            pytest.fail(f"{api.name} exited before it was ready:\n{api.process.log_text()}")
        try:
            if (await http.get(f"{api.url}/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"{api.name} did not return 200 from /readyz in {READY_TIMEOUT_SECONDS} s:\n"
                f"{api.process.log_text()}"
            )
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


def _live_processes_in_groups(groups: set[int]) -> list[str]:
    """Return "pid (command)" of each process in ``groups`` that is not a zombie (Linux /proc)."""
    alive = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue  # The process ended while the folder was listed.
        # The command is in brackets and may contain spaces, so split after its closing one.
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _parent, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) in groups and state != "Z":
            alive.append(f"{stat_path.parent.name} ({command})")
    return alive


def metric_total(text: str, sample_name: str, **labels: str) -> float:
    """Return the sum of the samples named ``sample_name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
