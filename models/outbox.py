"""The transactional outbox: tasks written in the same transaction as the change that needs them.

Domain operations call :func:`request_roll_up`; nothing is sent to the broker here. After the
request commits, the application publishes the new rows (``pending_outbox_ids``) and a relay on
the beat schedule publishes any row still waiting, so a roll-up is never lost when the broker is
down or the process dies between commit and publish.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import Enrolment, EnrolmentLink, OutboxMessage

ROLL_UP_TASK = "enrolink.roll_up"
RECONCILE_TASK = "enrolink.reconcile"

# Key in AsyncSession.info under which the ids of outbox rows written by this session wait to be
# published once the transaction commits.
PENDING_KEY = "enrolink.outbox_ids"


async def request_roll_up(
    session: AsyncSession, administrative_enrolment_ids: Iterable[int], *, reason: str
) -> int | None:
    """Mark the administrative enrolments' roll-up pending and write one outbox row for them.

    Incrementing ``roll_up_version`` takes a row lock on each enrolment, which serialises this
    transaction with a roll-up computing the same enrolment: whichever commits second sees the
    other's work, so no change is rolled up from stale inputs.
    """
    ids = sorted(set(administrative_enrolment_ids))
    if not ids:
        return None
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id.in_(ids))
        .values(roll_up_version=Enrolment.roll_up_version + 1)
        .execution_options(synchronize_session=False)
    )
    outbox_id = (
        await session.execute(
            insert(OutboxMessage)
            .values(
                task_name=ROLL_UP_TASK,
                payload={"administrative_enrolment_ids": ids, "reason": reason},
            )
            .returning(OutboxMessage.id)
        )
    ).scalar_one()
    session.info.setdefault(PENDING_KEY, []).append(outbox_id)
    return outbox_id


async def request_roll_up_for_sessions(
    session: AsyncSession, session_enrolment_ids: Iterable[int], *, reason: str
) -> int | None:
    """Request a roll-up of the administrative enrolments the sessions are actively linked to."""
    ids = list(set(session_enrolment_ids))
    if not ids:
        return None
    administrative_ids = (
        await session.execute(
            select(EnrolmentLink.administrative_enrolment_id)
            .where(
                EnrolmentLink.session_enrolment_id.in_(ids),
                EnrolmentLink.unlinked_at.is_(None),
            )
            .distinct()
        )
    ).scalars()
    return await request_roll_up(session, administrative_ids, reason=reason)


def pending_outbox_ids(session: AsyncSession) -> list[int]:
    """Return and forget the ids of outbox rows this session wrote; call after commit."""
    ids: list[int] = session.info.pop(PENDING_KEY, [])
    return ids


def forget_pending(session: AsyncSession) -> None:
    """Drop the pending ids after a rollback: those rows no longer exist."""
    session.info.pop(PENDING_KEY, None)


__all__ = [
    "PENDING_KEY",
    "RECONCILE_TASK",
    "ROLL_UP_TASK",
    "forget_pending",
    "pending_outbox_ids",
    "request_roll_up",
    "request_roll_up_for_sessions",
]
