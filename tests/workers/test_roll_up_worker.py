"""Roll-ups and reconciliation through real worker processes, Redis and PostgreSQL.

The tests of this module share one database and one worker, started once. Each test builds its
own client and enrolments, so the tests do not see each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.enums import Outcome
from models.outbox import RECONCILE_TASK, PendingMessage, request_roll_up, take_pending
from models.tables import EnrolmentLink, OutboxMessage, ReconciliationRun
from tests.workers.builders import (
    Builder,
    Linked,
    history_count,
    linked_client,
    minutes,
    results_by_unit,
)
from tests.workers.conftest import ServiceProcess, WorkerStack, wait_until
from workers.celery_app import EnrolinkCelery
from workers.publisher import publish_messages, publish_pending

ACHIEVED = Outcome.COMPETENCY_ACHIEVED.value
CONTINUING = Outcome.CONTINUING.value

# A roll-up through an idle worker takes well under a second. The bound allows for a loaded
# 2-core machine, so it only runs out when something is broken.
LANDED_WITHIN_SECONDS = 20.0

_WAITING_WORKERS = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database()
      AND application_name = 'enrolink-worker'
      AND wait_event_type = 'Lock'
    """
)


@pytest.fixture(scope="module")
def worker(module_worker_stack: WorkerStack) -> ServiceProcess:
    return module_worker_stack.start_worker()


@pytest.fixture(scope="module")
def celery_app(module_worker_stack: WorkerStack) -> Iterator[EnrolinkCelery]:
    yield module_worker_stack.celery_app()


async def _linked_with_results(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[Linked, list[PendingMessage]]:
    """Commit a linked client with two recorded session results and a roll-up request."""
    async with sessionmaker() as session:
        async with session.begin():
            builder = Builder(session)
            linked = await linked_client(builder, [[0, 1], [1]])
            units = linked.catalogue.unit_ids
            await builder.record(
                linked.session_enrolment_ids[0], units[0], ACHIEVED, recorded_at=minutes(1)
            )
            await builder.record(
                linked.session_enrolment_ids[1], units[1], CONTINUING, recorded_at=minutes(2)
            )
            await request_roll_up(
                session, [linked.administrative_enrolment_id], reason="results recorded"
            )
        # As the API does: the rows to publish are taken once the transaction has committed.
        return linked, take_pending(session)


async def _processed(sessionmaker: async_sessionmaker[AsyncSession], outbox_ids: list[int]) -> bool:
    async with sessionmaker() as session:
        unprocessed = (
            await session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.id.in_(outbox_ids), OutboxMessage.processed_at.is_(None))
            )
        ).scalar_one()
    return unprocessed == 0


async def _assert_rolled_up(sessionmaker: async_sessionmaker[AsyncSession], linked: Linked) -> None:
    units = linked.catalogue.unit_ids
    async with sessionmaker() as session:
        results = await results_by_unit(session, linked.administrative_enrolment_id)
        history = await history_count(session, linked.administrative_enrolment_id)
    assert results[units[0]].outcome == ACHIEVED
    assert results[units[1]].outcome == CONTINUING
    assert results[units[2]].outcome is None
    # One history row per changed result: the two that went from unrecorded to recorded.
    assert history == 2


