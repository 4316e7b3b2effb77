"""The nested-read ladder on bench-500, from the physical limit (L1) to Enrolink over HTTP (L5).

Every level runs the same document for the one administrative occurrence of bench-500,
and the bench checks that all of them return the same data before it times anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.database import bench_database, sqlalchemy_url
from bench.datasets import DATASETS, load
from bench.load import LoadResult, Phase, run_load
from bench.logs import run_log
from bench.servers import ServerProcess
from schema.ids import encode_id

LADDER_DOCUMENT = """
query Ladder($id: ID!, $first: Int) {
  occurrence(id: $id) {
    enrolments(first: $first) {
      edges { node {
        id
        client { clientCode surname }
        results { unit { code } outcome }
        linkedEnrolments {
          id
          occurrence { code }
          results { unit { code } outcome sourceResult { id } }
        }
      } }
    }
  }
}
"""

# bench-500's administrative occurrence; the dataset gives it id 1.
OCCURRENCE_ID = 1
PAGE = 500
SMALL_PAGE = 50

# Request counts per level, sized so the whole ladder runs in about five minutes on 2 cores:
# a level that takes seconds per request gets a few requests, one of milliseconds gets many.
FAST = [Phase(1, 40, 30.0), Phase(8, 80, 30.0)]
SLOW = [Phase(1, 5, 60.0), Phase(8, 16, 90.0)]
SLOWEST = [Phase(1, 3, 60.0), Phase(8, 8, 120.0)]


@dataclass
class Level:
    name: str
    description: str
    phases: list[LoadResult]
    cpu_per_request: float
    statements_per_request: float
    statements_at_50: float
    statements_at_500: float
    peak_rss: int
    body: bytes

    def phase(self, concurrency: int) -> LoadResult:
        return next(result for result in self.phases if result.concurrency == concurrency)


def _variables(first: int) -> dict[str, Any]:
    return {"id": encode_id("Occurrence", OCCURRENCE_ID), "first": first}


async def _measure_server(
    server: ServerProcess, name: str, description: str, phases: list[Phase], *, graphql: bool
) -> Level:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:

        async def send(first: int = PAGE) -> bytes:
            if graphql:
                response = await client.post(
                    "/graphql",
                    json={"query": LADDER_DOCUMENT, "variables": _variables(first)},
                    headers=server.headers,
                )
            else:
                response = await client.get("/ladder", params={"first": first})
            response.raise_for_status()
            return response.content

        async def request() -> None:
            await send()

        body = await send()
        before = server.statements()
        await send(SMALL_PAGE)
        at_50 = server.statements() - before
        before = server.statements()
        await send()
        at_500 = server.statements() - before

        cpu_before = server.cpu_seconds()
        statements_before = server.statements()
        results = [await run_load(request, phase) for phase in phases]
        requests = sum(result.requests for result in results)
        return Level(
            name=name,
            description=description,
            phases=results,
            cpu_per_request=(server.cpu_seconds() - cpu_before) / requests,
            statements_per_request=(server.statements() - statements_before) / requests,
            statements_at_50=at_50,
            statements_at_500=at_500,
            peak_rss=server.peak_rss(),
            body=body,
        )


def _measure_in_process(
    name: str, description: str, environment: dict[str, str], compiled: bool, phases: list[Phase]
) -> Level:
    specification = json.dumps(
        {
            "document": LADDER_DOCUMENT,
            "variables": _variables(PAGE),
            "compiled": compiled,
            "phases": [
                [phase.concurrency, phase.requests, phase.budget_seconds] for phase in phases
            ],
        }
    )
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "inprocess"],
        input=specification.encode(),
        env={**os.environ, **environment},
        capture_output=True,
        timeout=900,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{name} ({description}) failed:\n{completed.stderr.decode()}")
    measured = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return Level(
        name=name,
        description=description,
        phases=[
            LoadResult(phase["concurrency"], phase["latencies"], phase["wall"])
            for phase in measured["phases"]
        ],
        cpu_per_request=measured["cpu_per_request"],
        statements_per_request=measured["statements_per_request"],
        statements_at_50=measured["statements_at_50"],
        statements_at_500=measured["statements_at_500"],
        peak_rss=measured["peak_rss"],
        body=measured["body"].encode(),
    )


async def _staff_token(url: str) -> str:
    from models.db import create_engine, create_sessionmaker
    from models.enums import TokenRole
    from models.tokens import create_token

    engine = create_engine(sqlalchemy_url(url), pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            issued = await create_token(session, role=TokenRole.STAFF, name="bench")
            await session.commit()
    finally:
        await engine.dispose()
    return issued.secret


def _enrolink_environment(url: str, compiled: bool) -> dict[str, str]:
    return {
        "ENROLINK_DATABASE_URL": url,
        "ENROLINK_REDIS_URL": os.environ.get("ENROLINK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "ENROLINK_ENVIRONMENT": "production",
        "ENROLINK_LOG_LEVEL": "WARNING",
        "ENROLINK_COMPILED_READS": "true" if compiled else "false",
        # The ladder's estimated cost at 500 enrolments is about 290,000, over the default
        # maximum of 200,000, so the bench raises the maximum rather than change the document.
        "ENROLINK_MAX_QUERY_COST": "1000000",
    }


def enrolink_server(
    url: str, environment: dict[str, str], log_path: Path, headers: dict[str, str]
) -> ServerProcess:
    """Return a bench server of Enrolink for bench-500's occurrence, to use with ``with``."""
    return ServerProcess(
        "enrolink",
        url,
        occurrence_id=OCCURRENCE_ID,
        environment=environment,
        log_path=log_path,
        headers=headers,
    )


