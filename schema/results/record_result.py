"""recordResult: record one unit's outcome on a session or standard enrolment."""

from __future__ import annotations

from datetime import date

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import results, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Outcome, Result

DATES_DESCRIPTION = (
    "Activity date inside the enrolment's dates. Default: the result's current date, else the "
    "enrolment's."
)


@strawberry.input
class RecordResultInput:
    enrolment_id: strawberry.ID
    unit_id: strawberry.ID
    outcome: Outcome  # type: ignore[valid-type]
    start_date: date | None = strawberry.field(default=None, description=DATES_DESCRIPTION)
    end_date: date | None = strawberry.field(default=None, description=DATES_DESCRIPTION)


@strawberry.type
class RecordResultPayload:
    result: Result | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def record_result(info: InfoT, input: RecordResultInput) -> RecordResultPayload:
    async def operation(session: AsyncSession) -> tables.EnrolledUnit:
        return await results.record_result(
            session,
            enrolment_id=decode_id(input.enrolment_id, "Enrolment", field="enrolmentId"),
            unit_id=decode_id(input.unit_id, "Unit", field="unitId"),
            outcome=input.outcome,
            start_date=input.start_date,
            end_date=input.end_date,
            recorded_by=info.context.caller.name,
        )

    try:
        result = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return RecordResultPayload(errors=user_errors(error))
    return RecordResultPayload(result=result)  # type: ignore[arg-type]