async def test_worker_rolls_up_published_message(
    worker: ServiceProcess,
    celery_app: EnrolinkCelery,
    module_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    linked, pending = await _linked_with_results(module_sessionmaker)
    outbox_ids = [message.outbox_id for message in pending]

    await publish_pending(pending, module_sessionmaker, celery_app=celery_app)

    await wait_until(
        lambda: _processed(module_sessionmaker, outbox_ids),
        within_seconds=LANDED_WITHIN_SECONDS,
        what="the roll-up to be processed",
    )
    await _assert_rolled_up(module_sessionmaker, linked)
    async with module_sessionmaker() as session:
        row = await session.get_one(OutboxMessage, outbox_ids[0])
    assert row.published_at is not None
    assert row.publish_count == 1
    assert row.last_error is None


async def test_worker_duplicate_delivery_adds_no_history(
    worker: ServiceProcess,
    celery_app: EnrolinkCelery,
    module_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    linked, pending = await _linked_with_results(module_sessionmaker)
    outbox_id = pending[0].outbox_id

    # The same message twice, as after a relay republished a row whose task was still queued.
    first = publish_messages(celery_app, pending)
    second = publish_messages(celery_app, pending)

    assert first.published == [outbox_id]
    assert second.published == [outbox_id]

    def finished_for_row() -> list[dict[str, object]]:
        return [
            event for event in worker.events("task.finished") if event.get("outbox_id") == outbox_id
        ]

    async def both_finished() -> bool:
        return len(finished_for_row()) == 2

    await wait_until(
        both_finished, within_seconds=LANDED_WITHIN_SECONDS, what="both deliveries to finish"
    )
    await _assert_rolled_up(module_sessionmaker, linked)
    assert sum(1 for event in finished_for_row() if event.get("already_processed") == 1) == 1


async def test_two_workers_roll_up_same_enrolment(
    worker: ServiceProcess,
    module_worker_stack: WorkerStack,
    celery_app: EnrolinkCelery,
    module_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    second_worker = module_worker_stack.start_worker()
    linked, pending = await _linked_with_results(module_sessionmaker)
    async with module_sessionmaker() as session:
        async with session.begin():
            await request_roll_up(
                session, [linked.administrative_enrolment_id], reason="another change"
            )
        pending += take_pending(session)
    outbox_ids = [message.outbox_id for message in pending]

    async with module_sessionmaker() as holder, holder.begin():
        # While the test holds the enrolment's row lock, both roll-ups wait on it at once.
        await holder.execute(
            text("SELECT id FROM enrolments WHERE id = :id FOR UPDATE"),
            {"id": linked.administrative_enrolment_id},
        )
        await publish_pending(pending, module_sessionmaker, celery_app=celery_app)

        async def both_waiting() -> bool:
            async with module_sessionmaker() as session:
                waiting: int = (await session.execute(_WAITING_WORKERS)).scalar_one()
            return waiting == 2

        await wait_until(
            both_waiting,
            within_seconds=LANDED_WITHIN_SECONDS,
            what="two workers waiting for the enrolment's lock",
        )

    await wait_until(
        lambda: _processed(module_sessionmaker, outbox_ids),
        within_seconds=LANDED_WITHIN_SECONDS,
        what="both roll-ups to be processed",
    )
    await _assert_rolled_up(module_sessionmaker, linked)
    started_by = {
        process.name: {event.get("outbox_id") for event in process.events("task.started")}
        for process in (worker, second_worker)
    }
    assert all(started_by[name] & set(outbox_ids) for name in started_by), started_by


async def test_worker_reconciles_and_rolls_up(
    worker: ServiceProcess,
    celery_app: EnrolinkCelery,
    module_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    linked, pending = await _linked_with_results(module_sessionmaker)
    await publish_pending(pending, module_sessionmaker, celery_app=celery_app)
    await wait_until(
        lambda: _processed(module_sessionmaker, [pending[0].outbox_id]),
        within_seconds=LANDED_WITHIN_SECONDS,
        what="the first roll-up",
    )
    async with module_sessionmaker() as session, session.begin():
        # The first session enrolment is deleted behind the API's back: its link is orphaned.
        await session.execute(
            text("UPDATE enrolments SET deleted_at = now() WHERE id = :id"),
            {"id": linked.session_enrolment_ids[0]},
        )

    celery_app.send_task(RECONCILE_TASK, kwargs={"trigger": "test"}, retry=False)

    async def unit_unrecorded() -> bool:
        async with module_sessionmaker() as session:
            results = await results_by_unit(session, linked.administrative_enrolment_id)
        return results[linked.catalogue.unit_ids[0]].outcome is None

    await wait_until(
        unit_unrecorded,
        within_seconds=LANDED_WITHIN_SECONDS,
        what="the reconciler's roll-up to remove the deleted session's result",
    )
    async with module_sessionmaker() as session:
        link = await session.get_one(EnrolmentLink, linked.link_ids[0])
        run = (
            await session.execute(
                select(ReconciliationRun).where(ReconciliationRun.trigger == "test")
            )
        ).scalar_one()
        count_rows = await session.execute(
            text(
                "SELECT cause, found FROM reconciliation_counts "
                "WHERE run_id = :run_id AND found > 0"
            ),
            {"run_id": run.id},
        )
        counts = {row.cause: row.found for row in count_rows}
    assert link.unlink_reason is not None
    assert link.unlink_reason.startswith("ENROLMENT_DELETED")
    assert run.finished_at is not None
    assert counts == {"ENROLMENT_DELETED": 1}
