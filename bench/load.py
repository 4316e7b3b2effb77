"""A bounded closed-loop load: a fixed number of requests, ``concurrency`` at a time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """How many requests one measurement sends, and the time after which it sends no more."""

    concurrency: int
    requests: int
    budget_seconds: float


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    latencies: list[float]
    wall_seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        # Nearest-rank percentile; with fewer than 20 samples it is the slowest request.
        rank = max(1, round(0.95 * len(ordered) + 0.499))
        return ordered[min(rank, len(ordered)) - 1]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.wall_seconds


async def run_load(request: Callable[[], Awaitable[None]], phase: Phase) -> LoadResult:
    """Send ``phase.requests`` requests from ``phase.concurrency`` workers and time each one.

    Workers stop taking new requests once the budget has passed; each worker completes at
    least one, so every phase has ``concurrency`` samples or more.
    """
    remaining = phase.requests
    latencies: list[float] = []
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal remaining
        done = 0
        while remaining > 0:
            if done and time.perf_counter() - started > phase.budget_seconds:
                return
            remaining -= 1
            request_started = time.perf_counter()
            await request()
            latencies.append(time.perf_counter() - request_started)
            done += 1

    await asyncio.gather(*(worker() for _ in range(phase.concurrency)))
    return LoadResult(phase.concurrency, latencies, time.perf_counter() - started)
