"""removeOccurrenceUnit: detach a unit that no enrolment has an outcome for."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import occurrences, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Occurrence


@strawberry.input
class RemoveOccurrenceUnitInput:
    occurrence_id: strawberry.ID
    unit_id: strawberry.ID = strawberry.field(
        description="Rejected while an enrolment has an outcome for it; a unit that is not "
        "attached is left as it is."
    )


@strawberry.type
class RemoveOccurrenceUnitPayload:
    occurrence: Occurrence | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def remove_occurrence_unit(
    info: InfoT, input: RemoveOccurrenceUnitInput
) -> RemoveOccurrenceUnitPayload:
    async def operation(session: AsyncSession) -> tables.Occurrence:
        occurrence_id = decode_id(input.occurrence_id, "Occurrence", field="occurrenceId")
        unit_id = decode_id(input.unit_id, "Unit", field="unitId")
        return await occurrences.remove_occurrence_unit(
            session, occurrence_id=occurrence_id, unit_id=unit_id
        )

    try:
        occurrence = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return RemoveOccurrenceUnitPayload(errors=user_errors(error))
    return RemoveOccurrenceUnitPayload(occurrence=occurrence)  # type: ignore[arg-type]
