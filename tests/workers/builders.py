"""Test data written straight to the tables: units, occurrences, clients, enrolments, links.

The GraphQL mutations would refuse some of these states (a link across clients, a cancelled
enrolment still linked), which is what the reconciler tests need.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource
from models.tables import (
    Client,
    EnrolledUnit,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
    Programme,
    ProgrammeUnit,
    Unit,
)

START = date(2025, 2, 3)
END = date(2025, 12, 12)
# Results are recorded at T0 plus whole minutes, so their order is obvious in a test.
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

_serial = itertools.count(1)


def minutes(count: int) -> datetime:
    return T0 + timedelta(minutes=count)


@dataclass
class Catalogue:
    """Units U1..Un in a programme, an administrative occurrence with all of them."""

    unit_ids: list[int]
    programme_id: int
    administrative_occurrence_id: int


class Builder:
    """Writes rows with the session given; the caller commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def catalogue(self, unit_count: int = 3) -> Catalogue:
        serial = next(_serial)
        units = [
            Unit(code=f"T{serial}U{number}", title=f"Unit {number} of set {serial}")
            for number in range(1, unit_count + 1)
        ]
        programme = Programme(code=f"P{serial}", name=f"Programme {serial}")
        self.session.add_all([*units, programme])
        await self.session.flush()
        self.session.add_all(
            ProgrammeUnit(programme_id=programme.id, unit_id=unit.id, position=position)
            for position, unit in enumerate(units)
        )
        unit_ids = [unit.id for unit in units]
        occurrence_id = await self.occurrence(programme.id, OccurrenceKind.ADMINISTRATIVE, unit_ids)
        return Catalogue(unit_ids, programme.id, occurrence_id)

    async def occurrence(self, programme_id: int, kind: OccurrenceKind, unit_ids: list[int]) -> int:
        serial = next(_serial)
        occurrence = Occurrence(
            programme_id=programme_id,
            code=f"O{serial}",
            name=f"Occurrence {serial}",
            kind=kind,
            start_date=START,
            end_date=END,
        )
        self.session.add(occurrence)
        await self.session.flush()
        self.session.add_all(
            OccurrenceUnit(occurrence_id=occurrence.id, unit_id=unit_id, position=position)
            for position, unit_id in enumerate(unit_ids)
        )
        await self.session.flush()
        return occurrence.id

    async def client(self) -> int:
        serial = next(_serial)
        client = Client(client_code=f"C{serial}", surname=f"Learner {serial}")
        self.session.add(client)
        await self.session.flush()
        return client.id

    async def enrol(self, client_id: int, occurrence_id: int) -> int:
        """Enrol the client with one unrecorded result per unit of the occurrence."""
        kind = (
            await self.session.execute(
                select(Occurrence.kind).where(Occurrence.id == occurrence_id)
            )
        ).scalar_one()
        enrolment = Enrolment(
            client_id=client_id,
            occurrence_id=occurrence_id,
            status=EnrolmentStatus.ACTIVE,
            start_date=START,
            end_date=END,
        )
        self.session.add(enrolment)
        await self.session.flush()
        unit_ids = (
            await self.session.execute(
                select(OccurrenceUnit.unit_id).where(OccurrenceUnit.occurrence_id == occurrence_id)
            )
        ).scalars()
        source = (
            ResultSource.ROLLED_UP
            if kind == OccurrenceKind.ADMINISTRATIVE
            else ResultSource.RECORDED
        )
        self.session.add_all(
            EnrolledUnit(enrolment_id=enrolment.id, unit_id=unit_id, source=source)
            for unit_id in unit_ids
        )
        await self.session.flush()
        return enrolment.id

    async def link(self, administrative_enrolment_id: int, session_enrolment_id: int) -> int:
        link = EnrolmentLink(
            administrative_enrolment_id=administrative_enrolment_id,
            session_enrolment_id=session_enrolment_id,
        )
        self.session.add(link)
        await self.session.flush()
        return link.id

    async def record(
        self,
        enrolment_id: int,
        unit_id: int,
        outcome: int,
        *,
        recorded_at: datetime,
        start: date | None = None,
        end: date | None = None,
    ) -> int:
        """Record a result on a session enrolment, as recordResult would; return its id."""
        result_id = (
            await self.session.execute(
                text(
                    """
                    UPDATE enrolled_units
                    SET outcome = :outcome, start_date = :start, end_date = :end,
                        recorded_at = :recorded_at, recorded_by = 'trainer'
                    WHERE enrolment_id = :enrolment_id AND unit_id = :unit_id
                    RETURNING id
                    """
                ),
                {
                    "outcome": outcome,
                    "start": start,
                    "end": end,
                    "recorded_at": recorded_at,
                    "enrolment_id": enrolment_id,
                    "unit_id": unit_id,
                },
            )
        ).scalar_one()
        return int(result_id)


@dataclass
class Linked:
    """One client with an administrative enrolment and linked session enrolments."""

    catalogue: Catalogue
    client_id: int
    administrative_enrolment_id: int
    session_occurrence_ids: list[int]
    session_enrolment_ids: list[int]
    link_ids: list[int]


async def linked_client(
    builder: Builder, session_units: list[list[int]], *, unit_count: int = 3
) -> Linked:
    """Build a catalogue and one client linked to one session per entry of ``session_units``.

    Each entry lists the positions (0-based) of the catalogue's units that the session has.
    """
    catalogue = await builder.catalogue(unit_count)
    client_id = await builder.client()
    administrative_id = await builder.enrol(client_id, catalogue.administrative_occurrence_id)
    occurrence_ids, enrolment_ids, link_ids = [], [], []
    for positions in session_units:
        occurrence_id = await builder.occurrence(
            catalogue.programme_id,
            OccurrenceKind.SESSION,
            [catalogue.unit_ids[position] for position in positions],
        )
        enrolment_id = await builder.enrol(client_id, occurrence_id)
        link_ids.append(await builder.link(administrative_id, enrolment_id))
        occurrence_ids.append(occurrence_id)
        enrolment_ids.append(enrolment_id)
    return Linked(catalogue, client_id, administrative_id, occurrence_ids, enrolment_ids, link_ids)


@dataclass(frozen=True)
class ResultRow:
    outcome: int | None
    start_date: date | None
    end_date: date | None
    source: str
    source_enrolled_unit_id: int | None
    recorded_at: datetime | None


async def results_by_unit(session: AsyncSession, enrolment_id: int) -> dict[int, ResultRow]:
    rows = (
        await session.execute(
            select(
                EnrolledUnit.unit_id,
                EnrolledUnit.outcome,
                EnrolledUnit.start_date,
                EnrolledUnit.end_date,
                EnrolledUnit.source,
                EnrolledUnit.source_enrolled_unit_id,
                EnrolledUnit.recorded_at,
            ).where(EnrolledUnit.enrolment_id == enrolment_id)
        )
    ).all()
    return {
        row.unit_id: ResultRow(
            row.outcome,
            row.start_date,
            row.end_date,
            str(row.source),
            row.source_enrolled_unit_id,
            row.recorded_at,
        )
        for row in rows
    }


async def history_count(session: AsyncSession, enrolment_id: int) -> int:
    count = (
        await session.execute(
            text(
                """
                SELECT count(*) FROM enrolled_unit_history AS h
                JOIN enrolled_units AS eu ON eu.id = h.enrolled_unit_id
                WHERE eu.enrolment_id = :enrolment_id
                """
            ),
            {"enrolment_id": enrolment_id},
        )
    ).scalar_one()
    return int(count)
