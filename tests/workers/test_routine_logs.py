"""The outbox relay, sent by beat every second here, logs at INFO only when it sends something."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.outbox import ROLL_UP_TASK
from tests.workers.conftest import FAST_RELAY, WorkerStack, wait_until
from workers.celery_app import RELAY_OUTBOX_TASK

# Beat sends the relay every second, so this many seconds of an idle service see several runs.
IDLE_SECONDS = 4


def _records(log_text: str) -> list[dict[str, object]]:
    records = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


async def test_idle_relay_runs_log_nothing_at_info(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    stack = WorkerStack(
        database_url=database_url, redis_url=redis_url, folder=tmp_path, overrides=dict(FAST_RELAY)
    )
    try:
        worker = stack.start_worker()
        beat = stack.start_beat()
        await asyncio.sleep(IDLE_SECONDS)
        # A row that the API never published: the next relay run sends it.
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO outbox (task_name, payload, created_at) VALUES (:task, "
                    "CAST(:payload AS jsonb), now() - interval '1 minute')"
                ),
                {"task": ROLL_UP_TASK, "payload": '{"administrative_enrolment_ids": []}'},
            )
        await asyncio.to_thread(worker.wait_for_event, "outbox.relayed")

        async def rolled_up() -> bool:
            return any(
                record.get("event") == "task.finished" and record.get("task_name") == ROLL_UP_TASK
                for record in _records(worker.log_text())
            )

        await wait_until(rolled_up, within_seconds=30, what="the relayed roll-up to finish")
    finally:
        stack.stop()

    worker_records = _records(worker.log_text())
    relay_finished = [
        record
        for record in worker_records
        if record.get("event") == "task.finished" and record.get("task_name") == RELAY_OUTBOX_TASK
    ]
    # Only the run that sent the row logged its end; the idle runs before it logged nothing.
    assert [record["published"] for record in relay_finished] == [1], worker.log_text()
    relay_started = [
        record
        for record in worker_records
        if record.get("event") == "task.started" and record.get("task_name") == RELAY_OUTBOX_TASK
    ]
    assert relay_started == []
    celery_lines = [
        record
        for record in worker_records + _records(beat.log_text())
        if str(record.get("logger", "")).startswith("celery.")
        and RELAY_OUTBOX_TASK in str(record.get("event"))
    ]
    assert celery_lines == []
    # The roll-up that the relay sent is not a routine task: Celery's lines for it stay.
    assert any(
        record.get("logger") == "celery.app.trace" and ROLL_UP_TASK in str(record.get("event"))
        for record in worker_records
    ), worker.log_text()
