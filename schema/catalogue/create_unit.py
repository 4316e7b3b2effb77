"""createUnit: add a unit of competency."""

from __future__ import annotations

import strawberry

from models import catalogue
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.types import InfoT, Unit


@strawberry.input
class CreateUnitInput:
    code: str = strawberry.field(
        description="National code: up to 12 upper-case letters and digits."
    )
    title: str
    nominal_hours: int | None = None


@strawberry.type
class CreateUnitPayload:
    unit: Unit | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_unit(info: InfoT, input: CreateUnitInput) -> CreateUnitPayload:
    try:
        unit = await info.context.write(
            lambda session: catalogue.create_unit(
                session, code=input.code, title=input.title, nominal_hours=input.nominal_hours
            )
        )
    except (DomainError, DomainErrors) as error:
        return CreateUnitPayload(errors=user_errors(error))
    return CreateUnitPayload(unit=unit)  # type: ignore[arg-type]
