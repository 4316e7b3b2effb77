"""`enrolink reconcile`: one reconciliation from the command line, its counts printed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.tables import Enrolment, EnrolmentLink
from tests.workers.builders import Builder, linked_client
from tests.workers.conftest import WorkerStack

# Python start-up, imports and one small reconciliation take about 2 s here.
COMMAND_TIMEOUT_SECONDS = 60


async def test_reconcile_command_prints_counts(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    async with sessionmaker() as session, session.begin():
        linked = await linked_client(Builder(session), [[0], [1]])
        await session.execute(
            update(Enrolment)
            .where(Enrolment.id == linked.session_enrolment_ids[0])
            .values(deleted_at=func.now())
        )
    stack = WorkerStack(database_url=database_url, redis_url=redis_url, folder=tmp_path)

    try:
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "enrolink", "reconcile"],
            env=stack.environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        # The command publishes a roll-up to the stack's queue, which no worker consumes.
        stack.stop()

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("Reconciliation run ")
    assert "  ENROLMENT_DELETED: found 1, repaired 1" in lines
    assert "  CLIENT_MISMATCH: found 0, repaired 0" in lines
    assert len(lines) == 7
    async with sessionmaker() as session:
        link = await session.get_one(EnrolmentLink, linked.link_ids[0])
    assert link.unlinked_at is not None
