"""addOccurrenceUnits: attach more units to an occurrence and to its active enrolments."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import occurrences, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Occurrence


@strawberry.input
class AddOccurrenceUnitsInput:
    occurrence_id: strawberry.ID
    unit_ids: list[strawberry.ID] = strawberry.field(
        description="At least one unit, each once; units already attached are left as they are."
    )


@strawberry.type
class AddOccurrenceUnitsPayload:
    occurrence: Occurrence | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def add_occurrence_units(
    info: InfoT, input: AddOccurrenceUnitsInput
) -> AddOccurrenceUnitsPayload:
    async def operation(session: AsyncSession) -> tables.Occurrence:
        occurrence_id = decode_id(input.occurrence_id, "Occurrence", field="occurrenceId")
        unit_ids = [decode_id(unit_id, "Unit", field="unitIds") for unit_id in input.unit_ids]
        return await occurrences.add_occurrence_units(
            session, occurrence_id=occurrence_id, unit_ids=unit_ids
        )

    try:
        occurrence = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return AddOccurrenceUnitsPayload(errors=user_errors(error))
    return AddOccurrenceUnitsPayload(occurrence=occurrence)  # type: ignore[arg-type]
