"""reconcileLinks: run the reconciler now, in this request's transaction, and return its run."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import reconciliation, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.types import InfoT, ReconciliationRun

TRIGGER = "api"


@strawberry.type
class ReconcileLinksPayload:
    run: ReconciliationRun | None = strawberry.field(
        default=None, description="The finished run, with found and repaired counts per cause."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def reconcile_links(info: InfoT) -> ReconcileLinksPayload:
    # The on-demand run finishes every batch in this request's transaction, so the batch size
    # (ENROLINK_RECONCILE_BATCH_SIZE, as for the scheduled run) only bounds each statement's locks.
    batch_size = info.context.reconcile_batch_size

    async def operation(session: AsyncSession) -> tables.ReconciliationRun:
        return await reconciliation.reconcile(session, trigger=TRIGGER, batch_size=batch_size)

    try:
        run = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return ReconcileLinksPayload(errors=user_errors(error))
    return ReconcileLinksPayload(run=run)  # type: ignore[arg-type]
