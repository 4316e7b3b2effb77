"""The API's in-loop sender writes the messages kombu would, and never blocks the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import redis

from models.outbox import ROLL_UP_TASK, PendingMessage
from tests.workers.conftest import WorkerStack
from workers.async_sender import AsyncTaskSender
from workers.publisher import publish_messages

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
    message = PendingMessage(7, ROLL_UP_TASK, {"administrative_enrolment_ids": [3], "reason": "x"})
    sender = AsyncTaskSender(app)

    publish_messages(app, [message])
    try:
        outcome = await sender.send([message])
    finally:
        await sender.close()

    assert outcome.published == [7]
    client = redis.Redis.from_url(worker_stack.redis_url)
    try:
        # LPUSH puts the newer message, the sender's, first.
        ours, kombus = client.lrange(worker_stack.overrides["ENROLINK_ROLL_UP_QUEUE"], 0, -1)
    finally:
        client.close()
    assert _without_per_message_values(ours) == _without_per_message_values(kombus)
    body = json.loads(base64.b64decode(json.loads(ours)["body"]))
    assert body[1] == {"administrative_enrolment_ids": [3], "reason": "x", "outbox_id": 7}


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
