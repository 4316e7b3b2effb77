"""recordPayment: record money paid under an administrative or standard enrolment."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import money, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import InfoT, Payment


@strawberry.input
class RecordPaymentInput:
    enrolment_id: strawberry.ID = strawberry.field(
        description="An ADMINISTRATIVE or STANDARD enrolment; sessions carry no money."
    )
    amount: Decimal = strawberry.field(
        description="In AUD, more than 0, whole cents, at most 9999999999.99."
    )
    paid_on: date
    method: str | None = strawberry.field(default=None, description="e.g. card, EFT, cash.")
    reference: str | None = strawberry.field(
        default=None, description="e.g. a receipt or invoice number."
    )


@strawberry.type
class RecordPaymentPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def record_payment(info: InfoT, input: RecordPaymentInput) -> RecordPaymentPayload:
    recorded_by = info.context.caller.name

    async def operation(session: AsyncSession) -> tables.Payment:
        enrolment_id = decode_id(input.enrolment_id, "Enrolment", field="enrolmentId")
        return await money.record_payment(
            session,
            enrolment_id=enrolment_id,
            amount=input.amount,
            paid_on=input.paid_on,
            method=input.method,
            reference=input.reference,
            recorded_by=recorded_by,
        )

    try:
        payment = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return RecordPaymentPayload(errors=user_errors(error))
    return RecordPaymentPayload(payment=payment)  # type: ignore[arg-type]
