"""Recording results (enrolled units) on session and standard enrolments.

Results of an administrative enrolment are never typed in: they are rolled up from its linked
session enrolments, so every recording here requests a roll-up of the administrative
enrolments the session enrolment is actively linked to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVarTuple

from sqlalchemy import Select, and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from models.direct import DirectStatement, EntityLoader, IdListStatement
from models.enrolment_locks import (
    EnrolmentWithOccurrence,
    describe_range,
    lock_enrolment,
    lock_enrolments,
    require_status,
    transaction_time,
)
from models.enums import EnrolmentStatus, OccurrenceKind, Outcome, ResultSource
from models.errors import DomainError, DomainErrors, ErrorCode
from models.linking import unit_codes
from models.outbox import request_roll_up_for_sessions
from models.references import global_id
from models.tables import (
    EnrolledUnit,
    EnrolledUnitHistory,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
    Unit,
)

Ts = TypeVarTuple("Ts")

# A completed enrolment still accepts corrections (an outcome changed after an appeal, say);
# withdrawn, cancelled and deleted enrolments are closed to new results.
RECORDABLE_STATUSES = (EnrolmentStatus.ACTIVE, EnrolmentStatus.COMPLETED)
_RECORD_RULE = "Results can be recorded only on ACTIVE or COMPLETED enrolments."

# One recordResults call covers one unit for the clients of one occurrence. The limit bounds the
# rows one transaction locks; it is an estimate set well above the size of a class.
MAX_ENTRIES = 1000
_RECORDED_BY_LENGTH = 100


# Recording results runs these in every call, so they are direct statements (see
# models.direct). One row or a thousand, each write goes as one executemany.
_RESULT_COLUMNS = (
    "outcome",
    "start_date",
    "end_date",
    "source",
    "source_enrolled_unit_id",
    "recorded_at",
    "recorded_by",
)
# A history row keeps the replaced values, the time they were replaced and the caller who did.
_HISTORY_COLUMNS = ("enrolled_unit_id", *_RESULT_COLUMNS, "replaced_at", "replaced_by")
# inline(): no RETURNING of the new ids, which nothing reads.
_INSERT_HISTORY = DirectStatement(
    insert(EnrolledUnitHistory)
    .values({name: bindparam(name) for name in _HISTORY_COLUMNS})
    .inline()
)
_UPDATE_RESULT = DirectStatement(
    update(EnrolledUnit)
    .where(EnrolledUnit.id == bindparam("target_id"))
    .values({name: bindparam(name) for name in _RESULT_COLUMNS})
)
_UNITS = EntityLoader(Unit)
_ENROLLED_UNITS = EntityLoader(EnrolledUnit)
_UNIT_BY_ID = DirectStatement(select(*_UNITS.columns).where(Unit.id == bindparam("id")))


def of_current_units(statement: Select[*Ts]) -> Select[*Ts]:
    """Keep the enrolled units that are still units of their enrolment's occurrence.

    Removing a unit from an occurrence leaves the enrolled units that hold a result or history
    in place, but they are no longer the enrolment's results.
    """
    return statement.join(Enrolment, Enrolment.id == EnrolledUnit.enrolment_id).join(
        OccurrenceUnit,
        and_(
            OccurrenceUnit.occurrence_id == Enrolment.occurrence_id,
            OccurrenceUnit.unit_id == EnrolledUnit.unit_id,
        ),
    )


# The loader refreshes an enrolled unit that the session has loaded already, because another
# transaction may have changed the row while this one waited for the lock.
_LOCK_ENROLLED_UNITS = IdListStatement(
    lambda ids_match: (
        of_current_units(select(*_ENROLLED_UNITS.columns))
        .where(ids_match(EnrolledUnit.enrolment_id), EnrolledUnit.unit_id == bindparam("unit_id"))
        .order_by(EnrolledUnit.id)
        .with_for_update(of=EnrolledUnit.__table__, key_share=True)
    )
)


@dataclass(frozen=True)
class ResultEntry:
    """One client's result in a recordResults call; ``index`` is its position in ``entries``."""

    index: int
    enrolment_id: int
    outcome: Outcome
    start_date: date | None = None
    end_date: date | None = None


