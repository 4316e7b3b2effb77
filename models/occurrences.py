"""Occurrences of programmes and the units attached to them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import and_, delete, exists, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.catalogue import NAME_MAX_LENGTH, clean_code, load_units
from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource
from models.errors import DomainError, ErrorCode
from models.money import clean_amount
from models.outbox import request_roll_up
from models.references import describe_enrolment, global_id
from models.tables import (
    EnrolledUnit,
    EnrolledUnitHistory,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
    Programme,
    ProgrammeUnit,
    Unit,
)
from models.validation import check_date_range, clean_optional_text, clean_text

# The prefix of unlink_reason when a link is closed because the two occurrences no longer
# share a unit; the reconciler uses the same cause name.
NO_SHARED_UNITS = "NO_SHARED_UNITS"


async def create_occurrence(
    session: AsyncSession,
    *,
    programme_id: int,
    code: str,
    name: str,
    kind: OccurrenceKind,
    start_date: date,
    end_date: date,
    unit_ids: Sequence[int] | None,
    fee: Decimal | None,
    location: str | None,
) -> Occurrence:
    """Create an occurrence of a programme, with the programme's units unless others are given.

    Explicit units need not belong to the programme and an ADMINISTRATIVE occurrence need not
    carry all of them: a cohort takes its own electives, possibly imported from another
    qualification, and programmes cannot gain units after they are created.
    """
    code = clean_code(code)
    name = clean_text(name, field="name", max_length=NAME_MAX_LENGTH)
    location = clean_optional_text(location, field="location", max_length=200)
    check_date_range(start_date, end_date)
    if fee is not None:
        if kind is OccurrenceKind.SESSION:
            raise DomainError(
                ErrorCode.PAYMENTS_NOT_ALLOWED_ON_SESSION,
                f"A SESSION occurrence carries no money, so it cannot have the fee {fee}; put "
                "the fee on the ADMINISTRATIVE occurrence of the qualification.",
                field="fee",
            )
        fee = clean_amount(fee, field="fee", allow_zero=True)

    programme = await session.get(Programme, programme_id)
    if programme is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"programmeId {global_id('Programme', programme_id)} is not a programme.",
            field="programmeId",
        )
    if unit_ids is None:
        unit_ids = (
            await session.scalars(
                select(ProgrammeUnit.unit_id)
                .where(ProgrammeUnit.programme_id == programme.id)
                .order_by(ProgrammeUnit.position)
            )
        ).all()
    units = await load_units(session, unit_ids, field="unitIds")

    existing = await session.scalar(select(Occurrence.id).where(Occurrence.code == code))
    if existing is not None:
        raise DomainError(
            ErrorCode.DUPLICATE_CODE,
            f"An occurrence with code {code} already exists; choose another code.",
            field="code",
        )

    occurrence = Occurrence(
        programme_id=programme.id,
        code=code,
        name=name,
        kind=kind,
        start_date=start_date,
        end_date=end_date,
        location=location,
        fee=fee,
    )
    session.add(occurrence)
    await session.flush()
    session.add_all(
        OccurrenceUnit(occurrence_id=occurrence.id, unit_id=unit.id, position=position)
        for position, unit in enumerate(units)
    )
    await session.flush()
    return occurrence


async def lock_occurrence(session: AsyncSession, occurrence_id: int, *, field: str) -> Occurrence:
    """Load the occurrence and lock its row until the transaction ends.

    Changes to an occurrence's units take this lock so that two of them never interleave.
    Enrolling locks the same row FOR SHARE before reading the units, so a new enrolment
    either waits for this change or is already visible to it, and never misses a unit.
    """
    occurrence = await session.scalar(
        select(Occurrence)
        .where(Occurrence.id == occurrence_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if occurrence is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id('Occurrence', occurrence_id)} is not an occurrence.",
            field=field,
        )
    return occurrence


async def add_occurrence_units(
    session: AsyncSession, *, occurrence_id: int, unit_ids: Sequence[int]
) -> Occurrence:
    """Attach units to an occurrence and give its active enrolments an unrecorded result for each.

    Units already attached are left as they are, so sending the same request twice is safe.
    """
    occurrence = await lock_occurrence(session, occurrence_id, field="occurrenceId")
    units = await load_units(session, unit_ids, field="unitIds")

    attached = set(
        (
            await session.scalars(
                select(OccurrenceUnit.unit_id).where(OccurrenceUnit.occurrence_id == occurrence.id)
            )
        ).all()
    )
    new_unit_ids = [unit.id for unit in units if unit.id not in attached]
    if not new_unit_ids:
        return occurrence

    last_position = await session.scalar(
        select(func.coalesce(func.max(OccurrenceUnit.position), -1)).where(
            OccurrenceUnit.occurrence_id == occurrence.id
        )
    )
    assert last_position is not None
    session.add_all(
        OccurrenceUnit(occurrence_id=occurrence.id, unit_id=unit_id, position=last_position + 1 + n)
        for n, unit_id in enumerate(new_unit_ids)
    )
    await session.flush()

    # Administrative results are only ever derived from the linked sessions.
    source = (
        ResultSource.ROLLED_UP
        if occurrence.kind is OccurrenceKind.ADMINISTRATIVE
        else ResultSource.RECORDED
    )
    live = (
        Enrolment.occurrence_id == occurrence.id,
        Enrolment.status == EnrolmentStatus.ACTIVE,
        Enrolment.deleted_at.is_(None),
    )
    # A row can survive an earlier removal of the same unit when it has history. Such a row is
    # shown again instead of being duplicated.
    await session.execute(
        insert(EnrolledUnit).from_select(
            ["enrolment_id", "unit_id", "source"],
            select(Enrolment.id, Unit.id, literal(source.value))
            .select_from(Enrolment)
            .join(Unit, Unit.id.in_(new_unit_ids))
            .where(*live)
            .where(
                ~exists().where(
                    EnrolledUnit.enrolment_id == Enrolment.id, EnrolledUnit.unit_id == Unit.id
                )
            ),
        )
    )

    if occurrence.kind is OccurrenceKind.ADMINISTRATIVE:
        # Linked sessions may already hold results for the new units.
        administrative_ids = (await session.scalars(select(Enrolment.id).where(*live))).all()
        await request_roll_up(session, administrative_ids, reason="occurrence_units_added")
    return occurrence


async def remove_occurrence_unit(
    session: AsyncSession, *, occurrence_id: int, unit_id: int
) -> Occurrence:
    """Detach a unit from an occurrence, unless an enrolment has an outcome recorded for it.

    The unrecorded results of the unit go with it. A link that no longer shares any unit is
    closed with the reason NO_SHARED_UNITS, and the administrative enrolments involved are
    rolled up again. Removing a unit that is not attached changes nothing.
    """
    occurrence = await lock_occurrence(session, occurrence_id, field="occurrenceId")
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"unitId {global_id('Unit', unit_id)} is not a unit.",
            field="unitId",
        )
    attached = (
        await session.scalars(
            select(OccurrenceUnit.unit_id).where(OccurrenceUnit.occurrence_id == occurrence.id)
        )
    ).all()
    if unit.id not in attached:
        return occurrence
    if len(attached) == 1:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Unit {unit.code} is the only unit of occurrence {occurrence.code}, and an "
            "occurrence needs at least one; add the replacement unit first.",
            field="unitId",
        )

    await _reject_recorded_outcomes(session, occurrence, unit)

    await session.execute(
        delete(OccurrenceUnit).where(
            OccurrenceUnit.occurrence_id == occurrence.id, OccurrenceUnit.unit_id == unit.id
        )
    )
    # Deleted enrolments keep their rows as history, and results of a unit the occurrence no
    # longer carries are not shown. A row referred to by history or by a rolled-up result is
    # kept too, because those foreign keys need it.
    source_alias = aliased(EnrolledUnit)
    await session.execute(
        delete(EnrolledUnit)
        .where(
            EnrolledUnit.unit_id == unit.id,
            EnrolledUnit.outcome.is_(None),
            EnrolledUnit.enrolment_id.in_(
                select(Enrolment.id).where(
                    Enrolment.occurrence_id == occurrence.id, Enrolment.deleted_at.is_(None)
                )
            ),
            ~exists().where(EnrolledUnitHistory.enrolled_unit_id == EnrolledUnit.id),
            ~exists().where(source_alias.source_enrolled_unit_id == EnrolledUnit.id),
        )
        .execution_options(synchronize_session=False)
    )

    closed_administrative_ids = await _close_links_without_shared_units(session, occurrence, unit)
    administrative_ids = set(closed_administrative_ids)
    if occurrence.kind is OccurrenceKind.SESSION:
        administrative_ids.update(
            (
                await session.scalars(
                    select(EnrolmentLink.administrative_enrolment_id)
                    .join(Enrolment, Enrolment.id == EnrolmentLink.session_enrolment_id)
                    .where(
                        Enrolment.occurrence_id == occurrence.id,
                        EnrolmentLink.unlinked_at.is_(None),
                    )
                )
            ).all()
        )
    await request_roll_up(session, administrative_ids, reason="occurrence_unit_removed")
    return occurrence


async def _reject_recorded_outcomes(
    session: AsyncSession, occurrence: Occurrence, unit: Unit
) -> None:
    recorded = (
        select(EnrolledUnit.enrolment_id)
        .join(Enrolment, Enrolment.id == EnrolledUnit.enrolment_id)
        .where(
            Enrolment.occurrence_id == occurrence.id,
            Enrolment.deleted_at.is_(None),
            EnrolledUnit.unit_id == unit.id,
            EnrolledUnit.outcome.is_not(None),
        )
    )
    # One statement, so the count and the example come from one snapshot. Read apart, a
    # roll-up that commits in between can clear the only outcome and leave no example.
    first = (
        await session.execute(
            recorded.add_columns(func.count().over()).order_by(EnrolledUnit.enrolment_id).limit(1)
        )
    ).first()
    if first is None:
        return
    example_id, count = first
    example = await describe_enrolment(session, example_id)
    enrolments = "enrolment has" if count == 1 else "enrolments have"
    raise DomainError(
        ErrorCode.UNIT_HAS_RESULTS,
        f"Unit {unit.code} stays in occurrence {occurrence.code}: {count} {enrolments} an "
        f"outcome recorded for it, e.g. {example}. Results are never discarded, so a unit "
        "with outcomes cannot be removed.",
        field="unitId",
    )


async def _close_links_without_shared_units(
    session: AsyncSession, occurrence: Occurrence, unit: Unit
) -> list[int]:
    """Close the active links of the occurrence's enrolments that share no unit any more.

    Return the administrative enrolment ids of the closed links.
    """
    administrative = aliased(Enrolment)
    session_side = aliased(Enrolment)
    administrative_unit = aliased(OccurrenceUnit)
    session_unit = aliased(OccurrenceUnit)
    shares_a_unit = (
        select(session_unit.unit_id)
        .join(
            administrative_unit,
            and_(
                administrative_unit.occurrence_id == administrative.occurrence_id,
                administrative_unit.unit_id == session_unit.unit_id,
            ),
        )
        .where(session_unit.occurrence_id == session_side.occurrence_id)
        .exists()
    )
    orphaned = (
        select(EnrolmentLink.id)
        .join(administrative, administrative.id == EnrolmentLink.administrative_enrolment_id)
        .join(session_side, session_side.id == EnrolmentLink.session_enrolment_id)
        .where(
            EnrolmentLink.unlinked_at.is_(None),
            (administrative.occurrence_id == occurrence.id)
            | (session_side.occurrence_id == occurrence.id),
            ~shares_a_unit,
        )
    )
    reason = (
        f"{NO_SHARED_UNITS}: unit {unit.code} was removed from occurrence {occurrence.code}, "
        "the last unit the two occurrences shared"
    )
    closed = await session.scalars(
        update(EnrolmentLink)
        .where(EnrolmentLink.id.in_(orphaned))
        .values(unlinked_at=func.now(), unlink_reason=reason[:200])
        .returning(EnrolmentLink.administrative_enrolment_id)
        .execution_options(synchronize_session=False)
    )
    return list(closed.all())
