"""linkEnrolments and recordResult over HTTP against the same statements sent with asyncpg.

The Enrolink server records the statements of every committed transaction. Before any
mutation runs, the bench copies the database, and afterwards replays each phase's recorded
transactions on the copy at the same concurrency, so both sides send the same SQL to the same
starting state. Each mutation starts with an unmeasured warm-up phase on both sides, which
fills every pooled connection's statement cache. Then a Celery worker joins, and a burst of
recordResult mutations measures the outbox lag: how long after its mutation committed each
roll-up task finished.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bench.celery_bench import _start_worker, _stop_worker, forget_queues, redis_url
from bench.client import ConnectionPool, connection_pool
from bench.database import _admin_execute, bench_database, plain_url, with_database
from bench.datasets import DATASETS, load
from bench.ladder import _enrolink_environment, _staff_token, enrolink_server
from bench.load import LoadResult, Phase, run_load
from bench.logs import RunLog, run_log
from bench.servers import ServerProcess, Transaction
from bench.targets import Target, ratio_at_most, table
from schema.ids import encode_id

# Unmeasured: the first requests prepare statements on each pooled connection and fill the
# application's caches, on both sides.
WARM_UP = Phase(16, 32, 60.0)
# 600 requests at concurrency 1 put 30 of them in the slowest 5%. With 200, the p95 of either side
# changed by up to two times between runs of the same code.
PHASES = [Phase(1, 600, 60.0), Phase(16, 320, 60.0)]
BURST = 1_000
BURST_CONCURRENCY = 16
# The bench stops waiting for the burst's roll-ups after this long and reports how far they got.
LAG_TIMEOUT_SECONDS = 300.0

LINK = """
mutation ($input: LinkEnrolmentsInput!) {
  linkEnrolments(input: $input) { link { id } errors { code message } }
}
"""

RECORD = """
mutation ($input: RecordResultInput!) {
  recordResult(input: $input) { result { id outcome } errors { code message } }
}
"""


@asynccontextmanager
async def copied_database(server_url: str, source_url: str) -> AsyncIterator[str]:
    """Create a copy of the database at ``source_url`` (which must have no connections)."""
    source = source_url.rsplit("/", 1)[-1]
    name = f"enrolink_bench_{uuid.uuid4().hex[:10]}"
    await _admin_execute(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield with_database(server_url, name)
    finally:
        await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _targets(url: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """Close every second link and return those pairs to relink, and results to overwrite."""
    connection = await asyncpg.connect(url)
    try:
        pairs = await connection.fetch(
            "UPDATE enrolment_links SET unlinked_at = now(), unlink_reason = 'bench' "
            "WHERE id % 2 = 0 RETURNING administrative_enrolment_id, session_enrolment_id"
        )
        # Every result of the still-linked session enrolments, ordered so that consecutive
        # requests write to different enrolments.
        results = await connection.fetch(
            "SELECT r.enrolment_id, r.unit_id, r.outcome FROM enrolled_units r "
            "JOIN enrolment_links l ON l.session_enrolment_id = r.enrolment_id "
            "AND l.unlinked_at IS NULL "
            "ORDER BY row_number() OVER (PARTITION BY r.enrolment_id ORDER BY r.id), "
            "r.enrolment_id"
        )
    finally:
        await connection.close()
    links = sorted((row[0], row[1]) for row in pairs)
    return links, [(row[0], row[1], row[2]) for row in results]


def _is_publisher(transaction: Transaction) -> bool:
    """Return whether the transaction only stamps outbox rows as published.

    The API does that after the response has been sent, so it is not part of a mutation's
    latency and is not replayed.
    """
    return all(statement.lstrip().startswith("UPDATE outbox") for statement, _, _ in transaction)


def _link_inputs(pairs: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
    for administrative, session in pairs:
        yield {
            "administrativeEnrolmentId": encode_id("Enrolment", administrative),
            "sessionEnrolmentId": encode_id("Enrolment", session),
        }


def _record_inputs(results: list[tuple[int, int, int]]) -> Iterator[dict[str, Any]]:
    for enrolment, unit, outcome in results:
        yield {
            "enrolmentId": encode_id("Enrolment", enrolment),
            "unitId": encode_id("Unit", unit),
            # A different outcome from the recorded one, so every mutation writes.
            "outcome": "COMPETENCY_NOT_ACHIEVED" if outcome == 20 else "COMPETENCY_ACHIEVED",
        }


async def _send(
    client: ConnectionPool, headers: dict[str, str], document: str, variables: Any
) -> None:
    body = await client.post_json(
        "/graphql", {"query": document, "variables": {"input": variables}}, headers
    )
    payload = next(iter(body["data"].values()))
    if body.get("errors") or payload["errors"]:
        raise RuntimeError(f"the mutation failed: {body}")


async def _replay(url: str, transactions: list[Transaction], concurrency: int) -> LoadResult:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    queue = iter(transactions)
    try:

        async def request() -> None:
            transaction = next(queue)
            async with pool.acquire() as connection, connection.transaction():
                for statement, parameters, executemany in transaction:
                    if executemany:
                        await connection.executemany(statement, parameters)
                    else:
                        await connection.execute(statement, *(parameters or ()))

        return await run_load(request, Phase(concurrency, len(transactions), 3600.0))
    finally:
        await pool.close()


def _line(label: str, result: LoadResult) -> str:
    return (
        f"{label} c={result.concurrency}: p50 {result.p50 * 1000:,.1f} ms, "
        f"p95 {result.p95 * 1000:,.1f} ms, {result.requests_per_second:,.0f} req/s "
        f"({result.requests} requests)"
    )


async def run_mutations(server_url: str) -> tuple[list[str], list[Target]]:
    """Measure both mutations and the outbox lag; return the lines to print and the targets."""
    suffix = uuid.uuid4().hex[:10]
    queues = {
        "ENROLINK_ROLL_UP_QUEUE": f"bench_roll_up_{suffix}",
        "ENROLINK_RECONCILE_QUEUE": f"bench_reconcile_{suffix}",
    }
    try:
        with run_log("mutations") as log:
            return await _run_mutations(server_url, log, queues)
    finally:
        forget_queues(suffix)


async def _run_mutations(
    server_url: str, log: RunLog, queues: dict[str, str]
) -> tuple[list[str], list[Target]]:
    lines: list[str] = []
    targets: list[Target] = []
    async with bench_database(server_url) as url:
        await load(url, DATASETS["bench-500"], progress=False)
        link_pairs, results = await _targets(url)
        token = await _staff_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        async with copied_database(server_url, url) as replay_url:
            environment = {
                **_enrolink_environment(url, True),
                **queues,
                "ENROLINK_BENCH_RECORD": "true",
            }
            links = _link_inputs(link_pairs)
            records = _record_inputs(results)
            with enrolink_server(url, environment, log.path, headers) as server:
                async with connection_pool(server.base_url) as client:
                    phases = await _measure_over_http(client, headers, server, links, records)
                    lines += [
                        _line(f"{name} over HTTP", measured_result)
                        for name, _, measured_result, _ in phases
                        if measured_result is not None
                    ]
                    for name, phase, measured_result, transactions in phases:
                        replayed = await _replay(
                            plain_url(replay_url), transactions, phase.concurrency
                        )
                        if measured_result is None:
                            continue
                        statements = statistics.mean(len(t) for t in transactions)
                        lines.append(
                            _line(f"{name} statements sent with asyncpg", replayed)
                            + f", {statements:.1f} statements per transaction"
                        )
                        targets.append(
                            ratio_at_most(
                                f"{name} p95 at concurrency {phase.concurrency}: "
                                "over HTTP / its statements with asyncpg",
                                measured_result.p95,
                                replayed.p95,
                                3,
                                "ms",
                            )
                        )

                    lines.append(await _outbox_lag(url, client, headers, records, environment, log))
    return lines, targets


async def _measure_over_http(
    client: ConnectionPool,
    headers: dict[str, str],
    server: ServerProcess,
    links: Iterator[dict[str, Any]],
    records: Iterator[dict[str, Any]],
) -> list[tuple[str, Phase, LoadResult | None, list[Transaction]]]:
    """Run each mutation's warm-up and measured phases; return them with their transactions."""
    phases: list[tuple[str, Phase, LoadResult | None, list[Transaction]]] = []
    for name, document, inputs in (
        ("linkEnrolments", LINK, links),
        ("recordResult", RECORD, records),
    ):
        for measured, phase in [(False, WARM_UP)] + [(True, p) for p in PHASES]:
            before = len(server.transactions())

            async def request(document: str = document, inputs: Iterator[Any] = inputs) -> None:
                await _send(client, headers, document, next(inputs))

            result = await run_load(request, phase)
            transactions = [
                transaction
                for transaction in server.transactions(before)
                if not _is_publisher(transaction)
            ]
            phases.append((name, phase, result if measured else None, transactions))
    return phases