@dataclass(frozen=True)
class ResultChange:
    """The value to write into one enrolled unit."""

    enrolled_unit: EnrolledUnit
    outcome: Outcome
    start_date: date | None
    end_date: date | None


async def record_result(
    session: AsyncSession,
    *,
    enrolment_id: int,
    unit_id: int,
    outcome: Outcome,
    start_date: date | None,
    end_date: date | None,
    recorded_by: str | None,
) -> EnrolledUnit:
    """Record one unit's outcome and activity dates on a session or standard enrolment."""
    target = await lock_enrolment(session, enrolment_id, field="enrolmentId", mode="share")
    unit = await _require_unit(session, unit_id)
    if target.occurrence.kind is OccurrenceKind.ADMINISTRATIVE:
        raise await _administrative_enrolment_error(session, target, unit)
    require_status(target, RECORDABLE_STATUSES, field="enrolmentId", rule=_RECORD_RULE)

    enrolled_units = await _lock_enrolled_units(session, [target.id], unit.id)
    enrolled_unit = enrolled_units.get(target.id)
    if enrolled_unit is None:
        codes = await unit_codes(session, target.occurrence.id)
        raise DomainError(
            ErrorCode.UNIT_NOT_IN_ENROLMENT,
            f"Unit {unit.code} is not a unit of {target.label}; its units are "
            f"{', '.join(codes) or 'none'}.",
            field="unitId",
        )

    start, end = _resolve_dates(enrolled_unit, target, start_date, end_date, prefix="")
    change = ResultChange(enrolled_unit, outcome, start, end)
    await write_results(session, [change], recorded_by=recorded_by, reason="result.recorded")
    return enrolled_unit


async def record_results(
    session: AsyncSession,
    *,
    occurrence_id: int,
    unit_id: int,
    entries: Sequence[ResultEntry | DomainError],
    recorded_by: str | None,
) -> list[EnrolledUnit]:
    """Record one unit's results for many enrolments of one occurrence, all or nothing.

    Each failing entry gives its own error with a field such as ``entries[3].enrolmentId``, and
    they are raised together as DomainErrors. An entry the API layer could not decode (a bad
    global id) is passed as its error, so the errors come back in entry order.
    """
    occurrence = await session.get(Occurrence, occurrence_id)
    if occurrence is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"occurrenceId {global_id('Occurrence', occurrence_id)} names no occurrence.",
            field="occurrenceId",
        )
    unit = await _require_unit(session, unit_id)
    if occurrence.kind is OccurrenceKind.ADMINISTRATIVE:
        raise await _administrative_occurrence_error(session, occurrence, unit)
    if not await _occurrence_has_unit(session, occurrence.id, unit.id):
        codes = await unit_codes(session, occurrence.id)
        raise DomainError(
            ErrorCode.UNIT_NOT_IN_ENROLMENT,
            f"Unit {unit.code} is not a unit of occurrence {occurrence.code}; its units are "
            f"{', '.join(codes) or 'none'}.",
            field="unitId",
        )
    if len(entries) > MAX_ENTRIES:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"entries has {len(entries)} items; at most {MAX_ENTRIES} are allowed in one call. "
            "Split them over several calls.",
            field="entries",
        )

    enrolment_ids = [entry.enrolment_id for entry in entries if isinstance(entry, ResultEntry)]
    enrolments = await lock_enrolments(session, enrolment_ids, mode="share")
    enrolled_units = await _lock_enrolled_units(session, enrolments, unit.id)

    errors: list[DomainError] = []
    changes: list[ResultChange] = []
    first_index: dict[int, int] = {}
    for entry in entries:
        if isinstance(entry, DomainError):
            errors.append(entry)
            continue
        try:
            if entry.enrolment_id in first_index:
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    f"entries[{entry.index}] and entries[{first_index[entry.enrolment_id]}] name "
                    "the same enrolment; give each enrolment once.",
                    field=f"entries[{entry.index}].enrolmentId",
                )
            first_index[entry.enrolment_id] = entry.index
            changes.append(_entry_change(entry, occurrence, unit, enrolments, enrolled_units))
        except DomainError as error:
            errors.append(error)
    if errors:
        raise DomainErrors(errors)

    await write_results(session, changes, recorded_by=recorded_by, reason="results.recorded")
    return [change.enrolled_unit for change in changes]


