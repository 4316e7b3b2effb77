"""The roll-up task: recompute administrative results after a change to a linked session."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.roll_up import lock_enrolments, roll_up
from models.tables import OutboxMessage

if TYPE_CHECKING:
    from workers.base import EnrolinkTask

log = structlog.get_logger(__name__)


async def run_roll_up(
    sessionmaker: async_sessionmaker[AsyncSession],
    administrative_enrolment_ids: list[int],
    *,
    outbox_id: int | None,
) -> dict[str, int]:
    """Roll up the enrolments in one transaction and mark the outbox row processed in it."""
    async with sessionmaker() as session, session.begin():
        # The enrolment locks serialise two deliveries of the same message: the second waits
        # here, then finds the row processed. The outbox row itself is only read, so the API
        # can stamp it as published while the roll-up runs.
        await lock_enrolments(session, administrative_enrolment_ids)
        if outbox_id is not None:
            processed_at = (
                await session.execute(
                    select(OutboxMessage.processed_at).where(OutboxMessage.id == outbox_id)
                )
            ).one_or_none()
            if processed_at is None:
                log.warning("roll_up.outbox_row_missing", outbox_id=outbox_id)
            elif processed_at[0] is not None:
                return {"already_processed": 1}

        counts = await roll_up(session, administrative_enrolment_ids)

        if outbox_id is not None:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id)
                .values(processed_at=func.now())
            )
    return counts.as_dict()


async def roll_up_task(
    task: EnrolinkTask,
    outbox_id: int | None = None,
    administrative_enrolment_ids: list[int] | None = None,
    reason: str | None = None,
) -> dict[str, int]:
    """``enrolink.roll_up``: ids only; ``reason`` is logged with the task and not used."""
    if not administrative_enrolment_ids:
        return {"enrolments": 0}
    return await run_roll_up(
        task.runtime.sessionmaker, administrative_enrolment_ids, outbox_id=outbox_id
    )
