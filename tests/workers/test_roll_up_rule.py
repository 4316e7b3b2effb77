"""The roll-up rule, run in the test process against PostgreSQL (no worker needed)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import EnrolmentStatus, Outcome
from models.roll_up import roll_up
from models.tables import EnrolledUnit, EnrolledUnitHistory, Enrolment, EnrolmentLink
from tests.workers.builders import Builder, history_count, linked_client, minutes, results_by_unit

ACHIEVED = Outcome.COMPETENCY_ACHIEVED.value
NOT_ACHIEVED = Outcome.COMPETENCY_NOT_ACHIEVED.value
CONTINUING = Outcome.CONTINUING.value
NOT_YET_STARTED = Outcome.NOT_YET_STARTED.value
CREDIT_TRANSFER = Outcome.CREDIT_TRANSFER.value


async def test_roll_up_final_outranks_newer_non_final(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    final_id = await builder.record(
        linked.session_enrolment_ids[0], unit, NOT_ACHIEVED, recorded_at=minutes(1)
    )
    await builder.record(linked.session_enrolment_ids[1], unit, CONTINUING, recorded_at=minutes(5))

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == NOT_ACHIEVED
    assert result.source_enrolled_unit_id == final_id
    assert result.recorded_at == minutes(1)
    assert result.source == "ROLLED_UP"


async def test_roll_up_most_recent_final_wins(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, ACHIEVED, recorded_at=minutes(1))
    newer_id = await builder.record(
        linked.session_enrolment_ids[1], unit, CREDIT_TRANSFER, recorded_at=minutes(2)
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == CREDIT_TRANSFER
    assert result.source_enrolled_unit_id == newer_id


async def test_roll_up_same_time_higher_id_wins(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    first_id = await builder.record(
        linked.session_enrolment_ids[0], unit, CONTINUING, recorded_at=minutes(3)
    )
    second_id = await builder.record(
        linked.session_enrolment_ids[1], unit, NOT_YET_STARTED, recorded_at=minutes(3)
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert second_id > first_id
    assert result.source_enrolled_unit_id == second_id
    assert result.outcome == NOT_YET_STARTED


async def test_roll_up_takes_earliest_start_and_chosen_end(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(
        linked.session_enrolment_ids[0],
        unit,
        CONTINUING,
        recorded_at=minutes(1),
        start=date(2025, 3, 3),
        end=date(2025, 3, 28),
    )
    await builder.record(
        linked.session_enrolment_ids[1],
        unit,
        ACHIEVED,
        recorded_at=minutes(2),
        start=date(2025, 5, 5),
        end=date(2025, 6, 20),
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.start_date == date(2025, 3, 3)
    assert result.end_date == date(2025, 6, 20)


async def test_roll_up_start_unknown_when_after_chosen_end(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(
        linked.session_enrolment_ids[0],
        unit,
        ACHIEVED,
        recorded_at=minutes(1),
        end=date(2025, 3, 28),
    )
    await builder.record(
        linked.session_enrolment_ids[1],
        unit,
        CONTINUING,
        recorded_at=minutes(2),
        start=date(2025, 5, 5),
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == ACHIEVED
    assert result.start_date is None
    assert result.end_date == date(2025, 3, 28)


async def test_roll_up_ignores_unit_missing_in_administrative(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]], unit_count=2)
    # The session gains a unit that the administrative occurrence does not have.
    extra = await builder.catalogue(1)
    extra_unit = extra.unit_ids[0]
    await session.execute(
        text("INSERT INTO occurrence_units (occurrence_id, unit_id, position) VALUES (:o, :u, 5)"),
        {"o": linked.session_occurrence_ids[0], "u": extra_unit},
    )
    await session.execute(
        text(
            "INSERT INTO enrolled_units (enrolment_id, unit_id, source, outcome, recorded_at) "
            "VALUES (:e, :u, 'RECORDED', 20, :at)"
        ),
        {"e": linked.session_enrolment_ids[0], "u": extra_unit, "at": minutes(1)},
    )

    counts = await roll_up(session, [linked.administrative_enrolment_id])

    results = await results_by_unit(session, linked.administrative_enrolment_id)
    assert set(results) == set(linked.catalogue.unit_ids)
    assert counts.results == 2
    assert counts.changed == 0


async def test_roll_up_unlink_removes_contribution(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, CONTINUING, recorded_at=minutes(1))
    await builder.record(linked.session_enrolment_ids[1], unit, ACHIEVED, recorded_at=minutes(2))
    await roll_up(session, [linked.administrative_enrolment_id])

    await session.execute(
        update(EnrolmentLink)
        .where(EnrolmentLink.id == linked.link_ids[1])
        .values(unlinked_at=func.now(), unlink_reason="Linked by mistake.")
    )
    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == CONTINUING


async def test_roll_up_last_unlink_leaves_unrecorded(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(
        linked.session_enrolment_ids[0],
        unit,
        ACHIEVED,
        recorded_at=minutes(1),
        start=date(2025, 3, 3),
        end=date(2025, 3, 4),
    )
    await roll_up(session, [linked.administrative_enrolment_id])
    await session.execute(
        update(EnrolmentLink)
        .where(EnrolmentLink.id == linked.link_ids[0])
        .values(unlinked_at=func.now(), unlink_reason="Linked by mistake.")
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome is None
    assert result.start_date is None
    assert result.end_date is None
    assert result.recorded_at is None
    assert result.source_enrolled_unit_id is None


async def test_roll_up_ignores_deleted_session(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, CONTINUING, recorded_at=minutes(1))
    await builder.record(linked.session_enrolment_ids[1], unit, ACHIEVED, recorded_at=minutes(2))
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[1])
        .values(deleted_at=minutes(5))
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == CONTINUING


async def test_roll_up_ignores_cancelled_session(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0], [0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(linked.session_enrolment_ids[0], unit, CONTINUING, recorded_at=minutes(1))
    await builder.record(linked.session_enrolment_ids[1], unit, ACHIEVED, recorded_at=minutes(2))
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[1])
        .values(status=EnrolmentStatus.CANCELLED)
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == CONTINUING


async def test_roll_up_counts_withdrawn_session(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    unit = linked.catalogue.unit_ids[0]
    await builder.record(
        linked.session_enrolment_ids[0], unit, Outcome.WITHDRAWN.value, recorded_at=minutes(1)
    )
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.session_enrolment_ids[0])
        .values(status=EnrolmentStatus.WITHDRAWN)
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    result = (await results_by_unit(session, linked.administrative_enrolment_id))[unit]
    assert result.outcome == Outcome.WITHDRAWN.value


async def test_roll_up_leaves_other_enrolments_alone(session: AsyncSession) -> None:
    builder = Builder(session)
    first = await linked_client(builder, [[0]])
    second = await linked_client(builder, [[0]])
    await builder.record(
        first.session_enrolment_ids[0],
        first.catalogue.unit_ids[0],
        ACHIEVED,
        recorded_at=minutes(1),
    )
    await builder.record(
        second.session_enrolment_ids[0],
        second.catalogue.unit_ids[0],
        ACHIEVED,
        recorded_at=minutes(1),
    )

    await roll_up(session, [first.administrative_enrolment_id])

    untouched = await results_by_unit(session, second.administrative_enrolment_id)
    assert untouched[second.catalogue.unit_ids[0]].outcome is None


async def test_roll_up_twice_adds_no_history(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0, 1], [1, 2]])
    units = linked.catalogue.unit_ids
    await builder.record(
        linked.session_enrolment_ids[0], units[0], ACHIEVED, recorded_at=minutes(1)
    )
    await builder.record(
        linked.session_enrolment_ids[1], units[2], CONTINUING, recorded_at=minutes(2)
    )

    first = await roll_up(session, [linked.administrative_enrolment_id])
    history_after_first = await history_count(session, linked.administrative_enrolment_id)
    results_after_first = await results_by_unit(session, linked.administrative_enrolment_id)
    second = await roll_up(session, [linked.administrative_enrolment_id])

    assert first.changed == 2
    assert history_after_first == 2
    assert second.changed == 0
    assert await history_count(session, linked.administrative_enrolment_id) == 2
    assert await results_by_unit(session, linked.administrative_enrolment_id) == (
        results_after_first
    )


async def test_roll_up_history_keeps_previous_value(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    unit = linked.catalogue.unit_ids[0]
    first_id = await builder.record(
        linked.session_enrolment_ids[0], unit, CONTINUING, recorded_at=minutes(1)
    )
    await roll_up(session, [linked.administrative_enrolment_id])
    await builder.record(linked.session_enrolment_ids[0], unit, ACHIEVED, recorded_at=minutes(2))

    await roll_up(session, [linked.administrative_enrolment_id])

    history = (
        (
            await session.execute(
                select(EnrolledUnitHistory)
                .join(EnrolledUnit, EnrolledUnit.id == EnrolledUnitHistory.enrolled_unit_id)
                .where(EnrolledUnit.enrolment_id == linked.administrative_enrolment_id)
                .order_by(EnrolledUnitHistory.id)
            )
        )
        .scalars()
        .all()
    )
    assert [row.outcome for row in history] == [None, CONTINUING]
    assert history[1].source_enrolled_unit_id == first_id
    assert history[1].replaced_by == "roll-up"


async def test_roll_up_marks_version_computed(session: AsyncSession) -> None:
    builder = Builder(session)
    linked = await linked_client(builder, [[0]])
    await session.execute(
        update(Enrolment)
        .where(Enrolment.id == linked.administrative_enrolment_id)
        .values(roll_up_version=7)
    )

    await roll_up(session, [linked.administrative_enrolment_id])

    enrolment = (
        await session.execute(
            select(Enrolment.roll_up_computed_version, Enrolment.roll_up_computed_at).where(
                Enrolment.id == linked.administrative_enrolment_id
            )
        )
    ).one()
    assert enrolment.roll_up_computed_version == 7
    assert enrolment.roll_up_computed_at is not None


async def test_roll_up_of_unknown_id_does_nothing(session: AsyncSession) -> None:
    counts = await roll_up(session, [987_654_321])

    assert counts.enrolments == 0
    assert counts.changed == 0
