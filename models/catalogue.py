"""Units of competency and programmes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError, ErrorCode
from models.tables import Unit
from models.validation import clean_text, clean_unit_code


async def create_unit(
    session: AsyncSession, *, code: str, title: str, nominal_hours: int | None
) -> Unit:
    code = clean_unit_code(code)
    title = clean_text(title, field="title", max_length=200)
    if nominal_hours is not None and not 0 <= nominal_hours <= 10_000:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"nominalHours {nominal_hours} is outside 0 to 10000.",
            field="nominalHours",
        )
    existing = await session.scalar(select(Unit.id).where(Unit.code == code))
    if existing is not None:
        raise DomainError(
            ErrorCode.DUPLICATE_CODE, f"A unit with code {code} already exists.", field="code"
        )
    unit = Unit(code=code, title=title, nominal_hours=nominal_hours)
    session.add(unit)
    await session.flush()
    return unit
