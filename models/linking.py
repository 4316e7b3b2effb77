"""Links from a session enrolment to the administrative enrolment of the same client.

A session enrolment has at most one active link; closing a link sets ``unlinked_at`` and a
reason, and rows are never deleted. Every change to a link requests a roll-up of the
administrative enrolment, whose results are derived from its linked sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.direct import DirectStatement, EntityLoader
from models.enrolment_locks import (
    EnrolmentWithOccurrence,
    describe_range,
    enrolment_label,
    lock_enrolment,
    require_status,
    transaction_time,
)
from models.enums import EnrolmentStatus, OccurrenceKind
from models.errors import DomainError, ErrorCode
from models.outbox import request_roll_up
from models.references import global_id, with_article
from models.tables import Client, Enrolment, EnrolmentLink, Occurrence, OccurrenceUnit, Unit
from models.validation import clean_optional_text

DEFAULT_UNLINK_REASON = "Unlinked by staff"
_MAX_REASON_LENGTH = 200
_LINK_RULE = "Only ACTIVE enrolments that are not deleted can be linked."


# Linking runs these in every call, so they are direct statements (see models.direct).
_LINKS = EntityLoader(EnrolmentLink)
_ACTIVE_LINK_OF_SESSION = DirectStatement(
    select(*_LINKS.columns).where(
        EnrolmentLink.session_enrolment_id == bindparam("session_id"),
        EnrolmentLink.unlinked_at.is_(None),
    )
)
_first_unit = aliased(OccurrenceUnit)
_second_unit = aliased(OccurrenceUnit)
_SHARED_UNIT = DirectStatement(
    select(_first_unit.unit_id)
    .join(_second_unit, _second_unit.unit_id == _first_unit.unit_id)
    .where(
        _first_unit.occurrence_id == bindparam("first_id"),
        _second_unit.occurrence_id == bindparam("second_id"),
    )
    .limit(1)
)
# linked_at takes the column's default, now(): the time the transaction started.
_INSERT_LINK = DirectStatement(
    insert(EnrolmentLink)
    .values(
        administrative_enrolment_id=bindparam("administrative_id"),
        session_enrolment_id=bindparam("session_id"),
        linked_by=bindparam("linked_by"),
    )
    .returning(EnrolmentLink.id, EnrolmentLink.linked_at)
)


@dataclass(frozen=True)
class LinkResult:
    """The active link between the two enrolments; ``created`` is False when it existed before."""

    link: EnrolmentLink
    created: bool


async def active_link_of_session(
    session: AsyncSession, session_enrolment_id: int
) -> EnrolmentLink | None:
    rows = await _ACTIVE_LINK_OF_SESSION.fetch(session, {"session_id": session_enrolment_id})
    if not rows:
        return None
    link: EnrolmentLink = _LINKS.load(session, rows[0])
    return link


async def link_enrolments(
    session: AsyncSession,
    *,
    administrative_enrolment_id: int,
    session_enrolment_id: int,
    linked_by: str | None,
    administrative_field: str = "administrativeEnrolmentId",
    session_field: str = "sessionEnrolmentId",
    session_is_new: bool = False,
) -> LinkResult:
    """Link a session enrolment to an administrative enrolment after checking every link rule.

    Linking the same pair again returns the existing link and writes nothing. The session row is
    locked first, so concurrent links of one session enrolment run one after the other and the
    second finds the first's link. The partial unique index on active links is the last guard.
    ``session_is_new`` is set by enrolClient, whose session enrolment is rolled back when the
    link fails, so its messages name the client and occurrence instead of that enrolment's id.
    """
    session_side = await lock_enrolment(session, session_enrolment_id, field=session_field)
    administrative_side = await lock_enrolment(
        session, administrative_enrolment_id, field=administrative_field
    )

    existing = await active_link_of_session(session, session_enrolment_id)
    if existing is not None and existing.administrative_enrolment_id == administrative_enrolment_id:
        return LinkResult(link=existing, created=False)

    await _check_link_rules(
        session,
        administrative_side,
        session_side,
        administrative_field=administrative_field,
        session_field=session_field,
        session_is_new=session_is_new,
    )
    if existing is not None:
        linked_to = await label_of(session, existing.administrative_enrolment_id)
        raise DomainError(
            ErrorCode.ALREADY_LINKED,
            f"{session_side.sentence_label} is already linked to administrative {linked_to}. "
            f"Unlink it first (unlinkEnrolments) to link it to {administrative_side.label}.",
            field=session_field,
        )

    link = await _insert_link(
        session, administrative_enrolment_id, session_enrolment_id, linked_by=linked_by
    )
    await request_roll_up(session, [administrative_enrolment_id], reason="link.created")
    return LinkResult(link=link, created=True)


async def _insert_link(
    session: AsyncSession, administrative_id: int, session_id: int, *, linked_by: str | None
) -> EnrolmentLink:
    """Insert the link with one direct statement and add it to the session as a loaded row.

    The ORM's flush would cost more than the statement itself. The returned object is attached
    to the session as if a query had loaded it, so later reads in the request find it.
    """
    row = (
        await _INSERT_LINK.fetch(
            session,
            {
                "administrative_id": administrative_id,
                "session_id": session_id,
                "linked_by": linked_by,
            },
        )
    )[0]
    link: EnrolmentLink = _LINKS.attach(
        session,
        {
            "id": row["id"],
            "administrative_enrolment_id": administrative_id,
            "session_enrolment_id": session_id,
            "linked_at": row["linked_at"],
            "linked_by": linked_by,
            "unlinked_at": None,
            "unlink_reason": None,
        },
    )
    return link


async def _check_link_rules(
    session: AsyncSession,
    administrative_side: EnrolmentWithOccurrence,
    session_side: EnrolmentWithOccurrence,
    *,
    administrative_field: str,
    session_field: str,
    session_is_new: bool,
) -> None:
    """Raise DomainError for the first link rule the pair breaks, checking in a fixed order.

    Swapped ids come first: they also make the clients differ when the two enrolments belong to
    different clients, and swapping them is the fix to report.
    """
    if (
        administrative_side.occurrence.kind is OccurrenceKind.SESSION
        and session_side.occurrence.kind is OccurrenceKind.ADMINISTRATIVE
    ):
        raise DomainError(
            ErrorCode.WRONG_OCCURRENCE_KIND,
            f"The ids look swapped: {administrative_field} names {administrative_side.label}, "
            f"which is in a SESSION occurrence, and {session_field} names {session_side.label}, "
            f"which is in an ADMINISTRATIVE occurrence. Pass "
            f"{global_id('Enrolment', session_side.id)} as {administrative_field} and "
            f"{global_id('Enrolment', administrative_side.id)} as {session_field}.",
            field=administrative_field,
        )

    if administrative_side.enrolment.client_id != session_side.enrolment.client_id:
        raise await _client_mismatch(
            session,
            administrative_side,
            session_side,
            administrative_field=administrative_field,
            session_field=session_field,
            session_is_new=session_is_new,
        )

    for side, expected, field in (
        (administrative_side, OccurrenceKind.ADMINISTRATIVE, administrative_field),
        (session_side, OccurrenceKind.SESSION, session_field),
    ):
        if side.occurrence.kind is not expected:
            raise DomainError(
                ErrorCode.WRONG_OCCURRENCE_KIND,
                f"{field} names {side.label}, which is in {with_article(side.occurrence.kind)} "
                f"occurrence; it must be an enrolment in {with_article(expected)} occurrence.",
                field=field,
            )

    require_status(
        administrative_side, [EnrolmentStatus.ACTIVE], field=administrative_field, rule=_LINK_RULE
    )
    require_status(session_side, [EnrolmentStatus.ACTIVE], field=session_field, rule=_LINK_RULE)

    administrative_occurrence = administrative_side.occurrence
    session_occurrence = session_side.occurrence
    if not occurrences_overlap(administrative_occurrence, session_occurrence):
        session_dates = describe_range(session_occurrence.start_date, session_occurrence.end_date)
        administrative_dates = describe_range(
            administrative_occurrence.start_date, administrative_occurrence.end_date
        )
        raise DomainError(
            ErrorCode.DATES_DO_NOT_OVERLAP,
            f"Session occurrence {session_occurrence.code} runs {session_dates} and "
            f"administrative occurrence {administrative_occurrence.code} runs "
            f"{administrative_dates}; linked occurrences must overlap in dates.",
            field=session_field,
        )

    if not await share_units(session, administrative_occurrence.id, session_occurrence.id):
        session_units = await unit_codes(session, session_occurrence.id)
        raise DomainError(
            ErrorCode.NO_SHARED_UNITS,
            f"None of the units of session occurrence {session_occurrence.code} "
            f"({', '.join(session_units) or 'no units'}) is a unit of administrative occurrence "
            f"{administrative_occurrence.code}; linked occurrences must share at least one unit.",
            field=session_field,
        )


async def _client_mismatch(
    session: AsyncSession,
    administrative_side: EnrolmentWithOccurrence,
    session_side: EnrolmentWithOccurrence,
    *,
    administrative_field: str,
    session_field: str,
    session_is_new: bool,
) -> DomainError:
    """Build the CLIENT_MISMATCH error for two enrolments of different clients."""
    administrative_client_id = administrative_side.enrolment.client_id
    session_client_id = session_side.enrolment.client_id
    rows = await session.execute(
        select(Client.id, Client.client_code).where(
            Client.id.in_([administrative_client_id, session_client_id])
        )
    )
    codes = {client_id: code for client_id, code in rows}
    if not session_is_new:
        return DomainError(
            ErrorCode.CLIENT_MISMATCH,
            f"{administrative_side.sentence_label} belongs to client "
            f"{codes[administrative_client_id]} but {session_side.label} belongs to client "
            f"{codes[session_client_id]}; only enrolments of the same client can be linked.",
            field=session_field,
        )

    # The session enrolment is rolled back with this error, so only its client is named, and
    # the administrative enrolment that would fit, when there is exactly one.
    client_code = codes[session_client_id]
    session_occurrence = session_side.occurrence
    candidates = await administrative_candidates(session, session_client_id, session_occurrence)
    if len(candidates) == 1:
        suggestion = (
            f"Client {client_code}'s administrative enrolment is "
            f"{enrolment_label(candidates[0].id, candidates[0].code)}; pass it or use link: true."
        )
    elif candidates:
        named = ", ".join(enrolment_label(row.id, row.code) for row in candidates)
        suggestion = (
            f"Client {client_code} has {len(candidates)} administrative enrolments that session "
            f"occurrence {session_occurrence.code} can link to: {named}; pass one of them."
        )
    else:
        suggestion = (
            f"Client {client_code} has no ACTIVE administrative enrolment that overlaps session "
            f"occurrence {session_occurrence.code} and shares a unit with it; enrol the client "
            "in the administrative occurrence first, or enrol without link."
        )
    return DomainError(
        ErrorCode.CLIENT_MISMATCH,
        f"{administrative_field} names {administrative_side.label}, which belongs to client "
        f"{codes[administrative_client_id]}, not to client {client_code}; only enrolments of "
        f"the same client can be linked. {suggestion}",
        field=administrative_field,
    )


async def label_of(session: AsyncSession, enrolment_id: int) -> str:
    """Return the label of an enrolment this operation has not loaded, without locking it."""
    code = await session.scalar(
        select(Occurrence.code)
        .join(Enrolment, Enrolment.occurrence_id == Occurrence.id)
        .where(Enrolment.id == enrolment_id)
    )
    return enrolment_label(enrolment_id, code or "unknown occurrence")


def occurrences_overlap(first: Occurrence, second: Occurrence) -> bool:
    return first.start_date <= second.end_date and second.start_date <= first.end_date


async def share_units(session: AsyncSession, first_id: int, second_id: int) -> bool:
    shared = await _SHARED_UNIT.fetch(session, {"first_id": first_id, "second_id": second_id})
    return bool(shared)


async def unit_codes(session: AsyncSession, occurrence_id: int) -> list[str]:
    codes = await session.scalars(
        select(Unit.code)
        .join(OccurrenceUnit, OccurrenceUnit.unit_id == Unit.id)
        .where(OccurrenceUnit.occurrence_id == occurrence_id)
        .order_by(OccurrenceUnit.position, Unit.id)
    )
    return list(codes)


async def find_administrative_enrolment(
    session: AsyncSession, session_side: EnrolmentWithOccurrence, *, field: str = "link"
) -> int:
    """Return the client's one administrative enrolment that the session enrolment may link to.

    The candidates are those of administrative_candidates. Raises NO_ADMINISTRATIVE_ENROLMENT
    when there is none and AMBIGUOUS_ADMINISTRATIVE_ENROLMENT, naming the candidates, when there
    are several.
    """
    session_occurrence = session_side.occurrence
    candidates = await administrative_candidates(
        session, session_side.enrolment.client_id, session_occurrence
    )
    if len(candidates) == 1:
        return int(candidates[0].id)

    if candidates:
        named = ", ".join(enrolment_label(row.id, row.code) for row in candidates)
        raise DomainError(
            ErrorCode.AMBIGUOUS_ADMINISTRATIVE_ENROLMENT,
            f"The client has {len(candidates)} ACTIVE administrative enrolments that overlap "
            f"session occurrence {session_occurrence.code} and share a unit with it: {named}. "
            "Pass the one to link as administrativeEnrolmentId.",
            field="administrativeEnrolmentId",
        )

    others = (
        await session.execute(
            select(Enrolment.id, Enrolment.status, Occurrence.code)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .where(
                Enrolment.client_id == session_side.enrolment.client_id,
                Enrolment.deleted_at.is_(None),
                Occurrence.kind == OccurrenceKind.ADMINISTRATIVE,
            )
            .order_by(Enrolment.id)
        )
    ).all()
    if others:
        listed = ", ".join(f"{enrolment_label(row.id, row.code)}, {row.status}" for row in others)
        found = (
            f"The client's administrative enrolments ({listed}) are not ACTIVE, do not overlap "
            "it, or share none of its units."
        )
    else:
        found = "The client has no administrative enrolment."
    # The session enrolment is new and rolled back with this error, so it is not named by id.
    raise DomainError(
        ErrorCode.NO_ADMINISTRATIVE_ENROLMENT,
        f"No administrative enrolment to link the enrolment in session occurrence "
        f"{session_occurrence.code} to: {found} Enrol the client in the administrative "
        f"occurrence that covers {session_occurrence.code} first, or enrol without link.",
        field=field,
    )


async def administrative_candidates(
    session: AsyncSession, client_id: int, session_occurrence: Occurrence
) -> Sequence[Row[int, str]]:
    """Return (id, occurrence code) of the client's enrolments that a session enrolment may link to.

    A candidate is ACTIVE, not deleted, in an ADMINISTRATIVE occurrence whose dates overlap the
    session occurrence's and which shares at least one of its units. Ordered by id.
    """
    administrative_unit = aliased(OccurrenceUnit)
    session_unit = aliased(OccurrenceUnit)
    shares_a_unit = (
        select(administrative_unit.unit_id)
        .join(session_unit, session_unit.unit_id == administrative_unit.unit_id)
        .where(
            administrative_unit.occurrence_id == Occurrence.id,
            session_unit.occurrence_id == session_occurrence.id,
        )
        .exists()
    )
    rows = await session.execute(
        select(Enrolment.id, Occurrence.code)
        .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
        .where(
            Enrolment.client_id == client_id,
            Enrolment.status == EnrolmentStatus.ACTIVE,
            Enrolment.deleted_at.is_(None),
            Occurrence.kind == OccurrenceKind.ADMINISTRATIVE,
            Occurrence.start_date <= session_occurrence.end_date,
            Occurrence.end_date >= session_occurrence.start_date,
            shares_a_unit,
        )
        .order_by(Enrolment.id)
    )
    return rows.all()


async def unlink_enrolments(
    session: AsyncSession, *, session_enrolment_id: int, reason: str | None
) -> EnrolmentLink:
    """Close the session enrolment's active link and request a roll-up of its administrative side.

    The roll-up removes the results that came from this session from the administrative
    enrolment. Raises NOT_LINKED when the session enrolment has no active link.
    """
    field = "sessionEnrolmentId"
    session_side = await lock_enrolment(session, session_enrolment_id, field=field)
    cleaned_reason = (
        clean_optional_text(reason, field="reason", max_length=_MAX_REASON_LENGTH)
        or DEFAULT_UNLINK_REASON
    )
    link = await active_link_of_session(session, session_enrolment_id)
    if link is None:
        hint = ""
        if session_side.occurrence.kind is not OccurrenceKind.SESSION:
            hint = (
                f" It is in {with_article(session_side.occurrence.kind)} occurrence; links are "
                "closed from their session enrolment."
            )
        raise DomainError(
            ErrorCode.NOT_LINKED,
            f"{session_side.sentence_label} has no active link to close.{hint}",
            field=field,
        )
    closed = await close_links(session, [link.id], reason=cleaned_reason)
    return closed[0]


async def close_links(
    session: AsyncSession,
    link_ids: Iterable[int],
    *,
    reason: str,
    skip_roll_up_of: Iterable[int] = (),
) -> list[EnrolmentLink]:
    """Close the given active links and request a roll-up of their administrative enrolments.

    ``skip_roll_up_of`` names administrative enrolments that need no roll-up, such as one that
    is being deleted.
    """
    ids = sorted(set(link_ids))
    if not ids:
        return []
    now = await transaction_time(session)
    closed = list(
        await session.scalars(
            update(EnrolmentLink)
            .where(EnrolmentLink.id.in_(ids), EnrolmentLink.unlinked_at.is_(None))
            .values(unlinked_at=now, unlink_reason=reason)
            .returning(EnrolmentLink)
            .execution_options(populate_existing=True)
        )
    )
    skipped = set(skip_roll_up_of)
    await request_roll_up(
        session,
        [
            link.administrative_enrolment_id
            for link in closed
            if link.administrative_enrolment_id not in skipped
        ],
        reason="link.closed",
    )
    return sorted(closed, key=lambda link: link.id)


async def active_link_ids(session: AsyncSession, enrolment_ids: Iterable[int]) -> list[int]:
    """Return the active links in which any of the enrolments takes part, on either side."""
    ids = list(set(enrolment_ids))
    if not ids:
        return []
    rows = await session.scalars(
        select(EnrolmentLink.id).where(
            EnrolmentLink.unlinked_at.is_(None),
            (EnrolmentLink.session_enrolment_id.in_(ids))
            | (EnrolmentLink.administrative_enrolment_id.in_(ids)),
        )
    )
    return list(rows)
