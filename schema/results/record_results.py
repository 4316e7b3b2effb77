"""recordResults: record one unit's results for many enrolments of one occurrence at once."""

from __future__ import annotations

from datetime import date

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import results, tables
from models.errors import DomainError, DomainErrors
from schema.errors import UserError, user_errors
from schema.ids import decode_id
from schema.results.record_result import DATES_DESCRIPTION
from schema.types import InfoT, Outcome, Result


@strawberry.input
class ResultEntryInput:
    enrolment_id: strawberry.ID
    outcome: Outcome  # type: ignore[valid-type]
    start_date: date | None = strawberry.field(default=None, description=DATES_DESCRIPTION)
    end_date: date | None = strawberry.field(default=None, description=DATES_DESCRIPTION)


@strawberry.input
class RecordResultsInput:
    occurrence_id: strawberry.ID
    unit_id: strawberry.ID
    entries: list[ResultEntryInput] = strawberry.field(
        description=f"One entry per enrolment of the occurrence, at most {results.MAX_ENTRIES}."
    )


@strawberry.type
class RecordResultsPayload:
    results: list[Result] = strawberry.field(
        default_factory=list, description="One result per entry, in the order of the entries."
    )
    errors: list[UserError] = strawberry.field(
        default_factory=list,
        description="All or nothing: with any error no entry is recorded. Errors about one "
        "entry name it in field, e.g. entries[3].enrolmentId.",
    )


def _decode_entry(index: int, entry: ResultEntryInput) -> results.ResultEntry | DomainError:
    """Return the entry with its enrolment id decoded, or the decoding error naming the entry."""
    try:
        enrolment_id = decode_id(
            entry.enrolment_id, "Enrolment", field=f"entries[{index}].enrolmentId"
        )
    except DomainError as error:
        return error
    return results.ResultEntry(
        index=index,
        enrolment_id=enrolment_id,
        outcome=entry.outcome,
        start_date=entry.start_date,
        end_date=entry.end_date,
    )


async def record_results(info: InfoT, input: RecordResultsInput) -> RecordResultsPayload:
    async def operation(session: AsyncSession) -> list[tables.EnrolledUnit]:
        return await results.record_results(
            session,
            occurrence_id=decode_id(input.occurrence_id, "Occurrence", field="occurrenceId"),
            unit_id=decode_id(input.unit_id, "Unit", field="unitId"),
            entries=[_decode_entry(index, entry) for index, entry in enumerate(input.entries)],
            recorded_by=info.context.caller.name,
        )

    try:
        recorded = await info.context.write(operation)
    except (DomainError, DomainErrors) as error:
        return RecordResultsPayload(errors=user_errors(error))
    return RecordResultsPayload(results=recorded)  # type: ignore[arg-type]
