"""The API's in-loop sender writes the messages kombu would, and never blocks the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import redis
import structlog.testing

import workers.async_sender
from models.outbox import ROLL_UP_TASK, PendingMessage
from tests.workers.conftest import WorkerStack
from workers.async_sender import AsyncTaskSender
from workers.publisher import publish_messages
from workers.task_messages import task_options

# The maximum pause of the event loop that the test accepts while a send waits on Redis.
MAX_LOOP_PAUSE_SECONDS = 0.5
# Headers and properties that are new for every message (task id, delivery tag).
PER_MESSAGE = {"headers": ("id", "root_id"), "properties": ("correlation_id", "delivery_tag")}


def _without_per_message_values(raw: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(raw)
    for part, keys in PER_MESSAGE.items():
        for key in keys:
            envelope[part].pop(key)
    return envelope


async def test_message_matches_kombu_message(worker_stack: WorkerStack) -> None:
    app = worker_stack.celery_app()
    first = PendingMessage(6, ROLL_UP_TASK, {"administrative_enrolment_ids": [2], "reason": "y"})
    message = PendingMessage(7, ROLL_UP_TASK, {"administrative_enrolment_ids": [3], "reason": "x"})
    sender = AsyncTaskSender(app)

    try:
        # Celery builds the task's first message, and the sender keeps it as the template
        # that the second one is built from.
        assert (await sender.send([first])).published == [6]
        publish_messages(app, [message])
        outcome = await sender.send([message])
    finally:
        await sender.close()

    assert outcome.published == [7]
    ours, kombus = _pushed(worker_stack)[:2]
    assert _without_per_message_values(ours) == _without_per_message_values(kombus)
    body = json.loads(base64.b64decode(json.loads(ours)["body"]))
    assert body[1] == {"administrative_enrolment_ids": [3], "reason": "x", "outbox_id": 7}


async def test_templated_messages_get_own_ids(worker_stack: WorkerStack) -> None:
    app = worker_stack.celery_app()
    messages = [
        PendingMessage(outbox_id, ROLL_UP_TASK, {"administrative_enrolment_ids": [outbox_id]})
        for outbox_id in (11, 12, 13)
    ]
    sender = AsyncTaskSender(app)

    try:
        outcome = await sender.send(messages)
    finally:
        await sender.close()

    assert outcome.published == [11, 12, 13]
    envelopes = [json.loads(raw) for raw in _pushed(worker_stack)]
    task_ids = {envelope["headers"]["id"] for envelope in envelopes}
    assert len(task_ids) == 3
    assert len({envelope["properties"]["delivery_tag"] for envelope in envelopes}) == 3
    for envelope in envelopes:
        assert envelope["headers"]["root_id"] == envelope["headers"]["id"]
        assert envelope["properties"]["correlation_id"] == envelope["headers"]["id"]
    bodies = [json.loads(base64.b64decode(envelope["body"]))[1] for envelope in envelopes]
    # LPUSH puts the last message first.
    assert [body["outbox_id"] for body in bodies] == [13, 12, 11]
    assert [body["administrative_enrolment_ids"] for body in bodies] == [[13], [12], [11]]


async def test_row_dependent_header_gets_no_template(
    worker_stack: WorkerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A message value that depends on the row and that the template does not fill in, as a
    # later Celery release could add: here a header carrying the outbox id.
    def options_with_row_header(message: PendingMessage) -> dict[str, Any]:
        return {**task_options(message), "headers": {"outbox_row": message.outbox_id}}

    monkeypatch.setattr(workers.async_sender, "task_options", options_with_row_header)
    app = worker_stack.celery_app()
    messages = [
        PendingMessage(outbox_id, ROLL_UP_TASK, {"administrative_enrolment_ids": [outbox_id]})
        for outbox_id in (21, 22)
    ]
    sender = AsyncTaskSender(app)

    try:
        with structlog.testing.capture_logs() as logs:
            outcome = await sender.send(messages)
    finally:
        await sender.close()

    assert outcome.published == [21, 22]
    headers = [json.loads(raw)["headers"] for raw in _pushed(worker_stack)]
    assert [header["outbox_row"] for header in headers] == [22, 21]
    unused = [entry for entry in logs if entry["event"] == "outbox.message_template_unused"]
    assert [entry["task"] for entry in unused] == [ROLL_UP_TASK]


def _pushed(worker_stack: WorkerStack) -> list[bytes]:
    """Return the messages on the roll-up queue, newest first."""
    client = redis.Redis.from_url(worker_stack.redis_url)
    try:
        raw: list[bytes] = client.lrange(worker_stack.overrides["ENROLINK_ROLL_UP_QUEUE"], 0, -1)
    finally:
        client.close()
    return raw


async def test_silent_redis_does_not_block_loop(worker_stack: WorkerStack) -> None:
    # A server that accepts connections and never replies, like a hung Redis.
    open_connections: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = worker_stack.celery_app(ENROLINK_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    sender = AsyncTaskSender(app)
    message = PendingMessage(8, ROLL_UP_TASK, {"administrative_enrolment_ids": [4]})
    pauses: list[float] = []
    sending = asyncio.create_task(sender.send([message]))
    try:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not sending.done():
            await asyncio.sleep(0.01)
            pauses.append(loop.time() - last)
            last = loop.time()
        outcome = sending.result()
    finally:
        await sender.close()
        for writer in open_connections:
            writer.close()
        server.close()
        await server.wait_closed()

    assert outcome.unsent == [8]
    assert outcome.published == []
    assert "Timeout" in (outcome.error or "")
    assert max(pauses) < MAX_LOOP_PAUSE_SECONDS
