"""createProgramme: define what is delivered, as a list of units."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import catalogue, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Programme


@strawberry.input
class CreateProgrammeInput:
    code: str = strawberry.field(description="Unique code, e.g. BSB50420; at most 30 characters.")
    name: str = strawberry.field(
        description="What the programme delivers; must differ from the title of each unit."
    )
    unit_ids: list[strawberry.ID] = strawberry.field(
        description="At least one unit, each once, in the order they are delivered."
    )


@strawberry.type
class CreateProgrammePayload:
    programme: Programme | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_programme(info: InfoT, input: CreateProgrammeInput) -> CreateProgrammePayload:
    async def operation(session: AsyncSession) -> tables.Programme:
        unit_ids = [decode_id(unit_id, "Unit", field="unitIds") for unit_id in input.unit_ids]
        return await catalogue.create_programme(
            session, code=input.code, name=input.name, unit_ids=unit_ids
        )

    try:
        programme = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return CreateProgrammePayload(errors=user_errors(error))
    return CreateProgrammePayload(programme=programme)  # type: ignore[arg-type]
