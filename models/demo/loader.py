"""Load the demo data through the domain operations, so every rule of the domain applies.

Nothing here commits: the caller runs the whole load in one transaction, so a failure leaves
the database as it was.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.attendance import create_class, record_attendance
from models.catalogue import create_partner, create_programme, create_unit
from models.clients import create_client
from models.demo.plan import (
    ADMINISTRATIVE_CODE,
    ADMINISTRATIVE_NAME,
    CLIENTS,
    FEE,
    LOCATION,
    NOMINAL_HOURS,
    PARTNER_CODE,
    PARTNER_NAME,
    QUALIFICATION_CODE,
    QUALIFICATION_NAME,
    RECORDED_BY,
    SESSIONS,
    WITHDRAWAL,
    YEAR_END,
    YEAR_START,
    SessionPlan,
    attendance_type_for,
    class_times,
    payments_for,
)
from models.enrolment import enrol_client
from models.enums import OccurrenceKind, Outcome
from models.money import record_payment
from models.occurrences import create_occurrence
from models.results import ResultEntry, record_result, record_results
from models.roll_up import roll_up
from models.tables import Client, Occurrence, Partner, Programme, Unit
from models.withdrawal import withdraw_enrolment

UNITS_FILE = "BSB50420-units.csv"

Report = Callable[[str], None]


@dataclass(frozen=True)
class UnitRow:
    code: str
    title: str
    component: str


def read_units() -> list[UnitRow]:
    """Return the units of BSB50420 from the CSV shipped in ``models.data``, in file order."""
    text = resources.files("models.data").joinpath(UNITS_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return [
        UnitRow(code=row["unit_code"], title=row["unit_title"], component=row["component"])
        for row in rows
        if row["qualification_code"] == QUALIFICATION_CODE
    ]


async def demo_data_loaded(session: AsyncSession) -> bool:
    """Tell whether the demo's administrative occurrence exists."""
    found = await session.scalar(
        select(Occurrence.id).where(Occurrence.code == ADMINISTRATIVE_CODE)
    )
    return found is not None


async def database_is_empty(session: AsyncSession) -> bool:
    """Tell whether the database contains no units, programmes, occurrences, partners or clients."""
    for table in (Unit, Programme, Occurrence, Partner, Client):
        if await session.scalar(select(func.count()).select_from(table)):
            return False
    return True


@dataclass
class DemoLoad:
    """Ids of the rows created so far, keyed by the codes and numbers of the plan."""

    session: AsyncSession
    report: Report
    unit_ids: dict[str, int] = field(default_factory=dict)
    occurrence_ids: dict[str, int] = field(default_factory=dict)
    client_ids: dict[int, int] = field(default_factory=dict)
    # (occurrence code, client number) -> enrolment id
    enrolment_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    # (occurrence code, day) -> class id
    class_ids: dict[tuple[str, date], int] = field(default_factory=dict)
    withdrawn: set[int] = field(default_factory=set)

    def administrative_enrolment_ids(self) -> list[int]:
        return [self.enrolment_ids[ADMINISTRATIVE_CODE, client.number] for client in CLIENTS]


async def load_demo_data(session: AsyncSession, report: Report) -> DemoLoad:
    """Create the demo data and roll up its administrative results; flushes only."""
    load = DemoLoad(session, report)
    await _create_catalogue(load)
    await _create_occurrences(load)
    await _create_clients(load)
    await _enrol(load)
    await _record_payments(load)
    await _timetable_and_take_attendance(load)
    await _record_results(load)

    # Rolled up here, in the same transaction, so the administrative results are complete as
    # soon as the load commits. A worker that rolls them up again finds nothing to change.
    counts = await roll_up(session, load.administrative_enrolment_ids())
    report(
        f"Roll-up: {counts.results} results of {counts.enrolments} administrative enrolments "
        f"derived from their linked sessions ({counts.changed} with an outcome or dates)."
    )
    return load


async def _create_catalogue(load: DemoLoad) -> None:
    units = read_units()
    for row in units:
        unit = await create_unit(
            load.session, code=row.code, title=row.title, nominal_hours=NOMINAL_HOURS.get(row.code)
        )
        load.unit_ids[unit.code] = unit.id
    core = sum(1 for row in units if row.component == "core")
    load.report(
        f"Units: {len(units)} units of {QUALIFICATION_CODE} ({core} core, "
        f"{len(units) - core} elective) from {UNITS_FILE}."
    )

    await create_programme(
        load.session,
        code=QUALIFICATION_CODE,
        name=QUALIFICATION_NAME,
        unit_ids=[load.unit_ids[row.code] for row in units],
    )
    for plan in SESSIONS:
        await create_programme(
            load.session,
            code=plan.programme_code,
            name=plan.programme_name,
            unit_ids=[load.unit_ids[code] for code in plan.unit_codes],
        )
    load.report(
        f"Programmes: {QUALIFICATION_CODE} {QUALIFICATION_NAME} and {len(SESSIONS)} session "
        "programmes."
    )


