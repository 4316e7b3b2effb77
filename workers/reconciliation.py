"""The reconciliation task: beat runs the reconciler every ``reconcile_interval_seconds``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enrolink.settings import Settings
from models.outbox import take_pending
from models.reconciliation import reconcile
from models.tables import OutboxMessage, ReconciliationRun
from workers.publisher import publish_pending

if TYPE_CHECKING:
    from workers.base import EnrolinkTask


async def run_reconciliation(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    trigger: str,
    celery_app: object = None,
) -> ReconciliationRun:
    """Run the reconciler with a commit per batch, then publish the roll-ups it requested."""
    async with sessionmaker() as session:
        run = await reconcile(
            session,
            trigger=trigger,
            batch_size=settings.reconcile_batch_size,
            commit_batches=True,
            time_budget_seconds=settings.reconcile_time_budget_seconds,
        )
        pending = take_pending(session)
    await publish_pending(pending, sessionmaker, celery_app=celery_app)
    return run


async def reconcile_task(
    task: EnrolinkTask, outbox_id: int | None = None, trigger: str = "beat"
) -> dict[str, int]:
    """``enrolink.reconcile``: returns found and repaired per cause, for the task's log line."""
    sessionmaker = task.runtime.sessionmaker
    run = await run_reconciliation(
        sessionmaker, task.enrolink_settings, trigger=trigger, celery_app=task.app
    )
    if outbox_id is not None:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id)
                .values(processed_at=func.now())
            )
    counts = {"run_id": run.id}
    for count in run.counts:
        if count.found:
            counts[f"{count.cause.lower()}_found"] = count.found
            counts[f"{count.cause.lower()}_repaired"] = count.repaired
    return counts
