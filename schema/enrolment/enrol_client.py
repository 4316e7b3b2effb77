"""enrolClient: enrol a client in an occurrence, optionally linking the new session enrolment."""

from __future__ import annotations

from datetime import date

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import enrolment
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Enrolment, EnrolmentLink, InfoT


@strawberry.input
class EnrolClientInput:
    client_id: strawberry.ID
    occurrence_id: strawberry.ID
    start_date: date | None = strawberry.field(
        default=None, description="Default: the occurrence's start date; must lie inside it."
    )
    end_date: date | None = strawberry.field(
        default=None, description="Default: the occurrence's end date; must lie inside it."
    )
    link: bool | None = strawberry.field(
        default=None,
        description="Link the new SESSION enrolment to the client's one ACTIVE administrative "
        "enrolment that overlaps it in dates and shares a unit.",
    )
    administrative_enrolment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Link to this administrative enrolment (implies link)."
    )


@strawberry.type
class EnrolClientPayload:
    enrolment: Enrolment | None = None
    link: EnrolmentLink | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def enrol_client(info: InfoT, input: EnrolClientInput) -> EnrolClientPayload:
    async def operation(session: AsyncSession) -> enrolment.Enrolled:
        administrative_enrolment_id = None
        if input.administrative_enrolment_id is not None:
            administrative_enrolment_id = decode_id(
                input.administrative_enrolment_id, "Enrolment", field="administrativeEnrolmentId"
            )
        return await enrolment.enrol_client(
            session,
            client_id=decode_id(input.client_id, "Client", field="clientId"),
            occurrence_id=decode_id(input.occurrence_id, "Occurrence", field="occurrenceId"),
            start_date=input.start_date,
            end_date=input.end_date,
            link=input.link,
            administrative_enrolment_id=administrative_enrolment_id,
            enrolled_by=info.context.caller.name,
        )

    try:
        enrolled = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return EnrolClientPayload(errors=user_errors(error))
    return EnrolClientPayload(enrolment=enrolled.enrolment, link=enrolled.link)  # type: ignore[arg-type]
