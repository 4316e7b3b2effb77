"""reconcileLinks: run the reconciler now, in this request's transaction, and return its run."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import reconciliation, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.types import InfoT, ReconciliationRun

# The on-demand run finishes every batch in one transaction before the request commits, so the
# batch size only bounds the rows each statement locks. It is the settings' default for the
# scheduled run; the request context carries no settings to read it from.
BATCH_SIZE = 1_000
TRIGGER = "api"


@strawberry.type
class ReconcileLinksPayload:
    run: ReconciliationRun | None = strawberry.field(
        default=None, description="The finished run, with found and repaired counts per cause."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def reconcile_links(info: InfoT) -> ReconcileLinksPayload:
    async def operation(session: AsyncSession) -> tables.ReconciliationRun:
        return await reconciliation.reconcile(session, trigger=TRIGGER, batch_size=BATCH_SIZE)

    try:
        run = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return ReconcileLinksPayload(errors=user_errors(error))
    return ReconcileLinksPayload(run=run)  # type: ignore[arg-type]
