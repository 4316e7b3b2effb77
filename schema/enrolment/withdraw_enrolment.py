"""withdrawEnrolment: withdraw an enrolment, with cascade also its linked session enrolments."""

from __future__ import annotations

from datetime import date

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import tables, withdrawal
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Enrolment, InfoT


@strawberry.input
class WithdrawEnrolmentInput:
    enrolment_id: strawberry.ID
    withdrawn_on: date = strawberry.field(description="Must lie inside the enrolment's dates.")
    cascade: bool | None = strawberry.field(
        default=None,
        description="For an administrative enrolment: also withdraw its ACTIVE linked session "
        "enrolments. Without it, such an enrolment is not withdrawn.",
    )


@strawberry.type
class WithdrawEnrolmentPayload:
    enrolment: Enrolment | None = None
    enrolments: list[Enrolment] = strawberry.field(
        default_factory=list,
        description="Every enrolment withdrawn, the requested one first, then those cascaded.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def withdraw_enrolment(
    info: InfoT, input: WithdrawEnrolmentInput
) -> WithdrawEnrolmentPayload:
    async def operation(session: AsyncSession) -> list[tables.Enrolment]:
        return await withdrawal.withdraw_enrolment(
            session,
            enrolment_id=decode_id(input.enrolment_id, "Enrolment", field="enrolmentId"),
            withdrawn_on=input.withdrawn_on,
            cascade=bool(input.cascade),
            withdrawn_by=info.context.caller.name,
        )

    try:
        withdrawn = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return WithdrawEnrolmentPayload(errors=user_errors(error))
    return WithdrawEnrolmentPayload(enrolment=withdrawn[0], enrolments=withdrawn)  # type: ignore[arg-type]
