"""Classes of session and standard occurrences, and attendance at them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import EnrolmentStatus, OccurrenceKind
from models.errors import DomainError, ErrorCode
from models.references import describe_enrolment, global_id, load_enrolment_with_occurrence
from models.tables import Attendance, AttendanceType, Class, Enrolment, Occurrence
from models.validation import clean_optional_text

NOTES_MAX_LENGTH = 2000


def _check_aware(value: datetime, *, field: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} {value.isoformat()} has no UTC offset; send the time with the offset of "
            "the place where the class runs, e.g. 2026-03-02T09:00:00+11:00.",
            field=field,
        )


async def create_class(
    session: AsyncSession,
    *,
    occurrence_id: int,
    starts_at: datetime,
    ends_at: datetime,
    location: str | None,
) -> Class:
    """Timetable a class of a SESSION or STANDARD occurrence.

    The class must fall inside the occurrence's dates. Those are calendar dates without a
    time zone, so each instant is compared by its date in its own UTC offset: a class sent as
    2026-03-02T09:00+11:00 is on 2 March, although in UTC it starts on 1 March.
    """
    _check_aware(starts_at, field="startsAt")
    _check_aware(ends_at, field="endsAt")
    if starts_at >= ends_at:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"startsAt {starts_at.isoformat()} is not before endsAt {ends_at.isoformat()}; a "
            "class must end after it starts.",
            field="endsAt",
        )
    location = clean_optional_text(location, field="location", max_length=200)

    occurrence = await session.get(Occurrence, occurrence_id)
    if occurrence is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"occurrenceId {global_id('Occurrence', occurrence_id)} is not an occurrence.",
            field="occurrenceId",
        )
    if occurrence.kind is OccurrenceKind.ADMINISTRATIVE:
        raise DomainError(
            ErrorCode.WRONG_OCCURRENCE_KIND,
            f"Occurrence {occurrence.code} is ADMINISTRATIVE; classes belong to the SESSION "
            "occurrences that deliver its units, so timetable the class there.",
            field="occurrenceId",
        )
    for value, field in ((starts_at, "startsAt"), (ends_at, "endsAt")):
        local_date = value.date()
        if not occurrence.start_date <= local_date <= occurrence.end_date:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"{field} {value.isoformat()} is on {local_date.isoformat()}, outside occurrence "
                f"{occurrence.code}, which runs from {occurrence.start_date.isoformat()} to "
                f"{occurrence.end_date.isoformat()}.",
                field=field,
            )

    class_ = Class(
        occurrence_id=occurrence.id, starts_at=starts_at, ends_at=ends_at, location=location
    )
    session.add(class_)
    await session.flush()
    return class_


async def record_attendance(
    session: AsyncSession,
    *,
    class_id: int,
    enrolment_id: int,
    attendance_type: str,
    notes: str | None,
    recorded_by: str | None,
) -> Attendance:
    """Record whether an enrolled client attended a class.

    Recording again for the same class and enrolment replaces the type and notes and keeps
    the same attendance, so staff can correct a roll, such as ABSENT to SICK once a medical
    certificate arrives.
    """
    notes = clean_optional_text(notes, field="notes", max_length=NOTES_MAX_LENGTH, multiline=True)
    kind = await _attendance_type(session, attendance_type)

    enrolment, occurrence = await load_enrolment_with_occurrence(session, enrolment_id)
    class_ = await session.get(Class, class_id)
    if class_ is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"classId {global_id('Class', class_id)} is not a class.",
            field="classId",
        )

    described = await describe_enrolment(session, enrolment.id)
    if occurrence.kind is OccurrenceKind.ADMINISTRATIVE:
        raise DomainError(
            ErrorCode.ATTENDANCE_NOT_ALLOWED_ON_ADMINISTRATIVE,
            f"The {described} is in an ADMINISTRATIVE occurrence, where attendance is not "
            + await _where_to_record(session, enrolment, class_),
            field="enrolmentId",
        )
    if enrolment.deleted_at is not None:
        raise DomainError(
            ErrorCode.ENROLMENT_NOT_ACTIVE,
            f"The {described} was deleted; attendance is recorded on current enrolments only.",
            field="enrolmentId",
        )
    if enrolment.status is EnrolmentStatus.CANCELLED:
        raise DomainError(
            ErrorCode.ENROLMENT_NOT_ACTIVE,
            f"The {described} is CANCELLED; attendance is recorded on enrolments that were "
            "taken up.",
            field="enrolmentId",
        )
    if class_.occurrence_id != enrolment.occurrence_id:
        class_occurrence = await session.get_one(Occurrence, class_.occurrence_id)
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Class {global_id('Class', class_.id)} belongs to occurrence "
            f"{class_occurrence.code}, not to occurrence {occurrence.code} of the {described}; "
            "pick a class of the enrolment's own occurrence.",
            field="classId",
        )

    # The unique index on (class, enrolment) decides between concurrent recordings: the later
    # one waits for the earlier to commit and then overwrites it.
    attendance_id = await session.scalar(
        insert(Attendance)
        .values(
            class_id=class_.id,
            enrolment_id=enrolment.id,
            attendance_type_id=kind.id,
            notes=notes,
            recorded_by=recorded_by,
        )
        .on_conflict_do_update(
            index_elements=[Attendance.class_id, Attendance.enrolment_id],
            set_={
                "attendance_type_id": kind.id,
                "notes": notes,
                "recorded_by": recorded_by,
                "recorded_at": func.now(),
            },
        )
        .returning(Attendance.id)
    )
    assert attendance_id is not None
    attendance = await session.scalar(
        select(Attendance)
        .where(Attendance.id == attendance_id)
        .execution_options(populate_existing=True)
    )
    assert attendance is not None
    return attendance


async def _attendance_type(session: AsyncSession, code: str) -> AttendanceType:
    cleaned = code.strip().upper()
    kinds = (await session.scalars(select(AttendanceType).order_by(AttendanceType.id))).all()
    for kind in kinds:
        if kind.code == cleaned:
            return kind
    valid = ", ".join(kind.code for kind in kinds)
    raise DomainError(
        ErrorCode.INVALID_INPUT,
        f"attendanceType {code!r} is not an attendance type; use one of {valid}.",
        field="attendanceType",
    )


async def _where_to_record(session: AsyncSession, enrolment: Enrolment, class_: Class) -> str:
    """Return the end of the error sentence: where this client's attendance is recorded."""
    session_enrolment_id = await session.scalar(
        select(Enrolment.id).where(
            Enrolment.client_id == enrolment.client_id,
            Enrolment.occurrence_id == class_.occurrence_id,
            Enrolment.deleted_at.is_(None),
            Enrolment.status != EnrolmentStatus.CANCELLED,
        )
    )
    if session_enrolment_id is None:
        return (
            "recorded; record it on the client's linked enrolment in the session occurrence "
            "that the class belongs to."
        )
    described = await describe_enrolment(session, session_enrolment_id)
    return f"recorded; record it on the client's session {described}."
