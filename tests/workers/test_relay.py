"""The outbox relay, run in the test process: which rows it sends, and what a failure leaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.outbox import ROLL_UP_TASK
from models.tables import OutboxMessage
from tests.workers.conftest import WorkerStack, free_port
from workers.relay import relay_outbox

# (label, created seconds ago, published seconds ago or None, publish count, processed)
ROWS = [
    ("never published, old", 60, None, 0, False),
    ("never published, new", 0, None, 0, False),
    ("published long ago, unprocessed", 7200, 3600, 1, False),
    ("published recently, unprocessed", 20, 10, 1, False),
    ("processed", 7200, 3600, 1, True),
    ("publish limit reached", 7200, 3600, 10, False),
]
DUE = {"never published, old", "published long ago, unprocessed"}


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerStack]:
    stack = WorkerStack(database_url=database_url, redis_url=redis_url, folder=tmp_path)
    try:
        yield stack
    finally:
        stack.stop()
        # Nothing consumes this test's queue; remove what the relay sent to it.
        queue = stack.overrides["ENROLINK_ROLL_UP_QUEUE"]
        client = redis.Redis.from_url(stack.settings().redis_client_url())
        try:
            client.delete(queue, f"_kombu.binding.{queue}")
        finally:
            client.close()


async def _insert_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    ids = {}
    async with sessionmaker() as session, session.begin():
        for label, created_ago, published_ago, publish_count, processed in ROWS:
            ids[label] = (
                await session.execute(
                    text(
                        """
                        INSERT INTO outbox (task_name, payload, created_at, published_at,
                                            publish_count, processed_at)
                        VALUES (:task, CAST(:payload AS jsonb),
                                now() - make_interval(secs => :created_ago),
                                now() - make_interval(secs => :published_ago),
                                :publish_count,
                                CASE WHEN :processed THEN now() END)
                        RETURNING id
                        """
                    ),
                    {
                        "task": ROLL_UP_TASK,
                        "payload": '{"administrative_enrolment_ids": [1], "reason": "test"}',
                        "created_ago": created_ago,
                        "published_ago": published_ago,
                        "publish_count": publish_count,
                        "processed": processed,
                    },
                )
            ).scalar_one()
    return ids


async def _publish_counts(
    sessionmaker: async_sessionmaker[AsyncSession], ids: dict[str, int]
) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OutboxMessage.id, OutboxMessage.publish_count).where(
                OutboxMessage.id.in_(ids.values())
            )
        )
        by_id = {row.id: row.publish_count for row in rows}
    return {label: by_id[outbox_id] for label, outbox_id in ids.items()}


async def test_relay_sends_only_due_rows(
    stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _insert_rows(sessionmaker)
    before = await _publish_counts(sessionmaker, ids)

    counts = await relay_outbox(sessionmaker, stack.celery_app(), stack.settings())

    after = await _publish_counts(sessionmaker, ids)
    assert counts.published == len(DUE)
    assert counts.unsent == 0
    for label in ids:
        expected = before[label] + 1 if label in DUE else before[label]
        assert after[label] == expected, label
    client = redis.Redis.from_url(stack.settings().redis_client_url())
    try:
        assert client.llen(stack.overrides["ENROLINK_ROLL_UP_QUEUE"]) == len(DUE)
    finally:
        client.close()


async def test_relay_skips_locked_row(
    stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _insert_rows(sessionmaker)
    locked_label = "never published, old"

    async with sessionmaker() as holder, holder.begin():
        # Another relay, or the API stamping the row as published, has it locked.
        await holder.execute(
            select(OutboxMessage.id).where(OutboxMessage.id == ids[locked_label]).with_for_update()
        )
        counts = await relay_outbox(sessionmaker, stack.celery_app(), stack.settings())

    after = await _publish_counts(sessionmaker, ids)
    assert counts.published == len(DUE) - 1
    assert after[locked_label] == 0


async def test_relay_without_redis_changes_nothing(
    stack: WorkerStack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _insert_rows(sessionmaker)
    before = await _publish_counts(sessionmaker, ids)
    # Nothing listens on this port, so every connection is refused.
    unreachable = f"redis://127.0.0.1:{free_port()}/0"

    with structlog.testing.capture_logs() as logs:
        counts = await relay_outbox(
            sessionmaker,
            stack.celery_app(ENROLINK_REDIS_URL=unreachable),
            stack.settings(),
        )

    assert counts.published == 0
    assert counts.unsent == len(DUE)
    assert await _publish_counts(sessionmaker, ids) == before
    failures = [entry for entry in logs if entry["event"] == "outbox.publish_failed"]
    assert [sorted(entry["outbox_ids"]) for entry in failures] == [
        sorted(ids[label] for label in DUE)
    ]
