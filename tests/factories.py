"""Test data: rows inserted straight into the tables, and enrolments through the domain operation.

The application under test reads through its own connections, so tests build data in a
session that commits::

    async with committed(sessionmaker) as session:
        unit = await create_unit(session)

Codes come from a counter, so every call gives unique codes without the test naming them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import enrolment as enrolment_ops
from models import linking
from models.enums import OccurrenceKind
from models.tables import (
    Base,
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
from schema.ids import encode_id

# The administrative occurrence of a qualification spans the year; sessions sit inside it.
YEAR_START = date(2026, 2, 2)
YEAR_END = date(2026, 11, 27)

_numbers = itertools.count(1)


def next_number() -> int:
    return next(_numbers)


def gid(type_name: str, pk: int) -> str:
    """Return the GraphQL global id of a row."""
    return encode_id(type_name, pk)


@asynccontextmanager
async def committed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session and commit it at the end of the block."""
    async with sessionmaker() as session:
        yield session
        await session.commit()


async def create_unit(
    session: AsyncSession, *, code: str | None = None, title: str | None = None
) -> Unit:
    number = next_number()
    unit = Unit(
        code=code or f"TST{number:05d}",
        title=title or f"Test unit {number}",
        nominal_hours=20,
    )
    session.add(unit)
    await session.flush()
    return unit


async def create_units(session: AsyncSession, count: int) -> list[Unit]:
    return [await create_unit(session) for _ in range(count)]


async def create_programme(session: AsyncSession, units: Sequence[Unit]) -> Programme:
    number = next_number()
    programme = Programme(code=f"PRG{number:05d}", name=f"Test programme {number}")
    session.add(programme)
    await session.flush()
    session.add_all(
        ProgrammeUnit(programme_id=programme.id, unit_id=unit.id, position=position)
        for position, unit in enumerate(units)
    )
    await session.flush()
    return programme


async def create_occurrence(
    session: AsyncSession,
    *,
    kind: OccurrenceKind,
    units: Sequence[Unit],
    start: date = YEAR_START,
    end: date = YEAR_END,
    fee: Decimal | None = None,
    code: str | None = None,
) -> Occurrence:
    """Insert an occurrence of a new programme with the given units, in the given order."""
    programme = await create_programme(session, units)
    number = next_number()
    occurrence = Occurrence(
        programme_id=programme.id,
        code=code or f"{kind.value[:3]}-{number:05d}",
        name=f"Test occurrence {number}",
        kind=kind,
        start_date=start,
        end_date=end,
        fee=fee,
    )
    session.add(occurrence)
    await session.flush()
    session.add_all(
        OccurrenceUnit(occurrence_id=occurrence.id, unit_id=unit.id, position=position)
        for position, unit in enumerate(units)
    )
    await session.flush()
    return occurrence


async def create_client(session: AsyncSession, *, code: str | None = None) -> Client:
    number = next_number()
    client = Client(
        client_code=code or f"C{number:07d}", given_name="Alex", surname=f"Test{number}"
    )
    session.add(client)
    await session.flush()
    return client


async def enrol(
    session: AsyncSession,
    client: Client,
    occurrence: Occurrence,
    *,
    start: date | None = None,
    end: date | None = None,
    link: bool | None = None,
    administrative: Enrolment | None = None,
) -> Enrolment:
    """Enrol through the domain operation, so units, charges and links are as in production."""
    enrolled = await enrolment_ops.enrol_client(
        session,
        client_id=client.id,
        occurrence_id=occurrence.id,
        start_date=start,
        end_date=end,
        link=link,
        administrative_enrolment_id=administrative.id if administrative else None,
        enrolled_by="factory",
    )
    return enrolled.enrolment


async def link(
    session: AsyncSession, administrative: Enrolment, session_enrolment: Enrolment
) -> EnrolmentLink:
    linked = await linking.link_enrolments(
        session,
        administrative_enrolment_id=administrative.id,
        session_enrolment_id=session_enrolment.id,
        linked_by="factory",
    )
    return linked.link


