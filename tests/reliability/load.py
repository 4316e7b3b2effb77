"""A steady, bounded load on /graphql from loopback threads, and a burst of aborted requests.

Writers record results on linked session enrolments. Each writer owns its own (enrolment,
unit) pairs, so the last value it saw acknowledged for a pair is the pair's value, unless a
later request of the same writer that got no response was committed. Readers send
nested queries. Every request has a timeout, and the loops stop at a count or when told.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from tests.reliability.client import RECORD_RESULT

REQUEST_TIMEOUT_SECONDS = 10.0
# Pause between one thread's requests: about 25 requests per second per thread, a steady load
# that leaves the 2-core machine room for the faults and the worker.
PAUSE_SECONDS = 0.04
OUTCOMES = ["COMPETENCY_ACHIEVED", "COMPETENCY_NOT_ACHIEVED", "CONTINUING", "NOT_YET_STARTED",
            "RPL_GRANTED", "CREDIT_TRANSFER", "WITHDRAWN"]  # fmt: skip

NESTED_QUERY = """
query ($id: ID!) {
  enrolment(id: $id) {
    status
    rollUp { pending lastComputedAt }
    results { outcomeCode startDate endDate recordedAt sourceResult { id outcomeCode } }
    linkedEnrolments {
      id
      occurrence { code units { code } }
      results { outcomeCode recordedAt unit { code } }
    }
  }
}
"""


@dataclass(frozen=True)
class Key:
    """A session enrolment and one of its units, and the dates results may take."""

    enrolment_id: str
    unit_id: str
    start_date: date
    end_date: date


@dataclass(frozen=True)
class Attempt:
    key: Key
    outcome: str
    start_date: date
    end_date: date
    acknowledged: bool
    result_id: str | None = None
    recorded_at: str | None = None
    error: str | None = None


@dataclass
class LoadLog:
    """Everything the threads sent, in the order each thread sent it."""

    attempts: list[Attempt] = field(default_factory=list)
    reads: int = 0
    read_failures: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)
            if not attempt.acknowledged:
                kind = (attempt.error or "unknown").split(":")[0]
                self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1

    @property
    def acknowledged(self) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.acknowledged]

    def possible_values(self) -> dict[Key, list[tuple[str, date, date] | None]]:
        """Return, per key, the values it may hold now: the last acknowledged or a later try.

        None stands for the value before this log began, which a key keeps when none of its
        writes was acknowledged.
        """
        possible: dict[Key, list[tuple[str, date, date] | None]] = {}
        for attempt in self.attempts:
            value = (attempt.outcome, attempt.start_date, attempt.end_date)
            if attempt.acknowledged:
                possible[attempt.key] = [value]
            else:
                possible.setdefault(attempt.key, [None]).append(value)
        return possible


def _classify(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


class LoadThreads:
    """Writer and reader threads that run until :meth:`stop` or until ``max_requests`` each."""

    def __init__(
        self,
        graphql_url: str,
        token: str,
        writer_keys: list[list[Key]],
        read_ids: list[str],
        *,
        readers: int = 1,
        max_requests: int = 2000,
        seed: int = 1,
    ) -> None:
        self.graphql_url = graphql_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.log = LoadLog()
        self.stopping = threading.Event()
        self.max_requests = max_requests
        self.threads = [
            threading.Thread(target=self._write, args=(keys, seed + number), daemon=True)
            for number, keys in enumerate(writer_keys)
        ] + [
            threading.Thread(target=self._read, args=(read_ids, seed + 100 + number), daemon=True)
            for number in range(readers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> LoadLog:
        self.stopping.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT_SECONDS + 5)
        assert not any(thread.is_alive() for thread in self.threads), "a load thread hung"
        return self.log

    def _write(self, keys: list[Key], seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            for _ in range(self.max_requests):
                if self.stopping.is_set():
                    return
                key = rng.choice(keys)
                span = (key.end_date - key.start_date).days
                start = key.start_date + timedelta(days=rng.randint(0, span))
                end = start + timedelta(days=rng.randint(0, (key.end_date - start).days))
                outcome = rng.choice(OUTCOMES)
                self.log.add(self._record(http, key, outcome, start, end))
                time.sleep(PAUSE_SECONDS)

    def _record(
        self, http: httpx.Client, key: Key, outcome: str, start: date, end: date
    ) -> Attempt:
        variables = {
            "input": {
                "enrolmentId": key.enrolment_id,
                "unitId": key.unit_id,
                "outcome": outcome,
                "startDate": start.isoformat(),
                "endDate": end.isoformat(),
            }
        }
        document = RECORD_RESULT.replace("result { id outcomeCode }", "result { id recordedAt }")
        try:
            response = http.post(self.graphql_url, json={"query": document, "variables": variables})
        except httpx.HTTPError as error:
            return Attempt(key, outcome, start, end, False, error=_classify(error))
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {}
        payload = (body.get("data") or {}).get("recordResult")
        if response.status_code != 200 or body.get("errors") or not payload:
            failure = f"HTTP {response.status_code}: {response.text[:300]}"
            return Attempt(key, outcome, start, end, False, error=failure)
        if payload["errors"]:
            # A rule rejected it; nothing was written, and the load never sends such values.
            raise AssertionError(f"load request rejected: {payload['errors']}")
        result = payload["result"]
        return Attempt(key, outcome, start, end, True, result["id"], result["recordedAt"])

    def _read(self, enrolment_ids: list[str], seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            for _ in range(self.max_requests):
                if self.stopping.is_set():
                    return
                variables = {"id": rng.choice(enrolment_ids)}
                ok = False
                try:
                    response = http.post(
                        self.graphql_url, json={"query": NESTED_QUERY, "variables": variables}
                    )
                    ok = response.status_code == 200 and not response.json().get("errors")
                except (httpx.HTTPError, json.JSONDecodeError):
                    ok = False
                with self.log.lock:
                    self.log.reads += 1
                    self.log.read_failures += not ok
                time.sleep(PAUSE_SECONDS)


@dataclass
class AbortReport:
    sent: int = 0
    unanswered_at_abort: int = 0


async def _abort_one(
    port: int, request: bytes, delay: float, report: AbortReport, started: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    report.sent += 1
    started.set()
    await asyncio.sleep(delay)
    try:
        await asyncio.wait_for(reader.read(1), timeout=0.001)
    except TimeoutError:
        report.unanswered_at_abort += 1
    # SO_LINGER with a zero timeout makes close() send a reset: the client vanishes mid-request.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def abort_requests(
    port: int, token: str, bodies: list[dict[str, Any]], *, request_id_prefix: str, seed: int = 1
) -> AbortReport:
    """Send each body to /graphql on its own connection and reset it 0 to 300 ms later.

    Request number n carries the request id ``<request_id_prefix>-<n>``, so the server's log
    lines of each aborted request can be found.
    """
    rng = random.Random(seed)
    report = AbortReport()

    def raw(number: int, body: dict[str, Any]) -> bytes:
        payload = json.dumps(body).encode()
        head = (
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: {request_id_prefix}-{number}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    async def run() -> None:
        started = asyncio.Event()
        await asyncio.gather(
            *(
                _abort_one(port, raw(number, body), rng.uniform(0.0, 0.3), report, started)
                for number, body in enumerate(bodies)
            )
        )

    asyncio.run(run())
    return report