def _entry_change(
    entry: ResultEntry,
    occurrence: Occurrence,
    unit: Unit,
    enrolments: dict[int, EnrolmentWithOccurrence],
    enrolled_units: dict[int, EnrolledUnit],
) -> ResultChange:
    """Return the change one recordResults entry requests, or raise its error."""
    prefix = f"entries[{entry.index}]."
    field = f"{prefix}enrolmentId"
    target = enrolments.get(entry.enrolment_id)
    if target is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id('Enrolment', entry.enrolment_id)} names no enrolment.",
            field=field,
        )
    if target.occurrence.id != occurrence.id:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} names {target.label}, which is not in occurrence {occurrence.code}; "
            "record it in a call for its own occurrence.",
            field=field,
        )
    require_status(target, RECORDABLE_STATUSES, field=field, rule=_RECORD_RULE)
    enrolled_unit = enrolled_units.get(target.id)
    if enrolled_unit is None:
        raise DomainError(
            ErrorCode.UNIT_NOT_IN_ENROLMENT,
            f"Unit {unit.code} is not among the units of {target.label}.",
            field=field,
        )
    start, end = _resolve_dates(enrolled_unit, target, entry.start_date, entry.end_date, prefix)
    return ResultChange(enrolled_unit, entry.outcome, start, end)


async def write_results(
    session: AsyncSession,
    changes: Iterable[ResultChange],
    *,
    recorded_by: str | None,
    reason: str,
) -> set[int]:
    """Write the changes, keep every replaced value in history, and request the roll-ups.

    Writing the value a unit already has is skipped: no history row, no new recorded time and
    no roll-up. A retried request therefore changes nothing, and the history lists only real
    changes. A unit that never had a value (no outcome, dates or recorded time) gets no history
    row either, since there is nothing to keep. Returns the ids of the enrolments whose results
    changed.
    """
    now = await transaction_time(session)
    recorder = recorded_by[:_RECORDED_BY_LENGTH] if recorded_by else None
    history: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    changed_enrolment_ids: set[int] = set()
    for change in changes:
        enrolled_unit = change.enrolled_unit
        if _already_holds(enrolled_unit, change):
            continue
        if _has_value(enrolled_unit):
            history.append(
                {
                    "enrolled_unit_id": enrolled_unit.id,
                    "outcome": enrolled_unit.outcome,
                    "start_date": enrolled_unit.start_date,
                    "end_date": enrolled_unit.end_date,
                    "source": enrolled_unit.source,
                    "source_enrolled_unit_id": enrolled_unit.source_enrolled_unit_id,
                    "recorded_at": enrolled_unit.recorded_at,
                    "recorded_by": enrolled_unit.recorded_by,
                    "replaced_at": now,
                    "replaced_by": recorder,
                }
            )
        values: dict[str, object] = {
            "outcome": int(change.outcome),
            "start_date": change.start_date,
            "end_date": change.end_date,
            "source": ResultSource.RECORDED,
            "source_enrolled_unit_id": None,
            "recorded_at": now,
            "recorded_by": recorder,
        }
        updates.append({"target_id": enrolled_unit.id, **values})
        # The rows are written below with one statement. The loaded objects take the same
        # values as saved state, so the session has nothing left to flush for them.
        for name, value in values.items():
            set_committed_value(enrolled_unit, name, value)
        changed_enrolment_ids.add(enrolled_unit.enrolment_id)

    await _INSERT_HISTORY.executemany(session, history)
    await _UPDATE_RESULT.executemany(session, updates)
    await request_roll_up_for_sessions(session, changed_enrolment_ids, reason=reason)
    return changed_enrolment_ids


