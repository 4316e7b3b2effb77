"""Roll-up and reconciler over bench-large: set-based statements run directly, and Celery."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.celery_bench import roll_up_through_celery
from bench.database import bench_database, sqlalchemy_url
from bench.datasets import DATASETS, load
from bench.targets import Target, ratio_at_most, table
from models.db import create_engine, create_sessionmaker
from models.reconciliation import reconcile
from models.roll_up import roll_up

# A worker rolls up at most this many enrolments per transaction in this bench, the same as
# the default ENROLINK_RECONCILE_BATCH_SIZE, so locks are held for one batch at a time.
BATCH = 1_000
# One worker process per core of the 2-core machine the figures in docs/benchmarks.md come from.
CELERY_CONCURRENCY = 2
# Ids per roll-up task sent through Celery, each round starting with every result stale. A task
# costs about 24 ms besides its statement (measured with one id per task), which is under 10% of
# the statement's time from 200 ids up (about 0.5 ms per stale enrolment directly). Larger
# batches hold their locks longer and can leave one worker idle at the end. In the recorded run
# 500 and 1,000 took about the same and 200 a fifth longer, so 500 is the size
# docs/benchmarks.md recommends.
CELERY_BATCHES = (200, 500, 1_000)
# The reconciler must get through bench-large with 1% orphans within this.
RECONCILER_LIMIT_SECONDS = 30.0

_CLEAR_ADMINISTRATIVE_RESULTS = text(
    "UPDATE enrolled_units r SET outcome = NULL, start_date = NULL, "
    "end_date = NULL, source_enrolled_unit_id = NULL, recorded_at = NULL "
    "FROM enrolments e JOIN occurrences o ON o.id = e.occurrence_id "
    "WHERE e.id = r.enrolment_id AND o.kind = 'ADMINISTRATIVE'"
)


async def _roll_up_all(
    sessionmaker: async_sessionmaker[AsyncSession], ids: list[int], batch: int
) -> tuple[float, int]:
    started = time.perf_counter()
    changed = 0
    for start in range(0, len(ids), batch):
        async with sessionmaker() as session:
            counts = await roll_up(session, ids[start : start + batch])
            await session.commit()
            changed += counts.changed
    return time.perf_counter() - started, changed


async def _clear_results(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await session.execute(_CLEAR_ADMINISTRATIVE_RESULTS)
        await session.commit()


async def run_workers_bench(server_url: str) -> tuple[list[str], list[Target]]:
    """Time the roll-ups and the reconciler; return the lines to print and the targets."""
    lines: list[str] = []
    targets: list[Target] = []
    async with bench_database(server_url) as url:
        await load(url, DATASETS["bench-large"])
        engine = create_engine(sqlalchemy_url(url), pool_size=2, max_overflow=0)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with sessionmaker() as session:
                ids = list(
                    (
                        await session.execute(
                            text(
                                "SELECT e.id FROM enrolments e JOIN occurrences o "
                                "ON o.id = e.occurrence_id WHERE o.kind = 'ADMINISTRATIVE' "
                                "ORDER BY e.id"
                            )
                        )
                    ).scalars()
                )
            # Clear every administrative result, so the first roll-up rewrites all of them.
            await _clear_results(sessionmaker)

            direct_seconds, changed = await _roll_up_all(sessionmaker, ids, len(ids))
            lines.append(
                f"roll-up of all {len(ids):,} administrative enrolments in one transaction, "
                f"all results stale: {direct_seconds:.2f} s, {changed:,} results changed"
            )
            seconds, changed = await _roll_up_all(sessionmaker, ids, len(ids))
            lines.append(
                f"roll-up of the same {len(ids):,} enrolments again, nothing stale: "
                f"{seconds:.2f} s, {changed:,} results changed"
            )
            seconds, changed = await _roll_up_all(sessionmaker, ids, BATCH)
            lines.append(
                f"roll-up in transactions of {BATCH:,} enrolments, nothing stale: "
                f"{seconds:.2f} s, {changed:,} results changed"
            )

            # Every round rewrites all 240,000 results, the same work as the first direct run.
            rounds = await roll_up_through_celery(
                sessionmaker,
                sqlalchemy_url(url),
                ids,
                concurrency=CELERY_CONCURRENCY,
                rounds=[(batch, "all results stale") for batch in CELERY_BATCHES],
                before_round=lambda: _clear_results(sessionmaker),
            )
            for measured in rounds:
                lines.append(measured.line)
                target = ratio_at_most(
                    f"roll-up of {len(ids):,} enrolments through Celery, {measured.batch:,} "
                    "per task / the direct statement",
                    measured.seconds,
                    direct_seconds,
                    2,
                    "s",
                )
                # A round that timed out has no end-to-end time to judge.
                targets.append(target if measured.finished else replace(target, met=False))

            async with sessionmaker() as session:
                # 1% orphans: every hundredth session enrolment deleted with its link left open.
                orphaned = await session.execute(
                    text(
                        "UPDATE enrolments SET deleted_at = now() WHERE id IN ("
                        "SELECT session_enrolment_id FROM enrolment_links WHERE id % 100 = 0)"
                    )
                )
                await session.commit()
            started = time.perf_counter()
            async with sessionmaker() as session:
                run = await reconcile(
                    session, trigger="bench", batch_size=BATCH, commit_batches=True
                )
                await session.commit()
            seconds = time.perf_counter() - started
            counts = ", ".join(
                f"{count.cause} {count.found}/{count.repaired}"
                for count in run.counts
                if count.found
            )
            lines.append(
                f"reconciler over bench-large with {orphaned.rowcount:,} orphaned links (1%): "  # type: ignore[attr-defined]
                f"{seconds:.2f} s; found/repaired: {counts}"
            )
            targets.append(
                Target(
                    "reconciler over bench-large with 1% orphaned links",
                    f"{seconds:.2f} s",
                    f"under {RECONCILER_LIMIT_SECONDS:g} s",
                    seconds < RECONCILER_LIMIT_SECONDS,
                )
            )
        finally:
            await engine.dispose()
    return lines, targets


def main(server_url: str) -> None:
    lines, targets = asyncio.run(run_workers_bench(server_url))
    print("\n".join(lines))
    print()
    print(table(targets))
