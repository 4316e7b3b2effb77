"""Roll-ups that survive failures: a killed worker, Redis down at publish time, a lock wait.

The tests that stop Redis or lower the visibility timeout run against a redis-server of their
own, so no other test's queue is lost or delivered early.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import Outcome
from models.outbox import PendingMessage, enqueue, request_roll_up, take_pending
from models.tables import OutboxMessage
from tests.workers.builders import (
    Builder,
    Linked,
    history_count,
    linked_client,
    minutes,
    results_by_unit,
)
from tests.workers.conftest import FAST_RELAY, PrivateRedis, WorkerStack, wait_until
from workers.publisher import publish_pending

ACHIEVED = Outcome.COMPETENCY_ACHIEVED.value

# The visibility timeout of the killed-worker test: short, so the abandoned task comes back in
# seconds, but longer than the time from publishing to the kill (about 1 s here).
SHORT_VISIBILITY_TIMEOUT_SECONDS = 4
# Bound on waits for a task after a failure: a visibility timeout, a reconnection to Redis
# (Celery retries after 2, 4, 6 s...) or a retry's backoff, with room for a loaded machine.
RECOVERED_WITHIN_SECONDS = 45.0

_WAITING_WORKERS = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database()
      AND application_name = 'enrolink-worker'
      AND wait_event_type = 'Lock'
    """
)


