"""Roll-ups through Celery: batches of administrative enrolment ids sent with ``send_task``.

The tasks take the same name and keyword arguments as the ones the outbox publishes, so a
worker runs them through the real task path: its own transaction, the locks, the set-based
statement and Celery's acknowledgement.

A worker subprocess (``python -m enrolink worker``) consumes queues of its own on the Redis
server given, and is stopped at the end; the queues' names are unique to the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.logs import run_log
from enrolink.settings import load_settings
from models.outbox import ROLL_UP_TASK

# A worker is ready in about 2 s on 2 cores; 60 s leaves room for a loaded machine.
READY_TIMEOUT_SECONDS = 60.0
# The bench stops waiting for the roll-ups after this long and reports how far they got.
ROLL_UP_TIMEOUT_SECONDS = 600.0
# How often the bench counts computed enrolments; it adds at most this much to a round's time.
POLL_SECONDS = 0.1

_COMPUTED_SINCE = text(
    "SELECT count(*) FROM enrolments e JOIN occurrences o ON o.id = e.occurrence_id "
    "WHERE o.kind = 'ADMINISTRATIVE' AND e.roll_up_computed_at >= :since"
)


def redis_url() -> str:
    return os.environ.get("ENROLINK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def forget_queues(suffix: str) -> None:
    """Delete the Redis keys of the run's queues, so nothing of the run stays in a shared Redis.

    Celery's Redis transport keeps each queue as a list named after it and its bindings as
    ``_kombu.binding.<queue>`` sets.
    """
    import redis

    client = redis.Redis.from_url(redis_url())
    try:
        for pattern in (f"*bench_roll_up_{suffix}*", f"*bench_reconcile_{suffix}*"):
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@dataclass(frozen=True)
class Round:
    """One round of roll-ups through Celery: ids per task, seconds, and whether all finished."""

    batch: int
    seconds: float
    finished: bool
    line: str


async def roll_up_through_celery(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    ids: list[int],
    *,
    concurrency: int,
    rounds: Sequence[tuple[int, str]],
    before_round: Callable[[], Awaitable[None]] | None = None,
) -> list[Round]:
    """Roll up every enrolment through one worker, once per round; return each round's figures.

    Each round is (ids per task, description of the starting state). ``before_round`` runs
    before each round's clock starts, for example to make every result stale again.
    """
    suffix = uuid.uuid4().hex[:10]
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ENROLINK_")
    }
    environment.update(
        ENROLINK_DATABASE_URL=database_url,
        ENROLINK_REDIS_URL=redis_url(),
        ENROLINK_ROLL_UP_QUEUE=f"bench_roll_up_{suffix}",
        ENROLINK_RECONCILE_QUEUE=f"bench_reconcile_{suffix}",
        ENROLINK_LOG_FORMAT="json",
        ENROLINK_LOG_LEVEL="INFO",
    )
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url(),
        roll_up_queue=f"bench_roll_up_{suffix}",
        reconcile_queue=f"bench_reconcile_{suffix}",
    )
    from workers.celery_app import create_celery_app

    app = create_celery_app(settings)
    with run_log("worker") as log:
        try:
            return await _rounds(
                sessionmaker, app, ids, environment, log.path, concurrency, rounds, before_round
            )
        finally:
            app.close()
            forget_queues(suffix)


async def _rounds(
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
    ids: list[int],
    environment: dict[str, str],
    log_path: Path,
    concurrency: int,
    rounds: Sequence[tuple[int, str]],
    before_round: Callable[[], Awaitable[None]] | None,
) -> list[Round]:
    worker = _start_worker(environment, log_path, concurrency)
    measured: list[Round] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while "worker.ready" not in await asyncio.to_thread(log_path.read_text, errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start; see {log_path}")
            await asyncio.sleep(0.2)

        for batch, state in rounds:
            if before_round is not None:
                await before_round()
            measured.append(
                await _one_round(sessionmaker, app, ids, batch, state, concurrency=concurrency)
            )
    finally:
        _stop_worker(worker)
    return measured


async def _one_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
    ids: list[int],
    batch: int,
    state: str,
    *,
    concurrency: int,
) -> Round:
    async with sessionmaker() as session:
        since = (await session.execute(text("SELECT now()"))).scalar_one()
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        app.send_task(
            ROLL_UP_TASK,
            kwargs={"administrative_enrolment_ids": ids[start : start + batch], "reason": "bench"},
            retry=False,
        )
    sent = time.perf_counter() - started
    tasks = -(-len(ids) // batch)

    computed = 0
    while time.perf_counter() - started < ROLL_UP_TIMEOUT_SECONDS:
        async with sessionmaker() as session:
            computed = (await session.execute(_COMPUTED_SINCE, {"since": since})).scalar_one()
        if computed >= len(ids):
            break
        await asyncio.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    finished = "all" if computed >= len(ids) else f"only {computed:,} of"
    line = (
        f"roll-up through Celery, {batch:,} enrolments per task ({tasks:,} tasks), {state}, "
        f"worker concurrency {concurrency}: {finished} {len(ids):,} enrolments computed in "
        f"{seconds:.2f} s ({computed / seconds:,.0f} per second; sending took {sent:.2f} s)"
    )
    return Round(batch, seconds, computed >= len(ids), line)


def _start_worker(
    environment: dict[str, str], log_path: Path, concurrency: int
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "enrolink", "worker", f"--concurrency={concurrency}"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    # The worker leads its own process group, so its pool processes stop with it.
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
