"""Units of competency, programmes and partners."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError, ErrorCode
from models.tables import Partner, Programme, ProgrammeUnit, Unit
from models.validation import clean_text, clean_unit_code

# Programme, occurrence and partner codes share the width of their columns.
CODE_MAX_LENGTH = 30
NAME_MAX_LENGTH = 200


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


def clean_code(value: str, *, field: str = "code") -> str:
    """Return a programme, occurrence or partner code trimmed and NFC-normalised.

    Codes keep the case they were typed in and are compared exactly, as the unique index does.
    """
    return clean_text(value, field=field, max_length=CODE_MAX_LENGTH)


async def load_units(session: AsyncSession, unit_ids: Sequence[int], *, field: str) -> list[Unit]:
    """Return the units in the order given, or raise naming the list position at fault.

    The list must name at least one unit, and each unit once.
    """
    if not unit_ids:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{field} is empty; name at least one unit.", field=field
        )
    rows = await session.scalars(select(Unit).where(Unit.id.in_(set(unit_ids))))
    by_id = {unit.id: unit for unit in rows}
    first_position: dict[int, int] = {}
    for position, unit_id in enumerate(unit_ids):
        unit = by_id.get(unit_id)
        if unit is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                f"{field}[{position}] is not the id of an existing unit; take unit ids from the "
                "units query or createUnit.",
                field=field,
            )
        if unit_id in first_position:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"{field}[{first_position[unit_id]}] and {field}[{position}] both name unit "
                f"{unit.code}; name each unit once.",
                field=field,
            )
        first_position[unit_id] = position
    return [by_id[unit_id] for unit_id in unit_ids]


def _same_words(left: str, right: str) -> bool:
    return left.strip().casefold() == right.strip().casefold()


async def create_programme(
    session: AsyncSession, *, code: str, name: str, unit_ids: Sequence[int]
) -> Programme:
    """Create a programme delivering ``unit_ids`` in the order given.

    Its name must differ from the title of each of its units (case and surrounding spaces
    ignored): a session's programme is named after what it delivers, so that staff do not
    mistake the programme for the unit.
    """
    code = clean_code(code)
    name = clean_text(name, field="name", max_length=NAME_MAX_LENGTH)
    units = await load_units(session, unit_ids, field="unitIds")

    for unit in units:
        if _same_words(name, unit.title):
            raise DomainError(
                ErrorCode.PROGRAMME_NAME_EQUALS_UNIT_TITLE,
                f"The programme name {name!r} is the title of its unit {unit.code}; name the "
                "programme after what it delivers (e.g. with the session's theme or number) so "
                "that it is not mistaken for the unit.",
                field="name",
            )

    existing = await session.scalar(select(Programme.id).where(Programme.code == code))
    if existing is not None:
        raise DomainError(
            ErrorCode.DUPLICATE_CODE,
            f"A programme with code {code} already exists; choose another code.",
            field="code",
        )

    programme = Programme(code=code, name=name)
    session.add(programme)
    await session.flush()
    session.add_all(
        ProgrammeUnit(programme_id=programme.id, unit_id=unit.id, position=position)
        for position, unit in enumerate(units)
    )
    await session.flush()
    return programme


async def create_partner(session: AsyncSession, *, code: str, name: str) -> Partner:
    """Create a partner organisation, such as the employer that follows its apprentices."""
    code = clean_code(code)
    name = clean_text(name, field="name", max_length=NAME_MAX_LENGTH)

    # ON CONFLICT DO NOTHING lets the unique index decide between concurrent requests: the
    # loser waits for the winner's commit and then inserts nothing, instead of failing with a
    # unique violation that no typed error maps.
    partner_id = await session.scalar(
        insert(Partner)
        .values(code=code, name=name)
        .on_conflict_do_nothing(index_elements=[Partner.code])
        .returning(Partner.id)
    )
    if partner_id is None:
        raise DomainError(
            ErrorCode.DUPLICATE_CODE,
            f"A partner with code {code} already exists; choose another code.",
            field="code",
        )
    partner = await session.get_one(Partner, partner_id)
    return partner