async def run_ladder(server_url: str, *, quick: bool = False) -> list[Level]:
    """Load bench-500 into a database of its own, measure every level, drop the database."""
    fast = (
        [Phase(p.concurrency, max(p.concurrency, p.requests // 4), p.budget_seconds) for p in FAST]
        if quick
        else FAST
    )
    slow = [Phase(p.concurrency, p.concurrency, p.budget_seconds) for p in SLOW] if quick else SLOW
    slowest = (
        [Phase(p.concurrency, p.concurrency, p.budget_seconds) for p in SLOWEST]
        if quick
        else SLOWEST
    )
    levels: list[Level] = []
    with run_log("ladder") as log:
        return await _run_levels(server_url, log.path, levels, fast, slow, slowest)


async def _run_levels(
    server_url: str,
    log_path: Path,
    levels: list[Level],
    fast: list[Phase],
    slow: list[Phase],
    slowest: list[Phase],
) -> list[Level]:
    print(f"loading bench-500 (server logs, removed unless the run fails: {log_path})")
    async with bench_database(server_url) as url:
        await load(url, DATASETS["bench-500"])
        token = await _staff_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()

        print("L1: one SQL statement, bytes from a bare Starlette route")
        with ServerProcess(
            "physical", url, occurrence_id=OCCURRENCE_ID, log_path=log_path
        ) as server:
            levels.append(
                await _measure_server(server, "L1", "SQL builds the JSON", fast, graphql=False)
            )

        print("L3: Strawberry without dataloaders, a query per object")
        with ServerProcess("naive", url, occurrence_id=OCCURRENCE_ID, log_path=log_path) as server:
            levels.append(
                await _measure_server(server, "L3", "naive resolvers", slowest, graphql=True)
            )

        for compiled, label, phases in ((False, "resolvers", slow), (True, "compiled", fast)):
            print(f"L4: Enrolink in-process, {label}")
            environment = _enrolink_environment(url, compiled)
            levels.append(
                await asyncio.to_thread(
                    _measure_in_process, "L4", f"in-process, {label}", environment, compiled, phases
                )
            )
            print(f"L5: Enrolink over HTTP through uvicorn, {label}")
            with enrolink_server(url, environment, log_path, headers) as server:
                levels.append(
                    await _measure_server(server, "L5", f"HTTP, {label}", phases, graphql=True)
                )
        print(f"measured in {time.perf_counter() - started:.0f} s")
    return levels
