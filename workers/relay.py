"""The outbox relay: publishes what the API could not, and again what Redis may have lost.

Beat runs it every ``outbox_relay_interval_seconds``. It sends rows never published once they
are older than ``outbox_publish_grace_seconds`` (younger ones are the API's own, still being
published right after their commit), and rows published but still unprocessed after
``outbox_republish_after_seconds``: a Redis that keeps nothing on disk loses its queues when
it restarts. A task delivered twice is harmless, because a task whose outbox row is processed
returns at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enrolink.settings import Settings
from models.log_fields import id_fields
from models.outbox import PendingMessage
from models.tables import OutboxMessage
from workers.publisher import mark_published, publish_messages

if TYPE_CHECKING:
    from workers.base import EnrolinkTask

log = structlog.get_logger(__name__)

# One run publishes at most this many batches (10,000 rows at the default batch size), so a
# backlog after an outage drains over several runs instead of one long one. Measured: about
# 0.65 ms per message to a local Redis on a loaded 2-core machine, so about 7 s per full run.
RELAY_MAX_BATCHES = 20


@dataclass
class RelayCounts:
    published: int = 0
    unsent: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"published": self.published, "unsent": self.unsent, "batches": self.batches}


def _due_rows(settings: Settings) -> Any:
    now = func.now()
    grace = timedelta(seconds=settings.outbox_publish_grace_seconds)
    republish_after = timedelta(seconds=settings.outbox_republish_after_seconds)
    return (
        select(OutboxMessage.id, OutboxMessage.task_name, OutboxMessage.payload)
        .where(
            OutboxMessage.processed_at.is_(None),
            OutboxMessage.publish_count < settings.outbox_max_publish_count,
            or_(
                and_(
                    OutboxMessage.published_at.is_(None),
                    OutboxMessage.created_at < now - grace,
                ),
                OutboxMessage.published_at < now - republish_after,
            ),
        )
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(settings.outbox_relay_batch_size)
        # Two relays at once (beat sent one while another still runs) take different rows.
        .with_for_update(skip_locked=True)
    )


async def relay_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, settings: Settings
) -> RelayCounts:
    """Publish the due outbox rows in batches; stop at the first batch that fails to send."""
    counts = RelayCounts()
    for _ in range(RELAY_MAX_BATCHES):
        async with sessionmaker() as session, session.begin():
            rows = (await session.execute(_due_rows(settings))).all()
            if not rows:
                break
            counts.batches += 1
            messages = [PendingMessage(row.id, row.task_name, row.payload) for row in rows]
            outcome = await asyncio.to_thread(publish_messages, app, messages)
            marked = await mark_published(session, outcome.published)

        counts.published += len(outcome.published)
        counts.unsent += len(outcome.unsent)
        for outbox_id, publish_count in marked:
            if publish_count >= settings.outbox_max_publish_count:
                log.warning(
                    "outbox.publish_limit_reached",
                    outbox_id=outbox_id,
                    publish_count=publish_count,
                )
        if outcome.unsent:
            outcome.log_unsent()
            break
        if outcome.published:
            log.info("outbox.relayed", **id_fields("outbox_ids", outcome.published))
        if len(rows) < settings.outbox_relay_batch_size:
            break
    return counts


async def relay_outbox_task(task: EnrolinkTask) -> dict[str, int]:
    counts = await relay_outbox(task.runtime.sessionmaker, task.app, task.enrolink_settings)
    return counts.as_dict()
