"""The ladder's table of figures and the ratios between levels."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import version
from pathlib import Path

from bench.ladder import Level

MEGABYTE = 1024 * 1024


def machine() -> str:
    """Return cores, memory and CPU model of this machine, read from /proc."""
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} cores ({model}), {memory_kb / MEGABYTE:.1f} GiB memory"


def versions() -> str:
    packages = (
        "strawberry-graphql",
        "graphql-core",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
    )
    listed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {platform.python_version()}, {listed}"


def same_data(levels: list[Level]) -> bool:
    """Return whether every level returned the same parsed response."""
    first = json.loads(levels[0].body)
    return all(json.loads(level.body) == first for level in levels[1:])


def table(levels: list[Level]) -> str:
    header = (
        "| level | what | p50 c=1 | p95 c=1 | p50 c=8 | p95 c=8 | req/s c=8 | CPU s/req "
        "| SQL/req | SQL at 50 / 500 | peak RSS | bytes |"
    )
    lines = [header, "|" + " --- |" * 12]
    for level in levels:
        one, eight = level.phase(1), level.phase(8)
        lines.append(
            f"| {level.name} | {level.description} "
            f"| {one.p50 * 1000:,.0f} ms | {one.p95 * 1000:,.0f} ms "
            f"| {eight.p50 * 1000:,.0f} ms | {eight.p95 * 1000:,.0f} ms "
            f"| {eight.requests_per_second:,.1f} | {level.cpu_per_request:.3f} "
            f"| {level.statements_per_request:,.1f} "
            f"| {level.statements_at_50:,.0f} / {level.statements_at_500:,.0f} "
            f"| {level.peak_rss / MEGABYTE:,.0f} MB | {len(level.body):,} |"
        )
    return "\n".join(lines)


def _find(levels: list[Level], name: str, description_part: str) -> Level:
    return next(
        level for level in levels if level.name == name and description_part in level.description
    )


def ratios(levels: list[Level]) -> list[str]:
    """Return the ratios of p50 latency at concurrency 1, and how they compare with the targets."""
    l1 = _find(levels, "L1", "")
    l3 = _find(levels, "L3", "")
    lines = []
    for label in ("resolvers", "compiled"):
        l4 = _find(levels, "L4", label)
        l5 = _find(levels, "L5", label)
        l5_over_l1 = l5.phase(1).p50 / l1.phase(1).p50
        l3_over_l5 = l3.phase(1).p50 / l5.phase(1).p50
        lines += [
            f"{label}: L5/L1 = {l5_over_l1:.1f}x (target at most 3x: "
            f"{'met' if l5_over_l1 <= 3 else 'missed'})",
            f"{label}: L3/L5 = {l3_over_l5:.1f}x (target at least 10x: "
            f"{'met' if l3_over_l5 >= 10 else 'missed'})",
            f"{label}: L4/L1 = {l4.phase(1).p50 / l1.phase(1).p50:.1f}x, "
            f"L5/L4 = {l5.phase(1).p50 / l4.phase(1).p50:.2f}x",
            f"{label}: SQL statements at 50 and 500 enrolments: "
            f"{l5.statements_at_50:.0f} and {l5.statements_at_500:.0f} "
            f"({'same' if l5.statements_at_50 == l5.statements_at_500 else 'different'})",
            f"{label}: L5 peak RSS {l5.peak_rss / MEGABYTE:.0f} MB (target under 300 MB: "
            f"{'met' if l5.peak_rss < 300 * MEGABYTE else 'missed'})",
        ]
    return lines
