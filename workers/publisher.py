"""Sending outbox rows to Celery: right after the API's commit, and again by the relay.

Once a request's transaction has committed, the API hands the rows that
``models.outbox.take_pending`` returned to its process's :class:`OutboxPublisher`, which sends
them at once and stamps them as published in batches. :func:`publish_pending` does both for one
set of rows. A failure is logged, not raised, and the relay (``workers.relay``) sends the rows
left unpublished later.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.direct import IdListStatement
from models.log_fields import id_fields
from models.outbox import PendingMessage
from models.tables import OutboxMessage
from workers.async_sender import AsyncTaskSender
from workers.task_messages import PublishOutcome, task_options

log = structlog.get_logger(__name__)


def publish_messages(app: Any, messages: Sequence[PendingMessage]) -> PublishOutcome:
    """Send the messages to Celery in one Redis pipeline, blocking.

    kombu publishes synchronously, so async callers run this in a thread. A pipeline sends many
    messages in one round trip: eight of them took half the CPU per message of eight sends one
    at a time (kombu 5.7, local Redis). When the pipeline fails, every message counts as unsent
    and is left for the relay, although some may have arrived. kombu flushes a pipeline of
    1,000 commands early, and Redis may have applied part of a failed one. A task delivered
    twice is harmless, because it returns at once when its outbox row is processed.
    """
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            for message in messages:
                app.send_task(message.task_name, producer=producer, **task_options(message))
    except Exception as error:
        return PublishOutcome.none_sent(messages, error)
    return PublishOutcome.all_sent(messages)


# The API stamps once a second while it serves requests on the same event loop, so the
# statement is a direct one (see models.direct).
_MARK_PUBLISHED = IdListStatement(
    lambda ids_match: (
        update(OutboxMessage)
        .where(ids_match(OutboxMessage.id))
        .values(published_at=func.now(), publish_count=OutboxMessage.publish_count + 1)
        .returning(OutboxMessage.id, OutboxMessage.publish_count)
    )
)


async def mark_published(session: AsyncSession, outbox_ids: list[int]) -> list[tuple[int, int]]:
    """Stamp the rows as published; return (outbox id, publish count) for each."""
    if not outbox_ids:
        return []
    rows = await _MARK_PUBLISHED.fetch(session, outbox_ids)
    return [(row["id"], row["publish_count"]) for row in rows]


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
    published = await _send_in_thread(celery_app, messages)
    if published:
        await _stamp_published(sessionmaker, published)


async def _send_in_thread(celery_app: Any, messages: list[PendingMessage]) -> list[int]:
    """Send the messages from a worker thread; return the ids Redis accepted, logging the rest."""
    try:
        app = celery_app if celery_app is not None else _default_app()
        outcome = await asyncio.to_thread(publish_messages, app, messages)
    except Exception as error:
        # Only loading the app and its settings can fail here (no ENROLINK_REDIS_URL, say).
        outcome = PublishOutcome.none_sent(messages, error)
    outcome.log_unsent()
    return outcome.published


async def _stamp_published(
    sessionmaker: async_sessionmaker[AsyncSession], outbox_ids: list[int]
) -> None:
    """Stamp the rows as published in a transaction of their own, logging a failure."""
    try:
        async with sessionmaker() as session, session.begin():
            await mark_published(session, outbox_ids)
    except Exception as error:
        # The tasks are on their way, and the relay sends them once more later. A task whose
        # outbox row is processed returns at once, so the duplicate does nothing.
        log.warning(
            "outbox.mark_published_failed", **id_fields("outbox_ids", outbox_ids), error=repr(error)
        )
        return
    log.info("outbox.published", **id_fields("outbox_ids", outbox_ids))


# The publisher stamps sent rows as published at most this often, in one statement for all of
# them, instead of one transaction per request. The relay leaves unstamped rows alone for
# outbox_publish_grace_seconds (10 s by default), far longer than this delay. Each stamp is a
# transaction on the event loop, and requests that arrive meanwhile wait for it, so stamps are
# rare.
STAMP_INTERVAL_SECONDS = 1.0


class OutboxPublisher:
    """Publish the outbox rows that one API process's requests committed.

    Calling it only queues the rows and returns. One background task sends what is queued,
    everything queued meanwhile in one Redis pipeline, from the event loop
    (workers.async_sender). Sent rows are stamped as published in one statement at most every
    STAMP_INTERVAL_SECONDS. Nothing here raises: a row not sent or not stamped is the relay's.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        celery_app: Any,
        *,
        stamp_interval_seconds: float = STAMP_INTERVAL_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.celery_app = celery_app
        self.stamp_interval_seconds = stamp_interval_seconds
        self._queued: list[PendingMessage] = []
        self._sent: list[int] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._last_stamp = time.monotonic()
        self._sender = AsyncTaskSender(celery_app)

    def __call__(self, messages: list[PendingMessage]) -> None:
        if not messages:
            return
        self._queued.extend(messages)
        self._wake.set()
        if self._task is None or self._task.done():
            # A context of its own: the task outlives the request that starts it, so it must
            # not log under that request's id.
            self._task = asyncio.create_task(
                self._run(), name="enrolink-outbox-publisher", context=contextvars.Context()
            )
            self._task.add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        """Log a publisher task that died of an unexpected error; the next rows start a new one."""
        if task.cancelled() or task.exception() is None:
            return
        # Every row it had taken is still in the outbox. Sent ids wait for the next task's stamp,
        # and the relay sends again any row that no task stamps.
        log.error("outbox.publisher_failed", exc_info=task.exception())

    async def close(self, wait_seconds: float = 5.0) -> None:
        """Send and stamp what is left within ``wait_seconds``; the relay does the rest."""
        self._closing = True
        self._wake.set()
        if self._task is not None and not self._task.done():
            _, running = await asyncio.wait({self._task}, timeout=wait_seconds)
            for task in running:
                task.cancel()
        await self._sender.close()

    async def _run(self) -> None:
        while True:
            if not self._queued:
                if self._sent and (self._closing or self._stamp_due()):
                    await self._stamp()
                    continue
                if self._closing:
                    return
                self._wake.clear()
                timeout = self._until_stamp() if self._sent else None
                # asyncio.timeout, unlike wait_for, starts no task of its own for each wait.
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            batch, self._queued = self._queued, []
            await self._send(batch)

    def _stamp_due(self) -> bool:
        return self._until_stamp() <= 0

    def _until_stamp(self) -> float:
        return self._last_stamp + self.stamp_interval_seconds - time.monotonic()

    async def _send(self, batch: list[PendingMessage]) -> None:
        outcome = await self._sender.send(batch)
        outcome.log_unsent()
        self._sent.extend(outcome.published)

    async def _stamp(self) -> None:
        stamped, self._sent = self._sent, []
        self._last_stamp = time.monotonic()
        await _stamp_published(self.sessionmaker, stamped)
