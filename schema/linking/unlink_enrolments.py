"""unlinkEnrolments: close the active link of a session enrolment."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import linking, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import EnrolmentLink, InfoT


@strawberry.input
class UnlinkEnrolmentsInput:
    session_enrolment_id: strawberry.ID
    reason: str | None = strawberry.field(
        default=None,
        description=f"Why the link is closed, at most 200 characters. Default: "
        f'"{linking.DEFAULT_UNLINK_REASON}".',
    )


@strawberry.type
class UnlinkEnrolmentsPayload:
    link: EnrolmentLink | None = strawberry.field(
        default=None, description="The closed link, with unlinkedAt and unlinkReason set."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def unlink_enrolments(info: InfoT, input: UnlinkEnrolmentsInput) -> UnlinkEnrolmentsPayload:
    async def operation(session: AsyncSession) -> tables.EnrolmentLink:
        return await linking.unlink_enrolments(
            session,
            session_enrolment_id=decode_id(
                input.session_enrolment_id, "Enrolment", field="sessionEnrolmentId"
            ),
            reason=input.reason,
        )

    try:
        link = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return UnlinkEnrolmentsPayload(errors=user_errors(error))
    return UnlinkEnrolmentsPayload(link=link)  # type: ignore[arg-type]