async def _create_occurrences(load: DemoLoad) -> None:
    session = load.session
    qualification_id = await _programme_id(session, QUALIFICATION_CODE)
    administrative = await create_occurrence(
        session,
        programme_id=qualification_id,
        code=ADMINISTRATIVE_CODE,
        name=ADMINISTRATIVE_NAME,
        kind=OccurrenceKind.ADMINISTRATIVE,
        start_date=YEAR_START,
        end_date=YEAR_END,
        unit_ids=None,
        fee=FEE,
        location=LOCATION,
    )
    load.occurrence_ids[administrative.code] = administrative.id
    for plan in SESSIONS:
        occurrence = await create_occurrence(
            session,
            programme_id=await _programme_id(session, plan.programme_code),
            code=plan.occurrence_code,
            name=plan.programme_name,
            kind=OccurrenceKind.SESSION,
            start_date=plan.start,
            end_date=plan.end,
            unit_ids=None,
            fee=None,
            location=LOCATION,
        )
        load.occurrence_ids[occurrence.code] = occurrence.id
    load.report(
        f"Occurrences: ADMINISTRATIVE {ADMINISTRATIVE_CODE} ({YEAR_START} to {YEAR_END}, fee "
        f"{FEE} AUD) and {len(SESSIONS)} SESSION occurrences."
    )


async def _programme_id(session: AsyncSession, code: str) -> int:
    programme_id = await session.scalar(select(Programme.id).where(Programme.code == code))
    assert programme_id is not None, f"programme {code} was created above"
    return programme_id


async def _create_clients(load: DemoLoad) -> None:
    partner = await create_partner(load.session, code=PARTNER_CODE, name=PARTNER_NAME)
    for plan in CLIENTS:
        client = await create_client(
            load.session,
            client_code=plan.client_code,
            given_name=plan.given_name,
            surname=plan.surname,
            date_of_birth=plan.date_of_birth,
            email=plan.email,
            usi=plan.usi,
            partner_id=partner.id if plan.employed_by_partner else None,
        )
        load.client_ids[plan.number] = client.id
    employed = sum(1 for plan in CLIENTS if plan.employed_by_partner)
    load.report(f"Clients: {len(CLIENTS)}, of whom {employed} work for {PARTNER_NAME}.")


def _enrolled_in(plan: SessionPlan) -> Iterable[int]:
    return plan.enrolled if plan.enrolled is not None else (client.number for client in CLIENTS)


async def _enrol(load: DemoLoad) -> None:
    """Enrol every client in the administrative occurrence, then in the sessions, linking each.

    Sessions are enrolled in date order, so a later session's results have higher ids. Every
    result of one transaction has the same recorded time, and the roll-up then orders them by
    id, so a re-attempt in a later session wins.
    """
    for client in CLIENTS:
        await _enrol_one(load, ADMINISTRATIVE_CODE, client.number, link=False)
    session_count = 0
    for plan in SESSIONS:
        for number in _enrolled_in(plan):
            await _enrol_one(load, plan.occurrence_code, number, link=True)
            session_count += 1
    load.report(
        f"Enrolments: {len(CLIENTS)} administrative and {session_count} session enrolments, "
        "each session enrolment linked to its client's administrative one."
    )


async def _enrol_one(load: DemoLoad, occurrence_code: str, client_number: int, link: bool) -> None:
    enrolled = await enrol_client(
        load.session,
        client_id=load.client_ids[client_number],
        occurrence_id=load.occurrence_ids[occurrence_code],
        start_date=None,
        end_date=None,
        link=link,
        administrative_enrolment_id=None,
        enrolled_by=RECORDED_BY,
    )
    load.enrolment_ids[occurrence_code, client_number] = enrolled.enrolment.id


async def _record_payments(load: DemoLoad) -> None:
    count = 0
    for client in CLIENTS:
        for payment in payments_for(client):
            await record_payment(
                load.session,
                enrolment_id=load.enrolment_ids[ADMINISTRATIVE_CODE, client.number],
                amount=payment.amount,
                paid_on=payment.paid_on,
                method=payment.method,
                reference=payment.reference,
                recorded_by=RECORDED_BY,
            )
            count += 1
    load.report(f"Payments: {count}, all on administrative enrolments.")


