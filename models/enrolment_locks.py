"""Row locks and lookups shared by the operations that change enrolments.

Lock order: every operation locks session enrolment rows before administrative enrolment rows,
and rows of one kind in id order. Requesting a roll-up updates the administrative row, so an
operation on a session enrolment takes the session row first and the administrative row last.
An operation on an administrative enrolment that may touch its linked sessions (withdrawal,
deletion) locks those sessions first, then the administrative row. With one order, concurrent
changes wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.direct import DirectStatement, EntityLoader, IdListStatement
from models.enums import EnrolmentStatus
from models.errors import DomainError, ErrorCode
from models.references import global_id
from models.tables import Enrolment, EnrolmentLink, Occurrence

LockMode = Literal["update", "share"]


_ENROLMENTS = EntityLoader(Enrolment)
_OCCURRENCES = EntityLoader(Occurrence)


def _locking_select(mode: LockMode) -> IdListStatement:
    return IdListStatement(
        lambda ids_match: (
            select(*_ENROLMENTS.columns, *_OCCURRENCES.columns)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .where(ids_match(Enrolment.id))
            .order_by(Enrolment.id)
            .with_for_update(of=Enrolment.__table__, read=mode == "share")
        )
    )


# Nearly every mutation runs these, so they are direct statements (see models.direct). The
# loaders refresh an enrolment that the session has loaded already, because another
# transaction may have changed the row while this one waited for the lock.
_LOCKING_SELECTS: dict[LockMode, IdListStatement] = {
    "update": _locking_select("update"),
    "share": _locking_select("share"),
}
_ACTIVE_SESSION_IDS = IdListStatement(
    lambda ids_match: select(EnrolmentLink.session_enrolment_id).where(
        ids_match(EnrolmentLink.administrative_enrolment_id),
        EnrolmentLink.unlinked_at.is_(None),
    )
)
_NOW = DirectStatement(select(func.now()))


def enrolment_label(enrolment_id: int, occurrence_code: str) -> str:
    """Return the enrolment as messages name it, e.g. ``enrolment RW5yb2xtZW50OjQ= (SES-01)``."""
    return f"enrolment {global_id('Enrolment', enrolment_id)} ({occurrence_code})"


@dataclass(frozen=True)
class EnrolmentWithOccurrence:
    """An enrolment row together with the occurrence it belongs to."""

    enrolment: Enrolment
    occurrence: Occurrence

    @property
    def id(self) -> int:
        return self.enrolment.id

    @property
    def label(self) -> str:
        return enrolment_label(self.enrolment.id, self.occurrence.code)

    @property
    def sentence_label(self) -> str:
        """The label with a capital letter, to start a sentence."""
        return "E" + self.label[1:]

    @property
    def is_live(self) -> bool:
        return self.enrolment.deleted_at is None and self.enrolment.status is EnrolmentStatus.ACTIVE


async def lock_enrolments(
    session: AsyncSession, enrolment_ids: Iterable[int], *, mode: LockMode = "update"
) -> dict[int, EnrolmentWithOccurrence]:
    """Lock the enrolment rows in id order and return them with their occurrences.

    ``update`` takes FOR UPDATE (the operation changes the enrolment or its links), ``share``
    takes FOR SHARE (the operation needs the enrolment's status to hold until it commits, as
    recording a result does). Missing ids are left out of the result.
    """
    ids = sorted(set(enrolment_ids))
    if not ids:
        return {}
    locked: dict[int, EnrolmentWithOccurrence] = {}
    occurrence_offset = len(_ENROLMENTS.columns)
    for row in await _LOCKING_SELECTS[mode].fetch(session, ids):
        enrolment = _ENROLMENTS.load(session, row)
        occurrence = _OCCURRENCES.load(session, row, occurrence_offset)
        locked[enrolment.id] = EnrolmentWithOccurrence(enrolment, occurrence)
    return locked


async def lock_enrolment(
    session: AsyncSession, enrolment_id: int, *, field: str, mode: LockMode = "update"
) -> EnrolmentWithOccurrence:
    """Lock one enrolment row, or raise NOT_FOUND naming ``field``."""
    found = await lock_enrolments(session, [enrolment_id], mode=mode)
    if enrolment_id not in found:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{field} {global_id('Enrolment', enrolment_id)} names no enrolment.",
            field=field,
        )
    return found[enrolment_id]


async def active_session_ids(session: AsyncSession, administrative_ids: Iterable[int]) -> set[int]:
    """Return the session enrolments with an active link to any of the administrative ones."""
    ids = list(set(administrative_ids))
    if not ids:
        return set()
    return set(await _ACTIVE_SESSION_IDS.scalars(session, ids))


@dataclass(frozen=True)
class EnrolmentFamily:
    """An enrolment locked for a change, with its actively linked session enrolments."""

    target: EnrolmentWithOccurrence
    linked_sessions: list[EnrolmentWithOccurrence]


async def lock_for_change(
    session: AsyncSession, enrolment_id: int, *, field: str
) -> EnrolmentFamily:
    """Lock an enrolment and, when others are linked to it as sessions, those sessions first.

    Links to the enrolment are read before any lock, so the linked sessions can be locked ahead
    of it, as the lock order requires. A link committed between that read and the lock on the
    enrolment is found by the second read and its session locked then. No new link can commit
    after that, because linking takes the administrative row lock this transaction now holds.
    """
    session_ids = await active_session_ids(session, [enrolment_id])
    sessions = await lock_enrolments(session, session_ids - {enrolment_id})
    target = await lock_enrolment(session, enrolment_id, field=field)

    late_ids = await active_session_ids(session, [enrolment_id]) - set(sessions) - {enrolment_id}
    if late_ids:
        sessions.update(await lock_enrolments(session, late_ids))

    still_linked = await active_session_ids(session, [enrolment_id])
    linked = [sessions[key] for key in sorted(still_linked) if key in sessions]
    return EnrolmentFamily(target=target, linked_sessions=linked)


async def transaction_time(session: AsyncSession) -> datetime:
    """Return PostgreSQL's now(): the start of the transaction, the same for every row it writes."""
    value: datetime = await _NOW.scalar_one(session)
    return value


def require_not_deleted(enrolment: EnrolmentWithOccurrence, *, field: str, rule: str) -> None:
    """Raise ENROLMENT_NOT_ACTIVE when the enrolment is deleted; ``rule`` ends the message."""
    deleted_at = enrolment.enrolment.deleted_at
    if deleted_at is not None:
        raise DomainError(
            ErrorCode.ENROLMENT_NOT_ACTIVE,
            f"{enrolment.sentence_label} was deleted on {deleted_at.date().isoformat()}. {rule}",
            field=field,
        )


def require_status(
    enrolment: EnrolmentWithOccurrence,
    allowed: Iterable[EnrolmentStatus],
    *,
    field: str,
    rule: str,
) -> None:
    """Raise ENROLMENT_NOT_ACTIVE unless the enrolment is not deleted and in an allowed status.

    ``rule`` is a sentence that ends the message and names the enrolments the action needs.
    """
    require_not_deleted(enrolment, field=field, rule=rule)
    status = enrolment.enrolment.status
    if status not in set(allowed):
        raise DomainError(
            ErrorCode.ENROLMENT_NOT_ACTIVE,
            f"{enrolment.sentence_label} is {status}. {rule}",
            field=field,
        )


def describe_range(start: date, end: date) -> str:
    return f"{start.isoformat()} to {end.isoformat()}"
