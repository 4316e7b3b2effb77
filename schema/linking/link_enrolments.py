"""linkEnrolments: link a session enrolment to the administrative enrolment of the same client."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import linking
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import EnrolmentLink, InfoT


@strawberry.input
class LinkEnrolmentsInput:
    administrative_enrolment_id: strawberry.ID
    session_enrolment_id: strawberry.ID


@strawberry.type
class LinkEnrolmentsPayload:
    link: EnrolmentLink | None = strawberry.field(
        default=None,
        description="The active link; linking the same pair again returns it unchanged.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def link_enrolments(info: InfoT, input: LinkEnrolmentsInput) -> LinkEnrolmentsPayload:
    async def operation(session: AsyncSession) -> linking.LinkResult:
        return await linking.link_enrolments(
            session,
            administrative_enrolment_id=decode_id(
                input.administrative_enrolment_id, "Enrolment", field="administrativeEnrolmentId"
            ),
            session_enrolment_id=decode_id(
                input.session_enrolment_id, "Enrolment", field="sessionEnrolmentId"
            ),
            linked_by=info.context.caller.name,
        )

    try:
        linked = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return LinkEnrolmentsPayload(errors=user_errors(error))
    return LinkEnrolmentsPayload(link=linked.link)  # type: ignore[arg-type]
