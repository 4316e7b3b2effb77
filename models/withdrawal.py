"""Withdrawing and deleting enrolments."""

from __future__ import annotations

from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.enrolment_locks import (
    EnrolmentWithOccurrence,
    describe_range,
    lock_for_change,
    require_status,
    transaction_time,
)
from models.enums import NON_FINAL_OUTCOME_CODES, EnrolmentStatus, OccurrenceKind, Outcome
from models.errors import DomainError, ErrorCode
from models.linking import active_link_ids, close_links
from models.references import global_id
from models.results import ResultChange, write_results
from models.tables import EnrolledUnit, Enrolment

_WITHDRAW_RULE = "Only ACTIVE enrolments can be withdrawn."


async def withdraw_enrolment(
    session: AsyncSession,
    *,
    enrolment_id: int,
    withdrawn_on: date,
    cascade: bool,
    withdrawn_by: str | None,
) -> list[Enrolment]:
    """Withdraw an enrolment and, with ``cascade``, its active linked session enrolments.

    Units that have started but have no final outcome get 40 (withdrawn), ending on the
    withdrawal date; unstarted units are left as they are. Units of an administrative enrolment
    are not written, because they are rolled up from its sessions. Returns every enrolment
    withdrawn, the requested one first.
    """
    field = "enrolmentId"
    family = await lock_for_change(session, enrolment_id, field=field)
    target = family.target
    require_status(target, [EnrolmentStatus.ACTIVE], field=field, rule=_WITHDRAW_RULE)
    enrolment = target.enrolment
    if not enrolment.start_date <= withdrawn_on <= enrolment.end_date:
        raise DomainError(
            ErrorCode.DATES_OUTSIDE_ENROLMENT,
            f"withdrawnOn {withdrawn_on.isoformat()} is outside the dates of {target.label}, "
            f"{describe_range(enrolment.start_date, enrolment.end_date)}; give a date in that "
            "range.",
            field="withdrawnOn",
        )

    active_sessions = [linked for linked in family.linked_sessions if linked.is_live]
    if active_sessions and not cascade:
        raise DomainError(
            ErrorCode.LINKED_SESSIONS_ACTIVE,
            f"{target.sentence_label} has {len(active_sessions)} ACTIVE linked session "
            f"enrolment(s): {', '.join(linked.label for linked in active_sessions)}. Withdraw "
            "them first, or pass cascade: true to withdraw them together with it.",
            field="cascade",
        )

    withdrawn = [target, *active_sessions]
    changes: list[ResultChange] = []
    for item in withdrawn:
        effective_on = _clamp(withdrawn_on, item.enrolment.start_date, item.enrolment.end_date)
        item.enrolment.status = EnrolmentStatus.WITHDRAWN
        item.enrolment.withdrawn_on = effective_on
        if item.occurrence.kind is not OccurrenceKind.ADMINISTRATIVE:
            changes.extend(await _withdrawn_unit_changes(session, item, withdrawn_on, effective_on))
    await session.flush()
    # Roll-ups follow the results: the administrative enrolments of sessions whose units got 40.
    await write_results(session, changes, recorded_by=withdrawn_by, reason="enrolment.withdrawn")
    return [item.enrolment for item in withdrawn]


def _clamp(value: date, start: date, end: date) -> date:
    return min(max(value, start), end)


async def _withdrawn_unit_changes(
    session: AsyncSession, item: EnrolmentWithOccurrence, withdrawn_on: date, effective_on: date
) -> list[ResultChange]:
    """Return the 40 (withdrawn) results for the units that had started by ``withdrawn_on``.

    A unit has started when its start date is on or before the withdrawal date, or, when it has
    no start date, when an outcome other than 85 (not yet started) is recorded. Units with a
    final outcome keep it. The end date is the withdrawal date, moved into the enrolment's dates
    for a linked session that had already ended or not yet begun.
    """
    started = or_(
        EnrolledUnit.start_date <= withdrawn_on,
        EnrolledUnit.start_date.is_(None)
        & EnrolledUnit.outcome.is_not(None)
        & (EnrolledUnit.outcome != Outcome.NOT_YET_STARTED.value),
    )
    no_final_outcome = or_(
        EnrolledUnit.outcome.is_(None), EnrolledUnit.outcome.in_(NON_FINAL_OUTCOME_CODES)
    )
    units = await session.scalars(
        select(EnrolledUnit)
        .where(EnrolledUnit.enrolment_id == item.id, started, no_final_outcome)
        .order_by(EnrolledUnit.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return [
        ResultChange(
            enrolled_unit=unit,
            outcome=Outcome.WITHDRAWN,
            start_date=unit.start_date,
            end_date=max(effective_on, unit.start_date or effective_on),
        )
        for unit in units
    ]


async def delete_enrolment(session: AsyncSession, *, enrolment_id: int) -> Enrolment:
    """Soft-delete an enrolment and close its active links in the same transaction.

    Deleting an enrolment that is already deleted changes nothing, so a retried request
    succeeds. The administrative enrolments that lose a linked session get a roll-up. A deleted
    administrative enrolment gets none: its rolled-up results stay as they were at deletion.
    """
    family = await lock_for_change(session, enrolment_id, field="enrolmentId")
    enrolment = family.target.enrolment
    if enrolment.deleted_at is not None:
        return enrolment

    enrolment.deleted_at = await transaction_time(session)
    await session.flush()
    link_ids = await active_link_ids(session, [enrolment.id])
    await close_links(
        session,
        link_ids,
        reason=f"Closed because enrolment {global_id('Enrolment', enrolment.id)} was deleted.",
        skip_roll_up_of={enrolment.id},
    )
    return enrolment
