"""deleteEnrolment: soft-delete an enrolment and close its links."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import tables, withdrawal
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Enrolment, InfoT


@strawberry.input
class DeleteEnrolmentInput:
    enrolment_id: strawberry.ID


@strawberry.type
class DeleteEnrolmentPayload:
    enrolment: Enrolment | None = strawberry.field(
        default=None, description="The deleted enrolment, with deletedAt set."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def delete_enrolment(info: InfoT, input: DeleteEnrolmentInput) -> DeleteEnrolmentPayload:
    async def operation(session: AsyncSession) -> tables.Enrolment:
        return await withdrawal.delete_enrolment(
            session, enrolment_id=decode_id(input.enrolment_id, "Enrolment", field="enrolmentId")
        )

    try:
        deleted = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return DeleteEnrolmentPayload(errors=user_errors(error))
    return DeleteEnrolmentPayload(enrolment=deleted)  # type: ignore[arg-type]
