"""createPartner: add an organisation that follows some clients, such as an employer."""

from __future__ import annotations

import strawberry

from models import catalogue
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.types import InfoT, Partner


@strawberry.input
class CreatePartnerInput:
    code: str = strawberry.field(description="Unique code; at most 30 characters.")
    name: str


@strawberry.type
class CreatePartnerPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_partner(info: InfoT, input: CreatePartnerInput) -> CreatePartnerPayload:
    try:
        partner = await info.context.write(
            lambda session: catalogue.create_partner(session, code=input.code, name=input.name)
        )
    except (DomainError, DomainErrors) as error:
        return CreatePartnerPayload(errors=user_errors(error))
    return CreatePartnerPayload(partner=partner)  # type: ignore[arg-type]
