"""Money under enrolments: amounts in AUD, and payments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import OccurrenceKind
from models.errors import DomainError, ErrorCode
from models.references import describe_enrolment, load_enrolment_with_occurrence
from models.tables import EnrolmentLink, Payment
from models.validation import clean_optional_text

CENT = Decimal("0.01")
# The largest value a numeric(12,2) column stores.
MAX_AMOUNT = Decimal("9999999999.99")


def clean_amount(value: Decimal, *, field: str, allow_zero: bool = False) -> Decimal:
    """Return an amount in AUD with exactly two decimal places, or raise INVALID_INPUT.

    Amounts are never rounded: a value with more than two significant decimal places is an
    error, because silently dropping part of a cent would change what was paid.
    """
    if not value.is_finite():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value} is not a finite amount; give dollars and cents, e.g. 1250.00.",
            field=field,
        )
    lowest = "0" if allow_zero else "0.01"
    if value < 0 or (value == 0 and not allow_zero):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value} is too small; the smallest amount allowed is {lowest}.",
            field=field,
        )
    if value > MAX_AMOUNT:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value} is too large; the largest amount allowed is {MAX_AMOUNT:,}.",
            field=field,
        )
    cents = value.quantize(CENT)
    if cents != value:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value} has more than two decimal places; give whole cents.",
            field=field,
        )
    return cents


async def record_payment(
    session: AsyncSession,
    *,
    enrolment_id: int,
    amount: Decimal,
    paid_on: date,
    method: str | None,
    reference: str | None,
    recorded_by: str | None,
) -> Payment:
    """Record a payment under an administrative or standard enrolment.

    A session carries no money: a payment for a session is recorded on the administrative
    enrolment the session enrolment is linked to, which the error names.
    """
    amount = clean_amount(amount, field="amount")
    method = clean_optional_text(method, field="method", max_length=50)
    reference = clean_optional_text(reference, field="reference", max_length=100)

    enrolment, occurrence = await load_enrolment_with_occurrence(session, enrolment_id)
    kind = occurrence.kind
    described = await describe_enrolment(session, enrolment.id)
    if enrolment.deleted_at is not None:
        raise DomainError(
            ErrorCode.ENROLMENT_NOT_ACTIVE,
            f"The {described} was deleted; record the payment on a current enrolment.",
            field="enrolmentId",
        )
    if kind is OccurrenceKind.SESSION:
        raise DomainError(
            ErrorCode.PAYMENTS_NOT_ALLOWED_ON_SESSION,
            f"The {described} is in a SESSION occurrence, and sessions carry no money; "
            + await _where_to_pay(session, enrolment.id),
            field="enrolmentId",
        )

    payment = Payment(
        enrolment_id=enrolment.id,
        amount=amount,
        paid_on=paid_on,
        method=method,
        reference=reference,
        recorded_by=recorded_by,
    )
    session.add(payment)
    await session.flush()
    return payment


async def _where_to_pay(session: AsyncSession, session_enrolment_id: int) -> str:
    administrative_id = await session.scalar(
        select(EnrolmentLink.administrative_enrolment_id).where(
            EnrolmentLink.session_enrolment_id == session_enrolment_id,
            EnrolmentLink.unlinked_at.is_(None),
        )
    )
    if administrative_id is None:
        return (
            "record the payment on the client's enrolment in the ADMINISTRATIVE occurrence of "
            "the qualification."
        )
    described = await describe_enrolment(session, administrative_id)
    return f"record the payment on the linked administrative {described}."