async def _timetable_and_take_attendance(load: DemoLoad) -> None:
    classes = 0
    attendances = 0
    for plan in SESSIONS:
        for class_number, days in enumerate(plan.class_days, start=1):
            day = plan.start + timedelta(days=days)
            starts_at, ends_at = class_times(day)
            class_ = await create_class(
                load.session,
                occurrence_id=load.occurrence_ids[plan.occurrence_code],
                starts_at=starts_at,
                ends_at=ends_at,
                location=LOCATION,
            )
            load.class_ids[plan.occurrence_code, day] = class_.id
            classes += 1
            if plan.attendance_until is not None and day > plan.attendance_until:
                continue
            for number in _enrolled_in(plan):
                if number == WITHDRAWAL.client_number and day > WITHDRAWAL.withdrawn_on:
                    continue
                await record_attendance(
                    load.session,
                    class_id=class_.id,
                    enrolment_id=load.enrolment_ids[plan.occurrence_code, number],
                    attendance_type=attendance_type_for(number, class_number),
                    notes=None,
                    recorded_by=RECORDED_BY,
                )
                attendances += 1
    load.report(
        f"Classes: {classes}, with {attendances} attendances (PRESENT, ABSENT or SICK) in "
        "the session occurrences."
    )


async def _record_results(load: DemoLoad) -> None:
    """Record the sessions' results in date order, with the withdrawal where it happened."""
    recorded = 0
    for plan in SESSIONS:
        if plan.occurrence_code == WITHDRAWAL.continuing_in:
            await _withdraw(load)
        for unit_code in plan.unit_codes:
            recorded += await _record_unit(load, plan, unit_code)
    load.report(
        f"Results: {recorded} recorded in the session occurrences (outcomes 20, 30, 51, 60, "
        "70 and 85), including re-attempts of BSBCMM511 in the catch-up session."
    )


async def _record_unit(load: DemoLoad, plan: SessionPlan, unit_code: str) -> int:
    """Record one unit of a session for its clients in one recordResults call."""
    if plan.default_outcome is None:
        return 0
    exceptions = plan.outcomes.get(unit_code, {})
    # Continuing and not-started units have begun, or will begin, on the session's first day.
    start = plan.start if not plan.default_outcome.is_final else None
    entries = [
        ResultEntry(
            index=index,
            enrolment_id=load.enrolment_ids[plan.occurrence_code, number],
            outcome=exceptions.get(number, plan.default_outcome),
            start_date=start,
        )
        for index, number in enumerate(
            number for number in _enrolled_in(plan) if number not in load.withdrawn
        )
    ]
    results = await record_results(
        load.session,
        occurrence_id=load.occurrence_ids[plan.occurrence_code],
        unit_id=load.unit_ids[unit_code],
        entries=entries,
        recorded_by=RECORDED_BY,
    )
    return len(results)


async def _withdraw(load: DemoLoad) -> None:
    """Withdraw one client part way through a session whose units they had started.

    Their units there were continuing (70). The withdrawal turns them into 40 (withdrawn),
    ending on the withdrawal date. It also withdraws every linked session enrolment together
    with the administrative one.
    """
    number = WITHDRAWAL.client_number
    session_enrolment_id = load.enrolment_ids[WITHDRAWAL.continuing_in, number]
    plan = next(plan for plan in SESSIONS if plan.occurrence_code == WITHDRAWAL.continuing_in)
    for unit_code in plan.unit_codes:
        await record_result(
            load.session,
            enrolment_id=session_enrolment_id,
            unit_id=load.unit_ids[unit_code],
            outcome=Outcome.CONTINUING,
            start_date=WITHDRAWAL.continuing_from,
            end_date=None,
            recorded_by=RECORDED_BY,
        )
    withdrawn = await withdraw_enrolment(
        load.session,
        enrolment_id=load.enrolment_ids[ADMINISTRATIVE_CODE, number],
        withdrawn_on=WITHDRAWAL.withdrawn_on,
        cascade=True,
        withdrawn_by=RECORDED_BY,
    )
    load.withdrawn.add(number)
    client_code = next(client.client_code for client in CLIENTS if client.number == number)
    load.report(
        f"Withdrawal: client {client_code} withdrew on {WITHDRAWAL.withdrawn_on}, with "
        f"{len(withdrawn) - 1} linked session enrolments (units under way there become 40)."
    )