async def enrolled_unit(session: AsyncSession, enrolment: Enrolment, unit: Unit) -> EnrolledUnit:
    found = await session.scalar(
        select(EnrolledUnit).where(
            EnrolledUnit.enrolment_id == enrolment.id, EnrolledUnit.unit_id == unit.id
        )
    )
    assert found is not None, f"enrolment {enrolment.id} has no unit {unit.code}"
    return found


@dataclass
class Qualification:
    """An administrative occurrence with all units and session occurrences with some of them."""

    units: list[Unit]
    administrative: Occurrence
    sessions: list[Occurrence]


async def create_qualification(
    session: AsyncSession,
    *,
    unit_count: int = 4,
    session_units: Sequence[Sequence[int]] = ((0, 1), (2,), (3,)),
    fee: Decimal | None = Decimal("4500.00"),
) -> Qualification:
    """Create the units, the administrative occurrence and one session per entry of
    ``session_units`` (indexes into the units). Sessions run one after another, a month each.
    """
    units = await create_units(session, unit_count)
    administrative = await create_occurrence(
        session, kind=OccurrenceKind.ADMINISTRATIVE, units=units, fee=fee
    )
    sessions = []
    for position, indexes in enumerate(session_units):
        start = date(2026, 3 + position, 1)
        end = date(2026, 3 + position, 28)
        sessions.append(
            await create_occurrence(
                session,
                kind=OccurrenceKind.SESSION,
                units=[units[index] for index in indexes],
                start=start,
                end=end,
            )
        )
    return Qualification(units=units, administrative=administrative, sessions=sessions)


@dataclass
class Learner:
    """A client enrolled in a qualification's administrative occurrence and linked sessions."""

    client: Client
    administrative: Enrolment
    sessions: list[Enrolment] = field(default_factory=list)


async def create_learner(
    session: AsyncSession, qualification: Qualification, *, linked_sessions: int | None = None
) -> Learner:
    """Enrol a new client in the administrative occurrence and, linked, in the first sessions."""
    client = await create_client(session)
    administrative = await enrol(session, client, qualification.administrative)
    count = len(qualification.sessions) if linked_sessions is None else linked_sessions
    sessions = [
        await enrol(session, client, occurrence, link=True)
        for occurrence in qualification.sessions[:count]
    ]
    return Learner(client=client, administrative=administrative, sessions=sessions)


# Columns that change after a request without the request changing them: the publisher marks
# outbox rows sent, and authentication notes when a token was last used.
_BOOKKEEPING_COLUMNS = {
    "outbox": {"published_at", "publish_count", "processed_at", "last_error"},
    "api_tokens": {"last_used_at"},
}


async def database_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of every table, to check that a rejected request changed nothing.

    Bookkeeping columns that background work updates are left out.
    """
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            skipped = _BOOKKEEPING_COLUMNS.get(table.name, set())
            columns = [column for column in table.columns if column.name not in skipped]
            statement = select(*columns).order_by(*table.primary_key.columns)
            result = await session.execute(statement)
            rows[table.name] = [tuple(row) for row in result.all()]
    return rows


async def roll_up_requests(sessionmaker: async_sessionmaker[AsyncSession]) -> list[list[int]]:
    """Return the administrative enrolment ids of each outbox roll-up request, oldest first."""
    async with sessionmaker() as session:
        payloads = await session.scalars(
            text("SELECT payload FROM outbox WHERE task_name = 'enrolink.roll_up' ORDER BY id")
        )
        return [list(payload["administrative_enrolment_ids"]) for payload in payloads]


async def post_graphql(
    http: httpx.AsyncClient, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST a document to a live server and return its data; top-level errors fail the test."""
    response = await http.post("/graphql", json={"query": document, "variables": variables or {}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data
