"""recordAttendance: mark an enrolled client present, absent or otherwise at a class."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import attendance, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.types import Attendance, InfoT


@strawberry.input
class RecordAttendanceInput:
    class_id: strawberry.ID
    enrolment_id: strawberry.ID = strawberry.field(
        description="A SESSION or STANDARD enrolment in the class's occurrence."
    )
    attendance_type: str = strawberry.field(
        description="The code of an attendance type, e.g. PRESENT, ABSENT or SICK."
    )
    notes: str | None = None


@strawberry.type
class RecordAttendancePayload:
    attendance: Attendance | None = strawberry.field(
        default=None,
        description="Recording again for the same class and enrolment updates this attendance.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def record_attendance(info: InfoT, input: RecordAttendanceInput) -> RecordAttendancePayload:
    recorded_by = info.context.caller.name

    async def operation(session: AsyncSession) -> tables.Attendance:
        class_id = decode_id(input.class_id, "Class", field="classId")
        enrolment_id = decode_id(input.enrolment_id, "Enrolment", field="enrolmentId")
        return await attendance.record_attendance(
            session,
            class_id=class_id,
            enrolment_id=enrolment_id,
            attendance_type=input.attendance_type,
            notes=input.notes,
            recorded_by=recorded_by,
        )

    try:
        recorded = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return RecordAttendancePayload(errors=user_errors(error))
    return RecordAttendancePayload(attendance=recorded)  # type: ignore[arg-type]
