"""createClient: record a learner."""

from __future__ import annotations

from datetime import date

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import clients, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Client, InfoT


@strawberry.input
class CreateClientInput:
    client_code: str = strawberry.field(description="Unique; at most 10 characters.")
    given_name: str | None = None
    surname: str
    date_of_birth: date | None = strawberry.field(
        default=None, description="In the past and not before 1900-01-01."
    )
    email: str | None = None
    usi: str | None = strawberry.field(
        default=None,
        description="Unique Student Identifier: 10 characters whose last is a check character.",
    )
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="The partner following this client, e.g. their employer."
    )


@strawberry.type
class CreateClientPayload:
    client: Client | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_client(info: InfoT, input: CreateClientInput) -> CreateClientPayload:
    async def operation(session: AsyncSession) -> tables.Client:
        partner_id = (
            None
            if input.partner_id is None
            else decode_id(input.partner_id, "Partner", field="partnerId")
        )
        return await clients.create_client(
            session,
            client_code=input.client_code,
            given_name=input.given_name,
            surname=input.surname,
            date_of_birth=input.date_of_birth,
            email=input.email,
            usi=input.usi,
            partner_id=partner_id,
        )

    try:
        client = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return CreateClientPayload(errors=user_errors(error))
    return CreateClientPayload(client=client)  # type: ignore[arg-type]
