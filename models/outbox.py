"""The transactional outbox: tasks written in the same transaction as the change that needs them.

Domain operations call :func:`request_roll_up`, and nothing is sent to the broker here. After the
request commits, the application publishes the new rows (:func:`take_pending`). A relay on the
beat schedule publishes any row still waiting, so a roll-up is not lost when the broker is down
or the process dies between commit and publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.direct import DirectStatement, IdListStatement
from models.tables import Enrolment, EnrolmentLink, OutboxMessage

ROLL_UP_TASK = "enrolink.roll_up"
RECONCILE_TASK = "enrolink.reconcile"

# Key in AsyncSession.info under which the outbox rows written by this session wait to be
# published once the transaction commits.
PENDING_KEY = "enrolink.outbox_messages"


# The statements below run in nearly every mutation, so they are direct statements: compiled
# once and sent to asyncpg without SQLAlchemy's work per call (see models.direct).

# An UPDATE locks rows in the order its plan reads them, which for a sequential scan is the
# order they are stored in. The sub-select locks them in id order first, as the roll-up task
# does, so a request and a roll-up sharing enrolments queue instead of deadlocking. FOR NO KEY
# UPDATE is the lock the UPDATE takes anyway, so foreign-key checks still pass.
_locked = aliased(Enrolment)
_MARK_ROLL_UP_PENDING = IdListStatement(
    lambda ids_match: (
        update(Enrolment)
        .where(
            Enrolment.id.in_(
                select(_locked.id)
                .where(ids_match(_locked.id))
                .order_by(_locked.id)
                .with_for_update(key_share=True)
            )
        )
        .values(roll_up_version=Enrolment.roll_up_version + 1)
    )
)
_INSERT_OUTBOX = DirectStatement(
    insert(OutboxMessage)
    .values(task_name=bindparam("task_name"), payload=bindparam("payload"))
    .returning(OutboxMessage.id)
)
_ADMINISTRATIVE_IDS_OF_SESSIONS = IdListStatement(
    lambda ids_match: (
        select(EnrolmentLink.administrative_enrolment_id)
        .where(ids_match(EnrolmentLink.session_enrolment_id), EnrolmentLink.unlinked_at.is_(None))
        .distinct()
    )
)


@dataclass(frozen=True)
class PendingMessage:
    """An outbox row written in this transaction, to publish once it has committed."""

    outbox_id: int
    task_name: str
    payload: dict[str, Any]


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
    await _MARK_ROLL_UP_PENDING.execute(session, ids)
    return await enqueue(
        session, ROLL_UP_TASK, {"administrative_enrolment_ids": ids, "reason": reason}
    )


async def enqueue(session: AsyncSession, task_name: str, payload: dict[str, Any]) -> int:
    """Write an outbox row for a task; it is published only after the transaction commits."""
    outbox_id: int = await _INSERT_OUTBOX.scalar_one(
        session, {"task_name": task_name, "payload": payload}
    )
    pending: list[PendingMessage] = session.info.setdefault(PENDING_KEY, [])
    pending.append(PendingMessage(outbox_id, task_name, payload))
    return outbox_id


async def request_roll_up_for_sessions(
    session: AsyncSession, session_enrolment_ids: Iterable[int], *, reason: str
) -> int | None:
    """Request a roll-up of the administrative enrolments the sessions are actively linked to."""
    ids = list(set(session_enrolment_ids))
    if not ids:
        return None
    administrative_ids = await _ADMINISTRATIVE_IDS_OF_SESSIONS.scalars(session, ids)
    return await request_roll_up(session, administrative_ids, reason=reason)


def take_pending(session: AsyncSession) -> list[PendingMessage]:
    """Return and forget the outbox rows this session wrote; call after commit."""
    pending: list[PendingMessage] = session.info.pop(PENDING_KEY, [])
    return pending


def pending_count(session: AsyncSession) -> int:
    return len(session.info.get(PENDING_KEY, []))


def forget_pending(session: AsyncSession, *, keep: int = 0) -> None:
    """Drop pending rows after a rollback (to a savepoint: keep the first ``keep``)."""
    pending: list[PendingMessage] = session.info.get(PENDING_KEY, [])
    del pending[keep:]
