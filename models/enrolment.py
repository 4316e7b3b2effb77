"""Enrolling a client in an occurrence, optionally linking a session enrolment at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.enrolment_locks import (
    EnrolmentWithOccurrence,
    describe_range,
    enrolment_label,
)
from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource
from models.errors import DomainError, ErrorCode
from models.linking import find_administrative_enrolment, link_enrolments
from models.references import global_id
from models.tables import (
    Charge,
    Client,
    EnrolledUnit,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
)
from models.validation import check_date_range

# Occurrence kinds whose fee becomes a charge: a session carries no money, because the whole
# qualification is paid under the administrative enrolment.
_KINDS_WITH_FEES = frozenset({OccurrenceKind.ADMINISTRATIVE, OccurrenceKind.STANDARD})
_CHARGE_DESCRIPTION_LENGTH = 200


@dataclass(frozen=True)
class Enrolled:
    """The new enrolment and, when linking was requested, its link."""

    enrolment: Enrolment
    link: EnrolmentLink | None


async def enrol_client(
    session: AsyncSession,
    *,
    client_id: int,
    occurrence_id: int,
    start_date: date | None,
    end_date: date | None,
    link: bool | None,
    administrative_enrolment_id: int | None,
    enrolled_by: str | None,
) -> Enrolled:
    """Enrol a client, create one enrolled unit per unit of the occurrence, and charge its fee.

    Dates default to the occurrence's and must lie inside them. With ``link`` or an explicit
    ``administrative_enrolment_id``, the new session enrolment is linked under the full link
    rules. Without an explicit target, the link goes to the client's one matching
    administrative enrolment.
    """
    client = await session.get(Client, client_id)
    if client is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"clientId {global_id('Client', client_id)} names no client.",
            field="clientId",
        )
    # FOR SHARE keeps the occurrence's units and dates as read here until this enrolment commits,
    # for any change to the occurrence that locks its row.
    occurrence = await session.scalar(
        select(Occurrence)
        .where(Occurrence.id == occurrence_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if occurrence is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"occurrenceId {global_id('Occurrence', occurrence_id)} names no occurrence.",
            field="occurrenceId",
        )

    start = start_date or occurrence.start_date
    end = end_date or occurrence.end_date
    _check_inside_occurrence(occurrence, start, end)
    check_date_range(start, end)
    wants_link = _wants_link(occurrence, link, administrative_enrolment_id)
    await _check_not_enrolled(session, client, occurrence)

    enrolment = Enrolment(
        client_id=client.id,
        occurrence_id=occurrence.id,
        status=EnrolmentStatus.ACTIVE,
        start_date=start,
        end_date=end,
    )
    session.add(enrolment)
    # A concurrent enrolment of the same client that committed after the check above makes this
    # flush fail on the partial unique index, which the caller maps to ALREADY_ENROLLED.
    await session.flush()
    await _create_enrolled_units(session, enrolment, occurrence)
    _charge_fee(session, enrolment, occurrence)
    await session.flush()

    if not wants_link:
        return Enrolled(enrolment=enrolment, link=None)
    target_id = administrative_enrolment_id
    if target_id is None:
        target_id = await find_administrative_enrolment(
            session, EnrolmentWithOccurrence(enrolment, occurrence)
        )
    linked = await link_enrolments(
        session,
        administrative_enrolment_id=target_id,
        session_enrolment_id=enrolment.id,
        linked_by=enrolled_by,
        session_field="occurrenceId",
        session_is_new=True,
    )
    return Enrolled(enrolment=enrolment, link=linked.link)


def _check_inside_occurrence(occurrence: Occurrence, start: date, end: date) -> None:
    """Raise INVALID_INPUT when an enrolment date lies outside the occurrence's dates."""
    allowed = describe_range(occurrence.start_date, occurrence.end_date)
    for value, field in ((start, "startDate"), (end, "endDate")):
        if not occurrence.start_date <= value <= occurrence.end_date:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"{field} {value.isoformat()} is outside occurrence {occurrence.code}, which runs "
                f"{allowed}; choose a date in that range or leave {field} out to use the "
                "occurrence's.",
                field=field,
            )


def _wants_link(
    occurrence: Occurrence, link: bool | None, administrative_enrolment_id: int | None
) -> bool:
    if link is False and administrative_enrolment_id is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "link is false but administrativeEnrolmentId is given; set link to true to link to "
            "that enrolment, or leave administrativeEnrolmentId out.",
            field="link",
        )
    wants_link = bool(link) or administrative_enrolment_id is not None
    if wants_link and occurrence.kind is not OccurrenceKind.SESSION:
        raise DomainError(
            ErrorCode.WRONG_OCCURRENCE_KIND,
            f"Occurrence {occurrence.code} is {occurrence.kind}; only enrolments in SESSION "
            "occurrences are linked. Enrol without link.",
            field="link" if link else "administrativeEnrolmentId",
        )
    return wants_link


async def _check_not_enrolled(
    session: AsyncSession, client: Client, occurrence: Occurrence
) -> None:
    existing = (
        await session.execute(
            select(Enrolment.id, Enrolment.status).where(
                Enrolment.client_id == client.id,
                Enrolment.occurrence_id == occurrence.id,
                Enrolment.status != EnrolmentStatus.CANCELLED,
                Enrolment.deleted_at.is_(None),
            )
        )
    ).first()
    if existing is not None:
        raise DomainError(
            ErrorCode.ALREADY_ENROLLED,
            f"Client {client.client_code} is already enrolled in occurrence {occurrence.code} "
            f"({enrolment_label(existing.id, occurrence.code)}, {existing.status}). A client can "
            "have one enrolment per occurrence that is not cancelled or deleted.",
            field="occurrenceId",
        )


async def _create_enrolled_units(
    session: AsyncSession, enrolment: Enrolment, occurrence: Occurrence
) -> None:
    """Insert one enrolled unit per unit of the occurrence, with no outcome yet.

    Results of an administrative enrolment are rolled up from its linked sessions, never
    recorded, so its units start as ROLLED_UP; every other enrolment's are RECORDED.
    """
    source = (
        ResultSource.ROLLED_UP
        if occurrence.kind is OccurrenceKind.ADMINISTRATIVE
        else ResultSource.RECORDED
    )
    await session.execute(
        insert(EnrolledUnit).from_select(
            ["enrolment_id", "unit_id", "source"],
            select(literal(enrolment.id), OccurrenceUnit.unit_id, literal(source.value)).where(
                OccurrenceUnit.occurrence_id == occurrence.id
            ),
        )
    )


def _charge_fee(session: AsyncSession, enrolment: Enrolment, occurrence: Occurrence) -> None:
    """Add the occurrence's fee as a charge, due on the enrolment's start date.

    A fee of zero adds no charge, because a charge's amount must be positive.
    """
    if occurrence.kind not in _KINDS_WITH_FEES or not occurrence.fee:
        return
    description = f"Fee for {occurrence.code} {occurrence.name}"[:_CHARGE_DESCRIPTION_LENGTH]
    session.add(
        Charge(
            enrolment_id=enrolment.id,
            amount=occurrence.fee,
            description=description,
            charged_on=enrolment.start_date,
        )
    )