def _already_holds(enrolled_unit: EnrolledUnit, change: ResultChange) -> bool:
    return (
        enrolled_unit.source is ResultSource.RECORDED
        and enrolled_unit.outcome == int(change.outcome)
        and enrolled_unit.start_date == change.start_date
        and enrolled_unit.end_date == change.end_date
    )


def _has_value(enrolled_unit: EnrolledUnit) -> bool:
    return (
        enrolled_unit.outcome is not None
        or enrolled_unit.start_date is not None
        or enrolled_unit.end_date is not None
        or enrolled_unit.recorded_at is not None
    )


def _resolve_dates(
    enrolled_unit: EnrolledUnit,
    target: EnrolmentWithOccurrence,
    start_date: date | None,
    end_date: date | None,
    prefix: str,
) -> tuple[date, date]:
    """Return the activity dates to record, or raise naming the date at fault.

    A date left out keeps the unit's current one, so changing only the outcome leaves the dates
    alone. A unit with no date yet takes the enrolment's.
    """
    enrolment = target.enrolment
    start, start_source = _choose(
        start_date, enrolled_unit.start_date, enrolment.start_date, f"{prefix}startDate"
    )
    end, end_source = _choose(
        end_date, enrolled_unit.end_date, enrolment.end_date, f"{prefix}endDate"
    )
    allowed = describe_range(enrolment.start_date, enrolment.end_date)
    for value, source, field in (
        (start, start_source, f"{prefix}startDate"),
        (end, end_source, f"{prefix}endDate"),
    ):
        if not enrolment.start_date <= value <= enrolment.end_date:
            raise DomainError(
                ErrorCode.DATES_OUTSIDE_ENROLMENT,
                f"{source} is outside the dates of {target.label}, {allowed}; give {field} a "
                "date in that range.",
                field=field,
            )
    if start > end:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{start_source} is after {end_source}; the start must be on or before the end.",
            field=f"{prefix}startDate" if start_date is not None else f"{prefix}endDate",
        )
    return start, end


def _choose(
    given: date | None, current: date | None, enrolment_default: date, field: str
) -> tuple[date, str]:
    """Return the date to use and how to name it in a message."""
    if given is not None:
        return given, f"{field} {given.isoformat()}"
    if current is not None:
        return current, f"the unit's current {_words(field)} {current.isoformat()}"
    return enrolment_default, f"the enrolment's {_words(field)} {enrolment_default.isoformat()}"


def _words(field: str) -> str:
    return "start date" if field.endswith("startDate") else "end date"


async def _require_unit(session: AsyncSession, unit_id: int) -> Unit:
    rows = await _UNIT_BY_ID.fetch(session, {"id": unit_id})
    if not rows:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"unitId {global_id('Unit', unit_id)} names no unit.",
            field="unitId",
        )
    unit: Unit = _UNITS.load(session, rows[0])
    return unit


async def _occurrence_has_unit(session: AsyncSession, occurrence_id: int, unit_id: int) -> bool:
    found = await session.scalar(
        select(OccurrenceUnit.unit_id).where(
            OccurrenceUnit.occurrence_id == occurrence_id, OccurrenceUnit.unit_id == unit_id
        )
    )
    return found is not None