async def _recorded_with_roll_up(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[Linked, list[PendingMessage]]:
    async with sessionmaker() as session:
        async with session.begin():
            builder = Builder(session)
            linked = await linked_client(builder, [[0]])
            await builder.record(
                linked.session_enrolment_ids[0],
                linked.catalogue.unit_ids[0],
                ACHIEVED,
                recorded_at=minutes(1),
            )
            await request_roll_up(
                session, [linked.administrative_enrolment_id], reason="result recorded"
            )
        return linked, take_pending(session)


async def _outbox_row(
    sessionmaker: async_sessionmaker[AsyncSession], outbox_id: int
) -> OutboxMessage:
    async with sessionmaker() as session:
        return await session.get_one(OutboxMessage, outbox_id)


async def _wait_processed(
    sessionmaker: async_sessionmaker[AsyncSession], outbox_id: int, what: str
) -> None:
    async def processed() -> bool:
        return (await _outbox_row(sessionmaker, outbox_id)).processed_at is not None

    await wait_until(processed, within_seconds=RECOVERED_WITHIN_SECONDS, what=what)


async def _assert_rolled_up(sessionmaker: async_sessionmaker[AsyncSession], linked: Linked) -> None:
    async with sessionmaker() as session:
        results = await results_by_unit(session, linked.administrative_enrolment_id)
        history = await history_count(session, linked.administrative_enrolment_id)
    assert results[linked.catalogue.unit_ids[0]].outcome == ACHIEVED
    assert history == 1


async def _workers_waiting(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        waiting: int = (await session.execute(_WAITING_WORKERS)).scalar_one()
    return waiting


async def test_killed_worker_task_delivered_again(
    database_url: str,
    private_redis: PrivateRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    stack = WorkerStack(
        database_url=database_url,
        redis_url=private_redis.url,
        folder=tmp_path,
        overrides={
            "ENROLINK_TASK_VISIBILITY_TIMEOUT_SECONDS": str(SHORT_VISIBILITY_TIMEOUT_SECONDS)
        },
    )
    try:
        first = stack.start_worker()
        linked, pending = await _recorded_with_roll_up(sessionmaker)
        outbox_id = pending[0].outbox_id

        async with sessionmaker() as holder, holder.begin():
            # The row lock keeps the roll-up running in the first worker until it is killed.
            await holder.execute(
                text("SELECT id FROM enrolments WHERE id = :id FOR UPDATE"),
                {"id": linked.administrative_enrolment_id},
            )
            await publish_pending(pending, sessionmaker, celery_app=stack.celery_app())

            async def first_worker_waiting() -> bool:
                return await _workers_waiting(sessionmaker) == 1

            await wait_until(
                first_worker_waiting,
                within_seconds=RECOVERED_WITHIN_SECONDS,
                what="the first worker to wait for the enrolment's lock",
            )
            first.kill()

        assert not first.running()
        assert (await _outbox_row(sessionmaker, outbox_id)).processed_at is None
        second = stack.start_worker()
        await _wait_processed(sessionmaker, outbox_id, "the killed worker's task to run again")

        await _assert_rolled_up(sessionmaker, linked)
        started = [
            event for event in second.events("task.started") if event.get("outbox_id") == outbox_id
        ]
        assert started, second.log_text()
    finally:
        stack.stop()


async def test_relay_publishes_after_redis_returns(
    database_url: str,
    private_redis: PrivateRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    stack = WorkerStack(
        database_url=database_url,
        redis_url=private_redis.url,
        folder=tmp_path,
        overrides=dict(FAST_RELAY),
    )
    try:
        worker = stack.start_worker()
        stack.start_beat()
        celery_app = stack.celery_app()
        private_redis.stop()
        linked, pending = await _recorded_with_roll_up(sessionmaker)
        outbox_id = pending[0].outbox_id

        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            await publish_pending(pending, sessionmaker, celery_app=celery_app)
        publish_seconds = time.monotonic() - started

        failures = [entry for entry in logs if entry["event"] == "outbox.publish_failed"]
        assert [entry["outbox_ids"] for entry in failures] == [[outbox_id]]
        # kombu retries a refused connection until the connect timeout has passed, so that
        # timeout, not the refusal, sets how long a publish takes while Redis is down.
        assert publish_seconds < celery_app.enrolink_settings.broker_connect_timeout_seconds + 1.0
        row = await _outbox_row(sessionmaker, outbox_id)
        assert row.published_at is None
        assert row.publish_count == 0

        private_redis.start()
        await _wait_processed(sessionmaker, outbox_id, "the relay to publish the roll-up")

        await _assert_rolled_up(sessionmaker, linked)
        row = await _outbox_row(sessionmaker, outbox_id)
        assert row.publish_count >= 1
        relayed = [
            event
            for event in worker.events("outbox.relayed")
            if outbox_id in event.get("outbox_ids", [])
        ]
        assert relayed, worker.log_text()
    finally:
        stack.stop()


async def test_lock_timeout_retried_then_done(
    worker_stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    worker = worker_stack.start_worker(ENROLINK_TASK_LOCK_TIMEOUT_MS="300")
    linked, pending = await _recorded_with_roll_up(sessionmaker)
    outbox_id = pending[0].outbox_id

    async with sessionmaker() as holder, holder.begin():
        await holder.execute(
            text("SELECT id FROM enrolments WHERE id = :id FOR UPDATE"),
            {"id": linked.administrative_enrolment_id},
        )
        await publish_pending(pending, sessionmaker, celery_app=worker_stack.celery_app())

        async def retried() -> bool:
            return bool(worker.events("task.retried"))

        await wait_until(
            retried, within_seconds=RECOVERED_WITHIN_SECONDS, what="the roll-up to be retried"
        )

    await _wait_processed(sessionmaker, outbox_id, "the retried roll-up")
    await _assert_rolled_up(sessionmaker, linked)
    retry = worker.events("task.retried")[0]
    assert retry["outbox_id"] == outbox_id
    assert "lock timeout" in retry["error"]


async def test_failed_task_records_last_error(
    worker_stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    worker = worker_stack.start_worker()
    async with sessionmaker() as session:
        async with session.begin():
            # An id that is not a number fails in every attempt, so it is not retried.
            await enqueue(
                session,
                "enrolink.roll_up",
                {"administrative_enrolment_ids": ["not-a-number"], "reason": "test"},
            )
        pending = take_pending(session)
    outbox_id = pending[0].outbox_id

    await publish_pending(pending, sessionmaker, celery_app=worker_stack.celery_app())

    async def error_recorded() -> bool:
        return (await _outbox_row(sessionmaker, outbox_id)).last_error is not None

    await wait_until(
        error_recorded, within_seconds=RECOVERED_WITHIN_SECONDS, what="last_error to be recorded"
    )
    row = await _outbox_row(sessionmaker, outbox_id)
    assert row.last_error is not None
    assert "invalid input" in row.last_error
    assert row.processed_at is None
    assert worker.events("task.retried") == []
    assert [event["outbox_id"] for event in worker.events("task.failed")] == [outbox_id]
    async with sessionmaker() as session:
        unprocessed = (
            await session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.processed_at.is_(None))
            )
        ).scalar_one()
    assert unprocessed == 1
