"""createOccurrence: schedule one run of a programme."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import occurrences, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Occurrence, OccurrenceKind


@strawberry.input
class CreateOccurrenceInput:
    programme_id: strawberry.ID
    code: str = strawberry.field(description="Unique code; at most 30 characters.")
    name: str
    kind: OccurrenceKind  # type: ignore[valid-type]
    start_date: date
    end_date: date = strawberry.field(description="On or after startDate.")
    unit_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="The units attached, each once; the programme's units when left out.",
    )
    fee: Decimal | None = strawberry.field(
        default=None,
        description="In AUD, whole cents; ADMINISTRATIVE and STANDARD occurrences only. Each "
        "enrolment is charged it.",
    )
    location: str | None = None


@strawberry.type
class CreateOccurrencePayload:
    occurrence: Occurrence | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_occurrence(info: InfoT, input: CreateOccurrenceInput) -> CreateOccurrencePayload:
    async def operation(session: AsyncSession) -> tables.Occurrence:
        programme_id = decode_id(input.programme_id, "Programme", field="programmeId")
        unit_ids = (
            None
            if input.unit_ids is None
            else [decode_id(unit_id, "Unit", field="unitIds") for unit_id in input.unit_ids]
        )
        return await occurrences.create_occurrence(
            session,
            programme_id=programme_id,
            code=input.code,
            name=input.name,
            kind=input.kind,
            start_date=input.start_date,
            end_date=input.end_date,
            unit_ids=unit_ids,
            fee=input.fee,
            location=input.location,
        )

    try:
        occurrence = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return CreateOccurrencePayload(errors=user_errors(error))
    return CreateOccurrencePayload(occurrence=occurrence)  # type: ignore[arg-type]
