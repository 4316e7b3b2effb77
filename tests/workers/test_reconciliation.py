"""The reconciler, run in the test process against PostgreSQL: each cause found and repaired."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import structlog.testing
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import models.log_fields
from models.enums import EnrolmentStatus, OccurrenceKind, Outcome
from models.outbox import ROLL_UP_TASK, take_pending
from models.reconciliation import (
    ReconciliationCause,
    cause_of_unlink_reason,
    reconcile,
    unlink_reason,
)
from models.roll_up import roll_up
from models.tables import (
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
    OutboxMessage,
    ReconciliationCount,
    ReconciliationRun,
)
from tests.workers.builders import Builder, Linked, linked_client, minutes, results_by_unit

ACHIEVED = Outcome.COMPETENCY_ACHIEVED.value


def _counts(run: ReconciliationRun) -> dict[str, tuple[int, int]]:
    return {count.cause: (count.found, count.repaired) for count in run.counts}


def _only(cause: ReconciliationCause, found: int, repaired: int) -> dict[str, tuple[int, int]]:
    expected = {other.value: (0, 0) for other in ReconciliationCause}
    expected[cause.value] = (found, repaired)
    return expected


async def _delete_session_enrolment(
    session: AsyncSession, linked: Linked, builder: Builder
) -> None:
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[0])
        .values(deleted_at=func.now())
    )


async def _cancel_session_enrolment(
    session: AsyncSession, linked: Linked, builder: Builder
) -> None:
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[0])
        .values(status=EnrolmentStatus.CANCELLED)
    )


async def _move_session_to_other_client(
    session: AsyncSession, linked: Linked, builder: Builder
) -> None:
    other_client_id = await builder.client()
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[0])
        .values(client_id=other_client_id)
    )


async def _make_session_standard(session: AsyncSession, linked: Linked, builder: Builder) -> None:
    await session.execute(
        update(Occurrence)
        .where(Occurrence.id == linked.session_occurrence_ids[0])
        .values(kind=OccurrenceKind.STANDARD)
    )


async def _replace_session_units(session: AsyncSession, linked: Linked, builder: Builder) -> None:
    other = await builder.catalogue(1)
    occurrence_id = linked.session_occurrence_ids[0]
    await session.execute(
        delete(OccurrenceUnit).where(OccurrenceUnit.occurrence_id == occurrence_id)
    )
    session.add(OccurrenceUnit(occurrence_id=occurrence_id, unit_id=other.unit_ids[0], position=0))
    await session.flush()


Breakage = Callable[[AsyncSession, Linked, Builder], Awaitable[None]]

BREAKAGES: list[tuple[ReconciliationCause, Breakage]] = [
    (ReconciliationCause.ENROLMENT_DELETED, _delete_session_enrolment),
    (ReconciliationCause.ENROLMENT_CANCELLED, _cancel_session_enrolment),
    (ReconciliationCause.CLIENT_MISMATCH, _move_session_to_other_client),
    (ReconciliationCause.OCCURRENCE_KIND_CHANGED, _make_session_standard),
    (ReconciliationCause.NO_SHARED_UNITS, _replace_session_units),
]


@pytest.mark.parametrize(("cause", "breakage"), BREAKAGES, ids=[cause for cause, _ in BREAKAGES])
async def test_reconcile_closes_orphaned_link(
    session: AsyncSession, cause: ReconciliationCause, breakage: Breakage
) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [1]])
    await breakage(session, linked, builder)

    run = await reconcile(session, trigger="test", batch_size=10)

    assert _counts(run) == _only(cause, 1, 1)
    link = await session.get_one(EnrolmentLink, linked.link_ids[0])
    assert link.unlinked_at is not None
    assert cause_of_unlink_reason(link.unlink_reason) == cause
    sound = await session.get_one(EnrolmentLink, linked.link_ids[1])
    assert sound.unlinked_at is None


async def _cancel_administrative_enrolment(session: AsyncSession, linked: Linked) -> None:
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.administrative_enrolment_id)
        .values(status=EnrolmentStatus.CANCELLED)
    )


async def test_reconcile_closes_all_links_of_cancelled(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [1], [2]])
    await _cancel_administrative_enrolment(session, linked)

    run = await reconcile(session, trigger="test", batch_size=2)

    assert _counts(run) == _only(ReconciliationCause.ENROLMENT_CANCELLED, 3, 3)


async def test_reconcile_log_caps_link_ids(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.log_fields, "MAX_LOGGED_IDS", 2)
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [1], [2]])
    await _cancel_administrative_enrolment(session, linked)

    with structlog.testing.capture_logs() as logs:
        await reconcile(session, trigger="test", batch_size=10)

    closed = [entry for entry in logs if entry["event"] == "reconciliation.links_closed"]
    assert len(closed) == 1
    assert closed[0]["link_count"] == 3
    assert len(closed[0]["link_ids"]) == 2
    assert set(closed[0]["link_ids"]) <= set(linked.link_ids)


async def test_reconcile_requests_roll_up_for_orphan(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    await _delete_session_enrolment(session, linked, builder)

    await reconcile(session, trigger="test", batch_size=10)

    enrolment = await session.get_one(Enrolment, linked.administrative_enrolment_id)
    assert enrolment.roll_up_version == 1
    pending = take_pending(session)
    assert [message.task_name for message in pending] == [ROLL_UP_TASK]
    assert pending[0].payload["administrative_enrolment_ids"] == [
        linked.administrative_enrolment_id
    ]


async def test_reconcile_counts_every_cause_across_batches(session: AsyncSession) -> None:
    builder = Builder(session)
    for _cause, breakage in BREAKAGES:
        for _ in range(2):
            linked = await linked_client(builder, [[0]])
            await breakage(session, linked, builder)
    await linked_client(builder, [[0], [1]])

    # Batches of 3 over 10 orphaned links: four batches, and the causes mixed within them.
    run = await reconcile(session, trigger="test", batch_size=3)

    counts = _counts(run)
    for cause, _ in BREAKAGES:
        assert counts[cause.value] == (2, 2), cause
    assert counts[ReconciliationCause.STALE_RESULT.value] == (0, 0)
    active = (
        await session.execute(
            select(func.count())
            .select_from(EnrolmentLink)
            .where(EnrolmentLink.unlinked_at.is_(None))
        )
    ).scalar_one()
    assert active == 2


async def test_reconcile_finds_stale_result(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, ACHIEVED, recorded_at=minutes(1))
    await roll_up(session, [linked.administrative_enrolment_id])
    # A change that skipped request_roll_up: the session result moved on, the roll-up did not.
    await builder.record(
        linked.session_enrolment_ids[0],
        unit,
        Outcome.RPL_GRANTED.value,
        recorded_at=minutes(2),
    )

    run = await reconcile(session, trigger="test", batch_size=10)

    assert _counts(run) == _only(ReconciliationCause.STALE_RESULT, 1, 1)
    enrolment = await session.get_one(Enrolment, linked.administrative_enrolment_id)
    assert enrolment.roll_up_version == enrolment.roll_up_computed_version + 1
    await roll_up(session, [linked.administrative_enrolment_id])
    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == Outcome.RPL_GRANTED.value


async def test_reconcile_finds_tampered_result(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0, 1, 2]])
    await roll_up(session, [linked.administrative_enrolment_id])
    await session.execute(
        text(
            "UPDATE enrolled_units SET outcome = 20, recorded_at = now() "
            "WHERE enrolment_id = :e AND unit_id = ANY(:u)"
        ),
        {"e": linked.administrative_enrolment_id, "u": linked.catalogue.unit_ids[:2]},
    )

    run = await reconcile(session, trigger="test", batch_size=10)

    assert _counts(run) == _only(ReconciliationCause.STALE_RESULT, 2, 2)


async def test_reconcile_skips_pending_roll_up(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, ACHIEVED, recorded_at=minutes(1))
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.administrative_enrolment_id)
        .values(roll_up_version=Enrolment.roll_up_version + 1)
    )

    run = await reconcile(session, trigger="test", batch_size=10)

    assert _counts(run) == _only(ReconciliationCause.STALE_RESULT, 0, 0)


async def test_reconcile_leaves_sound_data_alone(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [1, 2]])
    await builder.record(
        linked.session_enrolment_ids[0],
        linked.catalogue.unit_ids[0],
        ACHIEVED,
        recorded_at=minutes(1),
    )
    await roll_up(session, [linked.administrative_enrolment_id])

    run = await reconcile(session, trigger="test", batch_size=1)

    assert all(count == (0, 0) for count in _counts(run).values())
    assert take_pending(session) == []


async def test_reconcile_records_run(session: AsyncSession) -> None:
    run = await reconcile(session, trigger="test", batch_size=10)

    stored = await session.get_one(ReconciliationRun, run.id)
    assert stored.trigger == "test"
    assert stored.finished_at is not None
    assert stored.finished_at >= stored.started_at
    causes = (
        await session.execute(
            select(ReconciliationCount.cause).where(ReconciliationCount.run_id == run.id)
        )
    ).scalars()
    assert sorted(causes) == sorted(cause.value for cause in ReconciliationCause)


async def test_reconcile_skips_locked_link(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        builder = Builder(session)
        linked = await linked_client(builder, [[0]])
        await _delete_session_enrolment(session, linked, builder)

    async with sessionmaker() as holder, holder.begin():
        # Another transaction, such as an unlink in progress, has the link locked.
        await holder.execute(
            select(EnrolmentLink.id).where(EnrolmentLink.id == linked.link_ids[0]).with_for_update()
        )
        async with sessionmaker() as session, session.begin():
            run = await reconcile(session, trigger="test", batch_size=10)

    assert _counts(run) == _only(ReconciliationCause.ENROLMENT_DELETED, 1, 0)


async def test_reconcile_commits_each_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        builder = Builder(session)
        for _ in range(3):
            linked = await linked_client(builder, [[0]])
            await _cancel_session_enrolment(session, linked, builder)

    async with sessionmaker() as session:
        run = await reconcile(session, trigger="test", batch_size=2, commit_batches=True)
        outbox_rows = len(take_pending(session))

    async with sessionmaker() as session:
        stored = await session.get_one(ReconciliationRun, run.id)
        counts = (
            await session.execute(
                select(ReconciliationCount.found, ReconciliationCount.repaired).where(
                    ReconciliationCount.run_id == run.id,
                    ReconciliationCount.cause == ReconciliationCause.ENROLMENT_CANCELLED.value,
                )
            )
        ).one()
        written = (
            await session.execute(select(func.count()).select_from(OutboxMessage))
        ).scalar_one()
    assert stored.finished_at is not None
    assert tuple(counts) == (3, 3)
    # One outbox row per batch: batches of 2 and 1.
    assert outbox_rows == 2
    assert written == 2


def test_unlink_reason_names_cause() -> None:
    for cause in ReconciliationCause:
        if cause is ReconciliationCause.STALE_RESULT:
            continue
        assert cause_of_unlink_reason(unlink_reason(cause)) is cause
    assert cause_of_unlink_reason("Linked by mistake.") is None
    assert cause_of_unlink_reason(None) is None