async def _lock_enrolled_units(
    session: AsyncSession, enrolment_ids: Iterable[int], unit_id: int
) -> dict[int, EnrolledUnit]:
    """Lock the enrolled units of ``unit_id`` that are still units of their enrolment's occurrence.

    The lock keeps two concurrent recordings of one unit in order, so each one's history row
    holds the value the other wrote. It is FOR NO KEY UPDATE, not FOR UPDATE, because a roll-up
    that points an administrative result at this row checks the foreign key with FOR KEY SHARE
    while holding the administrative enrolment that this recording waits for next.
    """
    ids = sorted(set(enrolment_ids))
    if not ids:
        return {}
    rows = await _LOCK_ENROLLED_UNITS.fetch(session, ids, {"unit_id": unit_id})
    locked = [_ENROLLED_UNITS.load(session, row) for row in rows]
    return {enrolled_unit.enrolment_id: enrolled_unit for enrolled_unit in locked}


async def _linked_session_labels(
    session: AsyncSession, administrative_id: int, unit_id: int
) -> tuple[list[str], int]:
    """Return the labels of the linked session enrolments whose occurrence carries the unit, and
    the number of linked session enrolments in all."""
    carries_unit = (
        select(OccurrenceUnit.unit_id)
        .where(OccurrenceUnit.occurrence_id == Occurrence.id, OccurrenceUnit.unit_id == unit_id)
        .exists()
    )
    rows = (
        await session.execute(
            select(Enrolment.id, Occurrence.code, carries_unit.label("carries_unit"))
            .join(EnrolmentLink, EnrolmentLink.session_enrolment_id == Enrolment.id)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .where(
                EnrolmentLink.administrative_enrolment_id == administrative_id,
                EnrolmentLink.unlinked_at.is_(None),
                Enrolment.deleted_at.is_(None),
            )
            .order_by(Enrolment.start_date, Enrolment.id)
        )
    ).all()
    labels = [
        f"enrolment {global_id('Enrolment', row.id)} ({row.code})"
        for row in rows
        if row.carries_unit
    ]
    return labels, len(rows)


async def _administrative_enrolment_error(
    session: AsyncSession, target: EnrolmentWithOccurrence, unit: Unit
) -> DomainError:
    labels, linked_count = await _linked_session_labels(session, target.id, unit.id)
    if labels:
        where = (
            f"Record the result in the linked session enrolment that delivers unit {unit.code}: "
            f"{', '.join(labels)}."
        )
    elif linked_count:
        where = (
            f"None of its linked session enrolments is in an occurrence that delivers unit "
            f"{unit.code}: enrol the client in a session that delivers the unit, link the "
            "enrolments, and record the result there."
        )
    else:
        where = (
            "It has no linked session enrolment yet: enrol the client in a session that delivers "
            f"unit {unit.code}, link the enrolments, and record the result there."
        )
    return DomainError(
        ErrorCode.RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE,
        f"{target.sentence_label} is in ADMINISTRATIVE occurrence {target.occurrence.code}, whose "
        f"results are rolled up from linked session enrolments and never recorded directly. "
        f"{where}",
        field="enrolmentId",
    )


async def _administrative_occurrence_error(
    session: AsyncSession, occurrence: Occurrence, unit: Unit
) -> DomainError:
    sessions = list(
        await session.scalars(
            select(Occurrence.code)
            .join(OccurrenceUnit, OccurrenceUnit.occurrence_id == Occurrence.id)
            .where(
                Occurrence.kind == OccurrenceKind.SESSION,
                OccurrenceUnit.unit_id == unit.id,
                Occurrence.start_date <= occurrence.end_date,
                Occurrence.end_date >= occurrence.start_date,
            )
            .order_by(Occurrence.start_date, Occurrence.id)
        )
    )
    if sessions:
        where = f"Record them in the session occurrence that delivers it: {', '.join(sessions)}."
    else:
        where = "Create a session occurrence that delivers it and record the results there."
    return DomainError(
        ErrorCode.RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE,
        f"Occurrence {occurrence.code} is ADMINISTRATIVE: its results for unit {unit.code} are "
        f"rolled up from linked session enrolments and never recorded directly. {where}",
        field="occurrenceId",
    )
