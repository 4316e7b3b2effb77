"""The API's outbox publisher: rows go to Redis at once and are stamped as published in batches.

These tests use a real Redis queue and PostgreSQL, and no worker, so the sent messages stay in
the queue where the test counts them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.outbox import ROLL_UP_TASK, PendingMessage, enqueue, take_pending
from models.tables import OutboxMessage
from tests.workers.conftest import PrivateRedis, WorkerStack, wait_until
from workers.publisher import OutboxPublisher, publish_messages

# Bound on waits for the publisher's background task, with room for a loaded machine.
PUBLISHED_WITHIN_SECONDS = 10.0


async def _committed_rows(
    sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> list[PendingMessage]:
    async with sessionmaker() as session:
        async with session.begin():
            for number in range(count):
                await enqueue(session, ROLL_UP_TASK, {"administrative_enrolment_ids": [number + 1]})
        return take_pending(session)


async def _stamps(
    sessionmaker: async_sessionmaker[AsyncSession], messages: list[PendingMessage]
) -> list[tuple[int, object]]:
    ids = [message.outbox_id for message in messages]
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OutboxMessage.publish_count, OutboxMessage.published_at)
            .where(OutboxMessage.id.in_(ids))
            .order_by(OutboxMessage.id)
        )
        return [(row.publish_count, row.published_at) for row in rows]


async def _all_stamped(
    sessionmaker: async_sessionmaker[AsyncSession], messages: list[PendingMessage]
) -> bool:
    return all(published for _, published in await _stamps(sessionmaker, messages))


def _queued(stack: WorkerStack) -> int:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        length: int = client.llen(stack.overrides["ENROLINK_ROLL_UP_QUEUE"])
    finally:
        client.close()
    return length


async def test_rows_sent_then_stamped_together(
    worker_stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    publisher = OutboxPublisher(sessionmaker, worker_stack.celery_app())
    first = await _committed_rows(sessionmaker, 2)
    second = await _committed_rows(sessionmaker, 3)

    publisher(first)
    publisher(second)

    await wait_until(
        lambda: _all_stamped(sessionmaker, first + second),
        within_seconds=PUBLISHED_WITHIN_SECONDS,
        what="the stamps",
    )
    await publisher.close()
    stamps = await _stamps(sessionmaker, first + second)
    assert _queued(worker_stack) == 5
    assert [count for count, _ in stamps] == [1] * 5
    # One statement stamped all five: now() is the same for every row of a transaction.
    assert len({published for _, published in stamps}) == 1


async def test_close_stamps_rows_already_sent(
    worker_stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # An interval longer than the test, so only close() can stamp.
    publisher = OutboxPublisher(
        sessionmaker, worker_stack.celery_app(), stamp_interval_seconds=3600
    )
    messages = await _committed_rows(sessionmaker, 2)

    publisher(messages)

    async def sent() -> bool:
        return _queued(worker_stack) == 2

    await wait_until(sent, within_seconds=PUBLISHED_WITHIN_SECONDS, what="the messages in Redis")
    unstamped = await _stamps(sessionmaker, messages)
    await publisher.close()
    stamped = await _stamps(sessionmaker, messages)
    assert [published for _, published in unstamped] == [None, None]
    assert all(published is not None for _, published in stamped)


async def test_rows_left_to_relay_when_redis_down(
    database_url: str,
    private_redis: PrivateRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    stack = WorkerStack(
        database_url=database_url,
        redis_url=private_redis.url,
        folder=tmp_path,
        overrides={"ENROLINK_BROKER_CONNECT_TIMEOUT_SECONDS": "0.5"},
    )
    try:
        publisher = OutboxPublisher(sessionmaker, stack.celery_app())
        messages = await _committed_rows(sessionmaker, 2)
        private_redis.stop()

        with structlog.testing.capture_logs() as logs:
            publisher(messages)
            await publisher.close(wait_seconds=PUBLISHED_WITHIN_SECONDS)

        failures = [entry for entry in logs if entry["event"] == "outbox.publish_failed"]
        assert [entry["outbox_ids"] for entry in failures] == [
            [message.outbox_id for message in messages]
        ]
        assert await _stamps(sessionmaker, messages) == [(0, None), (0, None)]
    finally:
        # Removing the stack's queues needs Redis.
        if private_redis.process is None:
            private_redis.start()
        stack.stop()


async def test_publisher_outlives_idle_periods(
    worker_stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    publisher = OutboxPublisher(
        sessionmaker, worker_stack.celery_app(), stamp_interval_seconds=0.05
    )
    first = await _committed_rows(sessionmaker, 1)
    publisher(first)

    await wait_until(
        lambda: _all_stamped(sessionmaker, first),
        within_seconds=PUBLISHED_WITHIN_SECONDS,
        what="the first stamp",
    )
    # Idle for several intervals, then more rows: the same task wakes and sends them.
    await asyncio.sleep(0.3)
    second = await _committed_rows(sessionmaker, 1)
    publisher(second)
    await wait_until(
        lambda: _all_stamped(sessionmaker, second),
        within_seconds=PUBLISHED_WITHIN_SECONDS,
        what="the second stamp",
    )
    await publisher.close()

    assert _queued(worker_stack) == 2


async def test_failed_task_logged_and_replaced(
    worker_stack: WorkerStack,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = OutboxPublisher(
        sessionmaker, worker_stack.celery_app(), stamp_interval_seconds=0.05
    )
    original_stamp = OutboxPublisher._stamp

    async def broken_stamp(self: OutboxPublisher) -> None:
        raise RuntimeError("stamping is broken")

    monkeypatch.setattr(OutboxPublisher, "_stamp", broken_stamp)
    first = await _committed_rows(sessionmaker, 1)
    with structlog.testing.capture_logs() as logs:
        publisher(first)

        async def failure_logged() -> bool:
            return any(entry["event"] == "outbox.publisher_failed" for entry in logs)

        await wait_until(
            failure_logged, within_seconds=PUBLISHED_WITHIN_SECONDS, what="the failure's log"
        )
    monkeypatch.setattr(OutboxPublisher, "_stamp", original_stamp)
    second = await _committed_rows(sessionmaker, 1)
    publisher(second)
    await wait_until(
        lambda: _all_stamped(sessionmaker, second),
        within_seconds=PUBLISHED_WITHIN_SECONDS,
        what="the new task's stamp",
    )
    await publisher.close()

    assert _queued(worker_stack) == 2
    # The failed task had sent the first row; its id waited, and the new task stamped it too.
    assert [count for count, _ in await _stamps(sessionmaker, first + second)] == [1, 1]


def test_pipeline_over_kombu_flush_size(worker_stack: WorkerStack) -> None:
    # kombu flushes a publish pipeline at 1,000 commands, so 1,200 messages take two flushes.
    messages = [
        PendingMessage(number, ROLL_UP_TASK, {"administrative_enrolment_ids": [number]})
        for number in range(1, 1201)
    ]

    outcome = publish_messages(worker_stack.celery_app(), messages)

    assert outcome.published == [message.outbox_id for message in messages]
    assert outcome.unsent == []
    client = redis.Redis.from_url(worker_stack.redis_url)
    try:
        queued = client.lrange(worker_stack.overrides["ENROLINK_ROLL_UP_QUEUE"], 0, -1)
    finally:
        client.close()
    reprs = [json.loads(raw)["headers"]["kwargsrepr"] for raw in queued]
    assert len(queued) == 1200
    assert len(set(reprs)) == 1200
    # LPUSH puts the last message sent at the head of the list.
    assert "'outbox_id': 1200" in reprs[0]