async def _outbox_lag(
    url: str,
    client: ConnectionPool,
    headers: dict[str, str],
    records: Iterator[dict[str, Any]],
    environment: dict[str, str],
    log: RunLog,
) -> str:
    """Start a worker, drain the outbox, send a burst of recordResult and time its roll-ups."""
    worker_environment = {
        key: value for key, value in environment.items() if key != "ENROLINK_BENCH_RECORD"
    }
    worker_environment["ENROLINK_REDIS_URL"] = redis_url()
    worker = _start_worker({**os.environ, **worker_environment}, log.path, 2)
    connection = await asyncpg.connect(plain_url(url))
    try:
        waiting = "SELECT count(*) FROM outbox WHERE processed_at IS NULL"
        deadline = time.monotonic() + LAG_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not await connection.fetchval(waiting):
                break
            await asyncio.sleep(0.5)
        since = await connection.fetchval("SELECT now()")

        burst = list(itertools.islice(records, BURST))
        inputs = iter(burst)

        async def request() -> None:
            await _send(client, headers, RECORD, next(inputs))

        started = time.perf_counter()
        sent = await run_load(request, Phase(BURST_CONCURRENCY, len(burst), 600.0))
        counting = "SELECT count(*) FROM outbox WHERE created_at >= $1 AND processed_at IS NULL"
        while await connection.fetchval(counting, since):
            if time.perf_counter() - started > LAG_TIMEOUT_SECONDS:
                break
            await asyncio.sleep(0.2)
        drained = time.perf_counter() - started
        lags = await connection.fetch(
            "SELECT extract(epoch FROM processed_at - created_at)::float8 AS lag "
            "FROM outbox WHERE created_at >= $1 AND processed_at IS NOT NULL ORDER BY lag",
            since,
        )
        total = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE created_at >= $1", since
        )
    finally:
        await connection.close()
        _stop_worker(worker)
    values = [row["lag"] for row in lags]
    if not values:
        # The line points to the log, so the log stays.
        log.keep()
        return f"outbox lag: none of the {total} roll-ups of the burst finished; see {log.path}"
    p95 = values[min(len(values) - 1, round(0.95 * len(values)))]
    return (
        f"outbox lag under a burst of {sent.requests:,} recordResult at concurrency "
        f"{BURST_CONCURRENCY} ({sent.requests_per_second:,.0f} req/s), worker concurrency 2: "
        f"{len(values):,} of {total:,} roll-ups finished, "
        f"lag p50 {statistics.median(values):.2f} s, "
        f"p95 {p95:.2f} s, max {values[-1]:.2f} s; outbox empty {drained:.1f} s after the first "
        "request"
    )


def main(server_url: str) -> None:
    lines, targets = asyncio.run(run_mutations(server_url))
    print("\n".join(lines))
    print()
    print(table(targets))
