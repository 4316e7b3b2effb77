"""Sending outbox rows to Celery: right after the API's commit, and again by the relay.

The API calls :func:`publish_pending` in a background task once its transaction has committed,
with the rows that ``models.outbox.take_pending`` returned. A failure is logged and never
raised: the rows stay unpublished and the relay (``workers.relay``) sends them later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.outbox import PendingMessage
from models.tables import OutboxMessage

log = structlog.get_logger(__name__)


@dataclass
class PublishOutcome:
    published: list[int] = field(default_factory=list)
    """Outbox ids that Redis accepted."""
    unsent: list[int] = field(default_factory=list)
    """Outbox ids not sent because a publish failed; they wait for the relay."""
    error: str | None = None


def message_kwargs(message: PendingMessage) -> dict[str, Any]:
    """Return the task's keyword arguments: the outbox id and the row's payload."""
    return {**message.payload, "outbox_id": message.outbox_id}


def publish_messages(app: Any, messages: Sequence[PendingMessage]) -> PublishOutcome:
    """Send each message to Celery, blocking; stop at the first failure.

    kombu publishes synchronously, so async callers run this in a thread. The first failure
    usually means Redis is unreachable, and trying the remaining messages would only wait out
    the connect timeout again for each, so they are left for the relay.
    """
    outcome = PublishOutcome()
    for position, message in enumerate(messages):
        try:
            # retry=False: fail at once; the relay is the retry.
            app.send_task(message.task_name, kwargs=message_kwargs(message), retry=False)
        except Exception as error:
            outcome.unsent = [unsent.outbox_id for unsent in messages[position:]]
            outcome.error = repr(error)
            break
        outcome.published.append(message.outbox_id)
    return outcome


async def mark_published(session: AsyncSession, outbox_ids: list[int]) -> list[tuple[int, int]]:
    """Stamp the rows as published; return (outbox id, publish count) for each."""
    if not outbox_ids:
        return []
    rows = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(outbox_ids))
        .values(published_at=func.now(), publish_count=OutboxMessage.publish_count + 1)
        .returning(OutboxMessage.id, OutboxMessage.publish_count)
        .execution_options(synchronize_session=False)
    )
    return [(row.id, row.publish_count) for row in rows]


def _default_app() -> Any:
    from workers.celery_app import app

    return app


async def publish_pending(
    messages: list[PendingMessage],
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    celery_app: Any = None,
) -> None:
    """Publish outbox rows that a committed transaction wrote, and stamp them as published.

    Call it only after the commit, so a worker never reads data older than the task. It never
    raises. A row left unpublished (Redis down, or this process dies first) is sent by the
    relay after ``outbox_publish_grace_seconds``. ``celery_app`` defaults to the app configured
    from the environment.
    """
    if not messages:
        return
    try:
        app = celery_app if celery_app is not None else _default_app()
        outcome = await asyncio.to_thread(publish_messages, app, messages)
    except Exception as error:
        # Only loading the app and its settings can fail here (no ENROLINK_REDIS_URL, say).
        outcome = PublishOutcome(
            unsent=[message.outbox_id for message in messages], error=repr(error)
        )
    if outcome.unsent:
        log.warning("outbox.publish_failed", outbox_ids=outcome.unsent, error=outcome.error)
    if not outcome.published:
        return

    try:
        async with sessionmaker() as session, session.begin():
            await mark_published(session, outcome.published)
    except Exception as error:
        # The tasks are on their way, and the relay sends them once more later. A task whose
        # outbox row is processed returns at once, so the duplicate does nothing.
        log.warning("outbox.mark_published_failed", outbox_ids=outcome.published, error=repr(error))
        return
    log.info("outbox.published", outbox_ids=outcome.published)
