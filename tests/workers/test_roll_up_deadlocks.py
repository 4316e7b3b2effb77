"""A roll-up and a write that requests one wait for each other instead of deadlocking.

Each test holds one transaction the way a roll-up task does and starts the other the way a
request does, so the interleaving that deadlocked is the one that runs.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import Outcome
from models.outbox import request_roll_up
from models.results import record_result
from models.roll_up import lock_enrolments, roll_up
from models.tables import Enrolment
from tests.workers.builders import Builder, linked_client, minutes, results_by_unit
from tests.workers.conftest import wait_until

WAIT_SECONDS = 10.0

_PHYSICAL_ORDER = text("SELECT id FROM enrolments WHERE id = ANY(:ids) ORDER BY ctid")
_WAITING_FOR_LOCK = text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid")


async def backend_pid(session: AsyncSession) -> int:
    pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def wait_for_lock_wait(observer: AsyncSession, pid: int, what: str) -> None:
    """Wait until the PostgreSQL backend ``pid`` waits for a lock."""

    async def waiting() -> bool:
        found = await observer.scalar(_WAITING_FOR_LOCK, {"pid": pid})
        await observer.rollback()
        return bool(found)

    await wait_until(waiting, within_seconds=WAIT_SECONDS, what=what)


async def test_request_locks_enrolments_in_id_order(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # given: two administrative enrolments, the lower id stored after the higher one, so a scan
    # in table order (a sequential or bitmap scan) meets the higher id first
    async with sessionmaker() as session, session.begin():
        builder = Builder(session)
        catalogue = await builder.catalogue(1)
        occurrence_id = catalogue.administrative_occurrence_id
        lower = await builder.enrol(await builder.client(), occurrence_id)
        higher = await builder.enrol(await builder.client(), occurrence_id)
    async with sessionmaker() as session, session.begin():
        # An updated row's new version goes after the rows already in the page.
        await session.execute(
            update(Enrolment)
            .where(Enrolment.id == lower)
            .values(roll_up_version=Enrolment.roll_up_version)
        )
    async with sessionmaker() as session:
        stored = (await session.execute(_PHYSICAL_ORDER, {"ids": [lower, higher]})).scalars()
        assert list(stored) == [higher, lower]

    async with (
        sessionmaker() as task,
        sessionmaker() as request,
        sessionmaker() as observer,
    ):
        # when: a roll-up task has locked the lower id, as it locks in id order
        await task.execute(text("SET LOCAL lock_timeout = '5s'"))
        await lock_enrolments(task, [lower])
        # and: a request for a roll-up of both waits for it. With index and bitmap scans off it
        # reads the table in stored order, as PostgreSQL's plan for a small table does.
        await request.execute(text("SET LOCAL enable_indexscan = off"))
        await request.execute(text("SET LOCAL enable_bitmapscan = off"))
        pid = await backend_pid(request)
        requesting = asyncio.create_task(request_roll_up(request, [lower, higher], reason="test"))
        try:
            await wait_for_lock_wait(observer, pid, "the request to wait for the task's lock")

            # then: the task still locks the higher id, and the request goes on after its commit
            locked = await lock_enrolments(task, [lower, higher])
            await task.commit()
            await asyncio.wait_for(requesting, WAIT_SECONDS)
        finally:
            requesting.cancel()
        await request.commit()

    assert [row.id for row in locked] == [lower, higher]
    async with sessionmaker() as session:
        versions = await session.execute(
            text("SELECT roll_up_version FROM enrolments WHERE id = ANY(:ids) ORDER BY id"),
            {"ids": [lower, higher]},
        )
        assert list(versions.scalars()) == [1, 1]


async def test_roll_up_takes_result_being_rerecorded(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # given: a session result that the administrative enrolment has not rolled up yet
    async with sessionmaker() as session, session.begin():
        linked = await linked_client(Builder(session), [[0]])
        unit_id = linked.catalogue.unit_ids[0]
        session_enrolment_id = linked.session_enrolment_ids[0]
        source_id = await Builder(session).record(
            session_enrolment_id,
            unit_id,
            Outcome.COMPETENCY_ACHIEVED.value,
            recorded_at=minutes(1),
        )
    administrative_id = linked.administrative_enrolment_id

    async with (
        sessionmaker() as task,
        sessionmaker() as request,
        sessionmaker() as observer,
    ):
        # when: a roll-up task has locked the administrative enrolment
        await task.execute(text("SET LOCAL lock_timeout = '5s'"))
        await lock_enrolments(task, [administrative_id])
        # and: a trainer records the session result again, which waits to request a roll-up
        pid = await backend_pid(request)
        recording = asyncio.create_task(
            record_result(
                request,
                enrolment_id=session_enrolment_id,
                unit_id=unit_id,
                outcome=Outcome.COMPETENCY_NOT_ACHIEVED,
                start_date=None,
                end_date=None,
                recorded_by="trainer",
            )
        )
        try:
            await wait_for_lock_wait(observer, pid, "the recording to wait for the task's lock")

            # then: the roll-up points the administrative result at the session result, whose
            # foreign-key check must not wait for the recording's lock on that row
            counts = await roll_up(task, [administrative_id])
            await task.commit()
            await asyncio.wait_for(recording, WAIT_SECONDS)
        finally:
            recording.cancel()
        await request.commit()

    assert counts.changed == 1
    async with sessionmaker() as session:
        rolled_up = (await results_by_unit(session, administrative_id))[unit_id]
        pending = await session.scalar(
            text(
                "SELECT roll_up_version > roll_up_computed_version FROM enrolments WHERE id = :id"
            ),
            {"id": administrative_id},
        )
    assert rolled_up.source_enrolled_unit_id == source_id
    assert rolled_up.outcome == Outcome.COMPETENCY_ACHIEVED.value
    # The recording committed after the roll-up, so its change waits for the next one.
    assert pending is True
