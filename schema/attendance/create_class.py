"""createClass: timetable a class of a session or standard occurrence."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import attendance, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Class, InfoT


@strawberry.input
class CreateClassInput:
    occurrence_id: strawberry.ID = strawberry.field(description="A SESSION or STANDARD occurrence.")
    starts_at: datetime = strawberry.field(
        description="With a UTC offset, e.g. 2026-03-02T09:00:00+11:00; its date in that "
        "offset must fall within the occurrence's dates."
    )
    ends_at: datetime = strawberry.field(description="With a UTC offset; after startsAt.")
    location: str | None = None


@strawberry.type
class CreateClassPayload:
    class_: Class | None = strawberry.field(default=None, name="class")
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_class(info: InfoT, input: CreateClassInput) -> CreateClassPayload:
    async def operation(session: AsyncSession) -> tables.Class:
        occurrence_id = decode_id(input.occurrence_id, "Occurrence", field="occurrenceId")
        return await attendance.create_class(
            session,
            occurrence_id=occurrence_id,
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            location=input.location,
        )

    try:
        class_ = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return CreateClassPayload(errors=user_errors(error))
    return CreateClassPayload(class_=class_)  # type: ignore[arg-type]
