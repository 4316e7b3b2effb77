"""L4: Enrolink's schema executed in-process with ``schema.execute`` and a real Context.

Runs in a subprocess of its own (``python -m bench inprocess``) so that its CPU time and peak
memory are its own, and prints one JSON object with the measurements.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.load import Phase, run_load
from bench.servers import peak_rss_bytes, process_cpu_seconds
from enrolink.app import create_graphql
from enrolink.settings import load_settings
from models.db import create_engine_from_settings, create_sessionmaker
from models.enums import TokenRole
from schema.compiled import RawJSON, compiled_reads
from schema.context import Caller, Context


def _encode(data: Any) -> bytes:
    if isinstance(data, RawJSON):
        return b'{"data":' + data.text + b"}"
    return json.dumps({"data": data}, separators=(",", ":")).encode()


async def measure(
    document: str, variables: dict[str, Any], *, compiled: bool, phases: list[Phase]
) -> dict[str, Any]:
    """Return the measurements of L4 as a JSON-ready dict."""
    import os

    settings = load_settings()
    schema = create_graphql(settings, None).schema
    engine = create_engine_from_settings(settings, application_name="enrolink-bench")
    sessionmaker = create_sessionmaker(engine)
    totals = {"statements": 0}

    def count(*_arguments: Any) -> None:
        totals["statements"] += 1

    event.listen(Engine, "before_cursor_execute", count)
    last: dict[str, bytes] = {}

    async def request(values: dict[str, Any] = variables) -> None:
        async with sessionmaker() as session:
            context = Context(
                session=session,
                caller=Caller(role=TokenRole.STAFF),
                request_id=uuid.uuid4().hex,
                default_page_size=settings.default_page_size,
                max_page_size=settings.max_page_size,
            )
            with compiled_reads(compiled):
                result = await schema.execute(document, values, context_value=context)
            assert not result.errors, result.errors
            # Encoding is part of the work: an HTTP server must do it for every response.
            last["body"] = _encode(result.data)

    try:
        await request()
        statements_before = totals["statements"]
        await request({**variables, "first": 50})
        statements_at_50 = totals["statements"] - statements_before
        statements_before = totals["statements"]
        await request()
        statements_at_500 = totals["statements"] - statements_before

        pid = os.getpid()
        cpu_before = process_cpu_seconds(pid)
        statements_before = totals["statements"]
        results = [await run_load(request, phase) for phase in phases]
        requests = sum(result.requests for result in results)
        return {
            "phases": [
                {"concurrency": r.concurrency, "latencies": r.latencies, "wall": r.wall_seconds}
                for r in results
            ],
            "cpu_per_request": (process_cpu_seconds(pid) - cpu_before) / requests,
            "statements_per_request": (totals["statements"] - statements_before) / requests,
            "statements_at_50": statements_at_50,
            "statements_at_500": statements_at_500,
            "peak_rss": peak_rss_bytes(pid),
            "body": last["body"].decode(),
            "measured_at": time.time(),
        }
    finally:
        await engine.dispose()


def main(document: str, variables: dict[str, Any], compiled: bool, phases: list[Phase]) -> None:
    print(json.dumps(asyncio.run(measure(document, variables, compiled=compiled, phases=phases))))
