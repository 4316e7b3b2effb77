"""The ladder's table of figures, the ratios between levels, and the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import version
from pathlib import Path

from bench.ladder import Level
from bench.targets import Target, ratio_at_least, ratio_at_most

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


def ratios(levels: list[Level]) -> tuple[list[Target], list[str]]:
    """Judge the ladder's targets for the path Enrolink serves by default, the compiled reads.

    Returns the targets and, for both paths, lines of the same ratios for reading.
    """
    l1 = _find(levels, "L1", "")
    l3 = _find(levels, "L3", "")
    targets: list[Target] = []
    lines = []
    for label in ("resolvers", "compiled"):
        l4 = _find(levels, "L4", label)
        l5 = _find(levels, "L5", label)
        judged = [
            ratio_at_most(
                f"nested read, {label}: L5 over L1, p50 at concurrency 1",
                l5.phase(1).p50,
                l1.phase(1).p50,
                3,
                "ms",
            ),
            ratio_at_least(
                f"nested read, {label}: L3 over L5, p50 at concurrency 1",
                l3.phase(1).p50,
                l5.phase(1).p50,
                10,
                "ms",
            ),
            Target(
                f"nested read, {label}: SQL statements at 50 and 500 enrolments",
                f"{l5.statements_at_50:.0f} and {l5.statements_at_500:.0f}",
                "the same",
                l5.statements_at_50 == l5.statements_at_500,
            ),
            Target(
                f"nested read, {label}: L5 server peak RSS",
                f"{l5.peak_rss / MEGABYTE:.0f} MB",
                "under 300 MB",
                l5.peak_rss < 300 * MEGABYTE,
            ),
        ]
        lines += [
            f"{target.comparison}: {target.measured} ({target.limit}: "
            f"{'met' if target.met else 'missed'})"
            for target in judged
        ]
        lines.append(
            f"nested read, {label}: L4/L1 = {l4.phase(1).p50 / l1.phase(1).p50:.1f}x, "
            f"L5/L4 = {l5.phase(1).p50 / l4.phase(1).p50:.2f}x"
        )
        if label == "compiled":
            targets += judged
    return targets, lines
