"""The demo data: loaded once through the domain operations, in one transaction, rolled up."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from enrolink.dev import issue_dev_token
from models.catalogue import create_unit
from models.db import create_engine, create_sessionmaker
from models.demo import SeedOutcome, seed_demo_data
from models.enums import OccurrenceKind, TokenRole
from models.errors import DomainError
from models.tables import (
    Client,
    EnrolledUnit,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    Programme,
    Unit,
)
from models.tokens import TokenRejected, authenticate


async def count(session: AsyncSession, table: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def administrative_result(
    session: AsyncSession, client_code: str, unit_code: str
) -> tuple[int | None, str | None]:
    """Return the outcome of a client's administrative result and the occurrence it came from."""
    source = aliased(EnrolledUnit)
    source_enrolment = aliased(Enrolment)
    source_occurrence = aliased(Occurrence)
    row = (
        await session.execute(
            select(EnrolledUnit.outcome, source_occurrence.code)
            .join(Enrolment, Enrolment.id == EnrolledUnit.enrolment_id)
            .join(Client, Client.id == Enrolment.client_id)
            .join(Occurrence, Occurrence.id == Enrolment.occurrence_id)
            .join(Unit, Unit.id == EnrolledUnit.unit_id)
            .outerjoin(source, source.id == EnrolledUnit.source_enrolled_unit_id)
            .outerjoin(source_enrolment, source_enrolment.id == source.enrolment_id)
            .outerjoin(source_occurrence, source_occurrence.id == source_enrolment.occurrence_id)
            .where(
                Client.client_code == client_code,
                Unit.code == unit_code,
                Occurrence.kind == OccurrenceKind.ADMINISTRATIVE,
            )
        )
    ).one()
    return row[0], row[1]


async def test_seed_loads_once(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    lines: list[str] = []

    first = await seed_demo_data(sessionmaker, lines.append)
    second = await seed_demo_data(sessionmaker, lines.append)

    assert first is SeedOutcome.LOADED
    assert second is SeedOutcome.ALREADY_LOADED
    assert any(line.startswith("Units: 12 units") for line in lines), lines
    assert any(line.startswith("Roll-up:") for line in lines), lines
    async with sessionmaker() as session:
        assert await count(session, Unit) == 12
        assert await count(session, Programme) == 8
        assert await count(session, Occurrence) == 8
        assert await count(session, Client) == 24
        assert await count(session, Enrolment) == 170
        assert await count(session, EnrolmentLink) == 146
        pending = await session.scalar(
            select(func.count())
            .select_from(Enrolment)
            .where(Enrolment.roll_up_version != Enrolment.roll_up_computed_version)
        )
        assert pending == 0
        # A re-attempt: 30 in session 1, then 20 in the catch-up session, which wins.
        assert await administrative_result(session, "LDM2605", "BSBCMM511") == (20, "LDM26-CU1")
        assert await administrative_result(session, "LDM2608", "BSBCMM511") == (30, "LDM26-S1")
        # The withdrawal turned the continuing units of session 3 into 40.
        assert await administrative_result(session, "LDM2617", "BSBTWK502") == (40, "LDM26-S3")
        assert await administrative_result(session, "LDM2617", "BSBOPS502") == (None, None)
        assert await administrative_result(session, "LDM2603", "BSBPEF502") == (51, "LDM26-S2")


async def test_seed_skips_database_with_data(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        await create_unit(session, code="ABC123", title="A unit of the developer", nominal_hours=5)

    outcome = await seed_demo_data(sessionmaker, print, only_into_empty_database=True)

    assert outcome is SeedOutcome.NOT_EMPTY
    async with sessionmaker() as session:
        assert await count(session, Unit) == 1


async def test_seed_clash_writes_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await create_unit(
            session, code="BSBSTR502", title="Facilitate improvement", nominal_hours=5
        )

    with pytest.raises(DomainError) as raised:
        await seed_demo_data(sessionmaker, print)

    assert "BSBSTR502" in raised.value.message
    async with sessionmaker() as session:
        assert await count(session, Unit) == 1
        assert await count(session, Programme) == 0


def test_dev_token_revokes_earlier_ones(database_url: str) -> None:
    first = issue_dev_token(database_url)
    second = issue_dev_token(database_url)

    async def check(secret: str) -> str | None:
        engine = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            async with create_sessionmaker(engine)() as session:
                token = await authenticate(session, secret)
                return token.role
        except TokenRejected as rejection:
            return rejection.reason
        finally:
            await engine.dispose()

    assert asyncio.run(check(second)) == TokenRole.STAFF
    assert "revoked" in str(asyncio.run(check(first)))
