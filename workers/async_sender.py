"""Sending Celery task messages from an asyncio event loop, without a thread.

kombu's Redis transport is synchronous, so the API used to publish from a worker thread. In a
busy API process that thread competed with the event loop for the GIL. Publishing one message
took about 0.8 ms of the thread's CPU there, against 0.34 ms in a process of its own. In all
it cost about 1.2 ms of the process's CPU per mutation (measured on the 2-core benchmark
machine). :class:`AsyncTaskSender` lets Celery and kombu build each message as they would for
Redis, but on an in-memory transport that only captures it, and then pushes the messages with
redis.asyncio in one pipeline.

The message is the one kombu's Redis transport sends: the same Celery headers and body, the
same envelope, on the list named after the queue. A test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis_asyncio
from kombu import Connection, Producer  # type: ignore[attr-defined]
from kombu.transport import memory
from kombu.utils.json import dumps

from models.outbox import PendingMessage
from workers.task_messages import PublishOutcome, task_options

if TYPE_CHECKING:
    # workers.celery_app imports the tasks, which import this module.
    from workers.celery_app import EnrolinkCelery


class _CapturingChannel(memory.Channel):
    """An in-memory channel that keeps each message it would deliver, with its queue."""

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self.connection.captured.append((queue, message))


class _CapturingTransport(memory.Transport):
    Channel = _CapturingChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.captured: list[tuple[str, dict[str, Any]]] = []


class AsyncTaskSender:
    """Build Celery task messages in memory and push them to Redis with redis.asyncio.

    The connect and socket timeouts are the Celery app's broker timeouts, so an unreachable
    Redis fails a send as a kombu publish would, without blocking the event loop.
    """

    def __init__(self, celery_app: EnrolinkCelery) -> None:
        self.celery_app = celery_app
        self._connection = Connection(transport=_CapturingTransport)  # type: ignore[no-untyped-call]
        self._producer = Producer(self._connection.default_channel)  # type: ignore[no-untyped-call]
        options = celery_app.conf.broker_transport_options or {}
        self._client = redis_asyncio.Redis.from_url(
            celery_app.enrolink_settings.redis_client_url(),
            socket_connect_timeout=options.get(
                "socket_connect_timeout", celery_app.conf.broker_connection_timeout
            ),
            socket_timeout=options.get("socket_timeout"),
        )

    def build(self, messages: Sequence[PendingMessage]) -> list[tuple[str, str]]:
        """Return (Redis list, serialized message) for each message, in order."""
        transport = self._connection.transport
        transport.captured.clear()
        for message in messages:
            self.celery_app.send_task(
                message.task_name, producer=self._producer, **task_options(message)
            )
        built: list[tuple[str, str]] = []
        for queue, envelope in transport.captured:
            # kombu's Redis transport adds the priority to the list's name unless it is 0, and
            # Enrolink sends no priorities.
            if envelope["properties"].get("priority"):
                raise ValueError(
                    f"Task message {envelope['headers'].get('id')} has priority "
                    f"{envelope['properties']['priority']}, which this sender does not support. "
                    "Send it with workers.publisher.publish_messages instead."
                )
            built.append((queue, dumps(envelope)))  # type: ignore[no-untyped-call]
        transport.captured.clear()
        return built

    async def send(self, messages: Sequence[PendingMessage]) -> PublishOutcome:
        """Push the messages in one pipeline; when that fails, all of them count as unsent."""
        try:
            built = self.build(messages)
            async with self._client.pipeline(transaction=False) as pipeline:
                for queue, payload in built:
                    pipeline.lpush(queue, payload)
                await pipeline.execute()
        except Exception as error:
            return PublishOutcome.none_sent(messages, error)
        return PublishOutcome.all_sent(messages)

    async def close(self) -> None:
        await self._client.aclose()
        self._connection.release()  # type: ignore[no-untyped-call]
