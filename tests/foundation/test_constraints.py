"""The database itself rejects rows that break an invariant, whatever code wrote them.

Each test inserts through raw SQL, bypassing the domain operations, and checks the name of the
constraint that PostgreSQL reports: models.errors maps unique violations to typed errors by
that name, so a renamed constraint must fail here first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

START = date(2026, 2, 2)
END = date(2026, 11, 27)
LINKED_AT = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Catalogue:
    """Valid rows that the violating rows refer to."""

    unit_id: int
    programme_id: int
    administrative_occurrence_id: int
    session_occurrence_id: int
    client_id: int
    administrative_enrolment_id: int
    session_enrolment_id: int


async def insert(connection: AsyncConnection, table: str, **values: Any) -> Any:
    """Insert one row and return its id."""
    columns = ", ".join(values)
    placeholders = ", ".join(f":{column}" for column in values)
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING id")
    return (await connection.execute(statement, values)).scalar_one()


def constraint_name(error: IntegrityError) -> str | None:
    # SQLAlchemy wraps asyncpg's error in its DB-API adaptor; asyncpg's is the cause.
    name = getattr(error.orig, "constraint_name", None)
    if name is None:
        name = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
    return name


async def assert_rejected(
    connection: AsyncConnection, constraint: str, table: str, **values: Any
) -> None:
    with pytest.raises(IntegrityError) as caught:
        await insert(connection, table, **values)
    assert constraint_name(caught.value) == constraint


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        yield connection


@pytest.fixture
async def catalogue(connection: AsyncConnection) -> Catalogue:
    unit_id = await insert(
        connection, "units", code="BSBWHS411", title="Implement WHS", nominal_hours=40
    )
    programme_id = await insert(connection, "programmes", code="BSB50420", name="Diploma")
    administrative_id = await insert(
        connection,
        "occurrences",
        programme_id=programme_id,
        code="DIP-2026",
        name="Diploma 2026",
        kind="ADMINISTRATIVE",
        start_date=START,
        end_date=END,
        fee=Decimal("4500.00"),
    )
    session_id = await insert(
        connection,
        "occurrences",
        programme_id=programme_id,
        code="WHS-2026-03",
        name="WHS March",
        kind="SESSION",
        start_date=date(2026, 3, 2),
        end_date=date(2026, 3, 27),
    )
    client_id = await insert(connection, "clients", client_code="C0001", surname="Nguyen")
    administrative_enrolment_id = await enrol(connection, client_id, administrative_id)
    session_enrolment_id = await enrol(connection, client_id, session_id)
    return Catalogue(
        unit_id=unit_id,
        programme_id=programme_id,
        administrative_occurrence_id=administrative_id,
        session_occurrence_id=session_id,
        client_id=client_id,
        administrative_enrolment_id=administrative_enrolment_id,
        session_enrolment_id=session_enrolment_id,
    )


async def enrol(
    connection: AsyncConnection,
    client_id: int,
    occurrence_id: int,
    *,
    status: str = "ACTIVE",
    deleted_at: datetime | None = None,
) -> int:
    enrolment_id: int = await insert(
        connection,
        "enrolments",
        client_id=client_id,
        occurrence_id=occurrence_id,
        status=status,
        start_date=START,
        end_date=END,
        deleted_at=deleted_at,
    )
    return enrolment_id


# Unique codes ------------------------------------------------------------------------------


async def test_unit_code_unique(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(connection, "uq_units_code", "units", code="BSBWHS411", title="Again")


async def test_programme_code_unique(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(
        connection, "uq_programmes_code", "programmes", code="BSB50420", name="Again"
    )


async def test_occurrence_code_unique(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(
        connection,
        "uq_occurrences_code",
        "occurrences",
        programme_id=catalogue.programme_id,
        code="DIP-2026",
        name="Again",
        kind="STANDARD",
        start_date=START,
        end_date=END,
    )


async def test_client_code_unique(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(
        connection, "uq_clients_client_code", "clients", client_code="C0001", surname="Other"
    )


async def test_client_usi_unique(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await insert(connection, "clients", client_code="C0002", surname="Smith", usi="BNGH7C75FN")

    await assert_rejected(
        connection,
        "uq_clients_usi",
        "clients",
        client_code="C0003",
        surname="Lee",
        usi="BNGH7C75FN",
    )


# Enrolments and links ----------------------------------------------------------------------


@pytest.mark.parametrize("existing_status", ["ACTIVE", "COMPLETED", "WITHDRAWN"])
async def test_live_enrolment_unique_per_client_and_occurrence(
    connection: AsyncConnection, existing_status: str
) -> None:
    programme_id = await insert(connection, "programmes", code="P1", name="Programme")
    occurrence_id = await insert(
        connection,
        "occurrences",
        programme_id=programme_id,
        code="O1",
        name="Occurrence",
        kind="STANDARD",
        start_date=START,
        end_date=END,
    )
    client_id = await insert(connection, "clients", client_code="C1", surname="Nguyen")
    await enrol(connection, client_id, occurrence_id, status=existing_status)

    await assert_rejected(
        connection,
        "uq_enrolments_live_client_occurrence",
        "enrolments",
        client_id=client_id,
        occurrence_id=occurrence_id,
        status="ACTIVE",
        start_date=START,
        end_date=END,
    )


async def test_cancelled_enrolment_allows_another(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    occurrence_id = catalogue.session_occurrence_id
    client_id = await insert(connection, "clients", client_code="C0009", surname="Brown")
    await enrol(connection, client_id, occurrence_id, status="CANCELLED")

    second = await enrol(connection, client_id, occurrence_id)

    assert second > 0
    # The new enrolment is live, so it blocks a third one.
    with pytest.raises(IntegrityError) as caught:
        await enrol(connection, client_id, occurrence_id)
    assert constraint_name(caught.value) == "uq_enrolments_live_client_occurrence"


async def test_deleted_enrolment_allows_another(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    occurrence_id = catalogue.session_occurrence_id
    client_id = await insert(connection, "clients", client_code="C0009", surname="Brown")
    await enrol(connection, client_id, occurrence_id, deleted_at=LINKED_AT)

    second = await enrol(connection, client_id, occurrence_id)

    assert second > 0


async def test_active_link_unique_per_session_enrolment(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    other_administrative = await insert(
        connection,
        "occurrences",
        programme_id=catalogue.programme_id,
        code="DIP-2026-B",
        name="Diploma 2026 B",
        kind="ADMINISTRATIVE",
        start_date=START,
        end_date=END,
    )
    other_enrolment = await enrol(connection, catalogue.client_id, other_administrative)
    await insert(
        connection,
        "enrolment_links",
        administrative_enrolment_id=catalogue.administrative_enrolment_id,
        session_enrolment_id=catalogue.session_enrolment_id,
    )

    await assert_rejected(
        connection,
        "uq_enrolment_links_active_session",
        "enrolment_links",
        administrative_enrolment_id=other_enrolment,
        session_enrolment_id=catalogue.session_enrolment_id,
    )


async def test_closed_link_allows_another(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    await insert(
        connection,
        "enrolment_links",
        administrative_enrolment_id=catalogue.administrative_enrolment_id,
        session_enrolment_id=catalogue.session_enrolment_id,
        linked_at=LINKED_AT,
        unlinked_at=LINKED_AT + timedelta(days=1),
        unlink_reason="Linked to the wrong diploma.",
    )

    second = await insert(
        connection,
        "enrolment_links",
        administrative_enrolment_id=catalogue.administrative_enrolment_id,
        session_enrolment_id=catalogue.session_enrolment_id,
    )

    assert second > 0


async def test_link_rejects_same_enrolment_twice(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    await assert_rejected(
        connection,
        "ck_enrolment_links_distinct_enrolments",
        "enrolment_links",
        administrative_enrolment_id=catalogue.session_enrolment_id,
        session_enrolment_id=catalogue.session_enrolment_id,
    )


async def test_enrolled_unit_unique_per_enrolment_and_unit(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    await insert(
        connection,
        "enrolled_units",
        enrolment_id=catalogue.session_enrolment_id,
        unit_id=catalogue.unit_id,
        source="RECORDED",
    )

    await assert_rejected(
        connection,
        "uq_enrolled_units_enrolment_id_unit_id",
        "enrolled_units",
        enrolment_id=catalogue.session_enrolment_id,
        unit_id=catalogue.unit_id,
        source="RECORDED",
    )


# Dates in order ----------------------------------------------------------------------------


async def test_occurrence_dates_ordered(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(
        connection,
        "ck_occurrences_dates_ordered",
        "occurrences",
        programme_id=catalogue.programme_id,
        code="BACKWARDS",
        name="Backwards",
        kind="STANDARD",
        start_date=END,
        end_date=START,
    )


async def test_enrolment_dates_ordered(connection: AsyncConnection, catalogue: Catalogue) -> None:
    client_id = await insert(connection, "clients", client_code="C0010", surname="Patel")

    await assert_rejected(
        connection,
        "ck_enrolments_dates_ordered",
        "enrolments",
        client_id=client_id,
        occurrence_id=catalogue.administrative_occurrence_id,
        status="ACTIVE",
        start_date=END,
        end_date=START,
    )


async def test_enrolled_unit_dates_ordered(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    await assert_rejected(
        connection,
        "ck_enrolled_units_dates_ordered",
        "enrolled_units",
        enrolment_id=catalogue.session_enrolment_id,
        unit_id=catalogue.unit_id,
        source="RECORDED",
        outcome=20,
        start_date=date(2026, 3, 20),
        end_date=date(2026, 3, 10),
    )


@pytest.mark.parametrize("length", [timedelta(0), timedelta(hours=-1)], ids=["equal", "backwards"])
async def test_class_times_ordered(
    connection: AsyncConnection, catalogue: Catalogue, length: timedelta
) -> None:
    starts_at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

    await assert_rejected(
        connection,
        "ck_classes_times_ordered",
        "classes",
        occurrence_id=catalogue.session_occurrence_id,
        starts_at=starts_at,
        ends_at=starts_at + length,
    )


async def test_link_times_ordered(connection: AsyncConnection, catalogue: Catalogue) -> None:
    await assert_rejected(
        connection,
        "ck_enrolment_links_times_ordered",
        "enrolment_links",
        administrative_enrolment_id=catalogue.administrative_enrolment_id,
        session_enrolment_id=catalogue.session_enrolment_id,
        linked_at=LINKED_AT,
        unlinked_at=LINKED_AT - timedelta(seconds=1),
        unlink_reason="Closed before it was opened.",
    )


# Money -------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [Decimal("0.00"), Decimal("-10.00")])
async def test_payment_amount_positive(
    connection: AsyncConnection, catalogue: Catalogue, amount: Decimal
) -> None:
    await assert_rejected(
        connection,
        "ck_payments_amount_positive",
        "payments",
        enrolment_id=catalogue.administrative_enrolment_id,
        amount=amount,
        paid_on=START,
    )


@pytest.mark.parametrize("amount", [Decimal("0.00"), Decimal("-10.00")])
async def test_charge_amount_positive(
    connection: AsyncConnection, catalogue: Catalogue, amount: Decimal
) -> None:
    await assert_rejected(
        connection,
        "ck_charges_amount_positive",
        "charges",
        enrolment_id=catalogue.administrative_enrolment_id,
        amount=amount,
        description="Tuition",
        charged_on=START,
    )


async def test_session_occurrence_rejects_fee(
    connection: AsyncConnection, catalogue: Catalogue
) -> None:
    await assert_rejected(
        connection,
        "ck_occurrences_no_fee_on_session",
        "occurrences",
        programme_id=catalogue.programme_id,
        code="WHS-2026-04",
        name="WHS April",
        kind="SESSION",
        start_date=date(2026, 4, 6),
        end_date=date(2026, 4, 24),
        fee=Decimal("100.00"),
    )


# Formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["bsbwhs411", "BSB-WHS411", "BSB WHS411", ""])
async def test_unit_code_format(connection: AsyncConnection, code: str) -> None:
    await assert_rejected(connection, "ck_units_code_format", "units", code=code, title="Unit")


@pytest.mark.parametrize(
    "usi",
    # O, I, 0 and 1 are outside the USI alphabet; lower case and a short value are malformed.
    ["BNGH7C75FO", "BNGH7C75FI", "BNGH7C75F0", "BNGH7C75F1", "bngh7c75fn", "BNGH7C75F"],
)
async def test_usi_format(connection: AsyncConnection, usi: str) -> None:
    await assert_rejected(
        connection, "ck_clients_usi_format", "clients", client_code="C0100", surname="Ito", usi=usi
    )
