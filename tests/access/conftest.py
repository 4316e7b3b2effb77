"""Two partners and unpartnered clients sharing occurrences, built with ORM inserts.

The data offers a way out of a partner's scope on every path it can:

- administrative and session occurrences shared by both partners and unpartnered clients;
- an active link from a partner's enrolment to an unpartnered client's session enrolment;
- a closed link from another partner's administrative enrolment;
- a rolled-up result taken from another client's session result;
- a deleted enrolment in an occurrence the partner must not see;
- a programme whose units reach past the occurrence that delivers it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from enrolink.app import create_app
from enrolink.settings import Settings, load_settings
from models import tables
from models.enums import EnrolmentStatus, OccurrenceKind, ResultSource, TokenRole
from schema.ids import encode_id
from tests.api.conftest import (
    GraphQLClient,
    StatementCounter,
    app_settings,
    graphql,
    issue_token,
)

__all__ = ["app_settings", "graphql"]

# The GraphQL type name of each table whose rows are nodes.
NODE_TYPE_OF_TABLE: dict[type[Any], str] = {
    tables.Unit: "Unit",
    tables.Partner: "Partner",
    tables.Programme: "Programme",
    tables.Occurrence: "Occurrence",
    tables.Client: "Client",
    tables.Enrolment: "Enrolment",
    tables.EnrolledUnit: "Result",
    tables.EnrolmentLink: "EnrolmentLink",
    tables.Class: "Class",
    tables.Attendance: "Attendance",
    tables.Payment: "Payment",
    tables.ReconciliationRun: "ReconciliationRun",
}

Node = tuple[str, int]


@dataclass
class World:
    """The rows built, the partners' tokens and, per partner code, the nodes it may read."""

    tokens: dict[str, str]
    visible: dict[str, set[Node]]
    all_nodes: set[Node]
    ids: dict[str, int] = field(default_factory=dict)

    def gid(self, type_name: str, key: str) -> str:
        return encode_id(type_name, self.ids[key])


class _Builder:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.ids: dict[str, int] = {}

    async def add(self, key: str, row: Any) -> Any:
        self.session.add(row)
        await self.session.flush()
        self.ids[key] = row.id
        return row


async def _build(session: AsyncSession) -> dict[str, int]:
    build = _Builder(session)
    add = build.add

    acme = await add("acme", tables.Partner(code="ACME", name="Acme Builders"))
    beta = await add("beta", tables.Partner(code="BETA", name="Beta Electrical"))

    units = [
        await add(f"u{n}", tables.Unit(code=f"ACCU{n}", title=f"Access unit {n}", nominal_hours=20))
        for n in range(1, 7)
    ]
    u1, u2, u3, u4, u5, u6 = units

    async def programme(key: str, members: list[tables.Unit]) -> tables.Programme:
        row = await add(key, tables.Programme(code=key.upper(), name=f"Programme {key}"))
        session.add_all(
            tables.ProgrammeUnit(programme_id=row.id, unit_id=unit.id, position=position)
            for position, unit in enumerate(members)
        )
        await session.flush()
        return row  # type: ignore[no-any-return]

    p_admin = await programme("padmin", [u1, u2, u3, u4])
    p_s1 = await programme("ps1", [u1, u2])
    p_s2 = await programme("ps2", [u3])
    # Delivered by OTHER with U5 only; U6 is reachable through the programme alone.
    p_other = await programme("pother", [u5, u6])
    await programme("punused", [u6])

    async def occurrence(
        key: str,
        programme: tables.Programme,
        kind: OccurrenceKind,
        members: list[tables.Unit],
        start: date,
        end: date,
    ) -> tables.Occurrence:
        row = await add(
            key,
            tables.Occurrence(
                programme_id=programme.id,
                code=key.upper(),
                name=f"Occurrence {key}",
                kind=kind,
                start_date=start,
                end_date=end,
                fee=None if kind is OccurrenceKind.SESSION else Decimal("1000.00"),
            ),
        )
        session.add_all(
            tables.OccurrenceUnit(occurrence_id=row.id, unit_id=unit.id, position=position)
            for position, unit in enumerate(members)
        )
        await session.flush()
        return row  # type: ignore[no-any-return]

    year = (date(2026, 2, 2), date(2026, 11, 27))
    admin = await occurrence(
        "admin", p_admin, OccurrenceKind.ADMINISTRATIVE, [u1, u2, u3, u4], *year
    )
    s1 = await occurrence(
        "s1", p_s1, OccurrenceKind.SESSION, [u1, u2], date(2026, 3, 2), date(2026, 3, 27)
    )
    s2 = await occurrence(
        "s2", p_s2, OccurrenceKind.SESSION, [u3], date(2026, 4, 6), date(2026, 4, 24)
    )
    other = await occurrence("other", p_other, OccurrenceKind.STANDARD, [u5], *year)
    await occurrence("empty", p_admin, OccurrenceKind.STANDARD, [u1], *year)

    a1 = await add("a1", tables.Client(client_code="A1", surname="Avery", partner_id=acme.id))
    a2 = await add("a2", tables.Client(client_code="A2", surname="Archer", partner_id=acme.id))
    b1 = await add("b1", tables.Client(client_code="B1", surname="Baker", partner_id=beta.id))
    n1 = await add("n1", tables.Client(client_code="N1", surname="Nolan"))

    async def enrol(key: str, client: tables.Client, occ: tables.Occurrence, **extra: Any) -> Any:
        row = await add(
            key,
            tables.Enrolment(
                client_id=client.id,
                occurrence_id=occ.id,
                status=EnrolmentStatus.ACTIVE,
                start_date=occ.start_date,
                end_date=occ.end_date,
                **extra,
            ),
        )
        members = await session.scalars(
            select(tables.OccurrenceUnit.unit_id).where(
                tables.OccurrenceUnit.occurrence_id == occ.id
            )
        )
        for unit_id in members.all():
            await add(
                f"{key}.r{unit_id}",
                tables.EnrolledUnit(enrolment_id=row.id, unit_id=unit_id),
            )
        return row

    a1_admin = await enrol("a1.admin", a1, admin)
    a1_s1 = await enrol("a1.s1", a1, s1)
    a1_s2 = await enrol("a1.s2", a1, s2)
    a2_admin = await enrol("a2.admin", a2, admin)
    deleted_at = datetime(2026, 2, 10, tzinfo=UTC)
    await enrol("a2.other", a2, other, deleted_at=deleted_at)
    b1_admin = await enrol("b1.admin", b1, admin)
    b1_s1 = await enrol("b1.s1", b1, s1)
    b1_other = await enrol("b1.other", b1, other)
    n1_admin = await enrol("n1.admin", n1, admin)
    n1_s1 = await enrol("n1.s1", n1, s1)
    n1_s2 = await enrol("n1.s2", n1, s2)
    await enrol("n1.other", n1, other)

    linked_at = datetime(2026, 3, 1, tzinfo=UTC)

    async def link(key: str, administrative: Any, session_side: Any, **extra: Any) -> None:
        await add(
            key,
            tables.EnrolmentLink(
                administrative_enrolment_id=administrative.id,
                session_enrolment_id=session_side.id,
                linked_at=linked_at,
                **extra,
            ),
        )

    await link("l.a1.s1", a1_admin, a1_s1)
    await link("l.a1.s2", a1_admin, a1_s2)
    await link("l.b1.s1", b1_admin, b1_s1)
    await link("l.n1.s1", n1_admin, n1_s1)
    # Orphans: an active link to an unpartnered client's session, a closed one from another
    # partner's administrative enrolment.
    await link("l.a1.n1s2", a1_admin, n1_s2)
    await link(
        "l.b1.a1s2",
        b1_admin,
        a1_s2,
        unlinked_at=linked_at + timedelta(days=1),
        unlink_reason="client_mismatch",
    )

    recorded_at = datetime(2026, 3, 27, 6, tzinfo=UTC)
    for key, source_key in (("a1.admin", "a1.s1"), ("b1.admin", "n1.s2")):
        unit_id = u1.id if source_key == "a1.s1" else u3.id
        source = await session.get(tables.EnrolledUnit, build.ids[f"{source_key}.r{unit_id}"])
        target = await session.get(tables.EnrolledUnit, build.ids[f"{key}.r{unit_id}"])
        assert source is not None and target is not None
        source.outcome, source.recorded_at = 20, recorded_at
        target.outcome, target.recorded_at = 20, recorded_at
        target.source = ResultSource.ROLLED_UP
        target.source_enrolled_unit_id = source.id
    # A rolled-up result of a partner's enrolment taken from another client's session result.
    orphan = await session.get(tables.EnrolledUnit, build.ids[f"a1.admin.r{u3.id}"])
    assert orphan is not None
    orphan.source = ResultSource.ROLLED_UP
    orphan.source_enrolled_unit_id = build.ids[f"n1.s2.r{u3.id}"]
    await session.flush()

    present = await session.scalar(
        select(tables.AttendanceType).where(tables.AttendanceType.code == "PRESENT")
    )
    assert present is not None
    starts = datetime(2026, 3, 2, 9, tzinfo=UTC)
    c1 = await add(
        "c1",
        tables.Class(occurrence_id=s1.id, starts_at=starts, ends_at=starts + timedelta(hours=3)),
    )
    await add(
        "c2",
        tables.Class(
            occurrence_id=s2.id,
            starts_at=starts + timedelta(days=40),
            ends_at=starts + timedelta(days=40, hours=3),
        ),
    )
    c3 = await add(
        "c3",
        tables.Class(occurrence_id=other.id, starts_at=starts, ends_at=starts + timedelta(hours=2)),
    )
    for key, enrolment, class_ in (
        ("att.a1", a1_s1, c1),
        ("att.b1", b1_s1, c1),
        ("att.n1", n1_s1, c1),
        ("att.b1.other", b1_other, c3),
    ):
        await add(
            key,
            tables.Attendance(
                class_id=class_.id, enrolment_id=enrolment.id, attendance_type_id=present.id
            ),
        )

    for key, enrolment in (("pay.a1", a1_admin), ("pay.b1", b1_admin), ("pay.a2", a2_admin)):
        await add(
            key,
            tables.Payment(
                enrolment_id=enrolment.id, amount=Decimal("250.00"), paid_on=date(2026, 2, 20)
            ),
        )
        await add(
            f"charge.{key}",
            tables.Charge(
                enrolment_id=enrolment.id,
                amount=Decimal("1000.00"),
                description="Course fee",
                charged_on=date(2026, 2, 2),
            ),
        )

    run = await add("run", tables.ReconciliationRun(trigger="schedule"))
    session.add(
        tables.ReconciliationCount(run_id=run.id, cause="client_mismatch", found=1, repaired=0)
    )
    await session.flush()
    return build.ids


def _expected(ids: dict[str, int], partner: str) -> set[Node]:
    """List by hand what each partner may read, independently of the rules in schema.access."""
    if partner == "ACME":
        clients = ["a1", "a2"]
        enrolments = ["a1.admin", "a1.s1", "a1.s2", "a2.admin"]
        links = ["l.a1.s1", "l.a1.s2"]
        occurrences = ["admin", "s1", "s2"]
        programmes = ["padmin", "ps1", "ps2"]
        units = ["u1", "u2", "u3", "u4"]
        classes = ["c1", "c2"]
        attendances = ["att.a1"]
        payments = ["pay.a1", "pay.a2"]
    else:
        clients = ["b1"]
        enrolments = ["b1.admin", "b1.s1", "b1.other"]
        links = ["l.b1.s1"]
        occurrences = ["admin", "s1", "other"]
        programmes = ["padmin", "ps1", "pother"]
        units = ["u1", "u2", "u3", "u4", "u5", "u6"]
        classes = ["c1", "c3"]
        attendances = ["att.b1", "att.b1.other"]
        payments = ["pay.b1"]

    visible: set[Node] = {("Partner", ids[partner.lower()])}
    visible |= {("Client", ids[key]) for key in clients}
    visible |= {("Enrolment", ids[key]) for key in enrolments}
    visible |= {
        ("Result", value)
        for key, value in ids.items()
        if key.partition(".r")[0] in enrolments and ".r" in key
    }
    visible |= {("EnrolmentLink", ids[key]) for key in links}
    visible |= {("Occurrence", ids[key]) for key in occurrences}
    visible |= {("Programme", ids[key]) for key in programmes}
    visible |= {("Unit", ids[key]) for key in units}
    visible |= {("Class", ids[key]) for key in classes}
    visible |= {("Attendance", ids[key]) for key in attendances}
    visible |= {("Payment", ids[key]) for key in payments}
    return visible


@pytest.fixture
async def world(graphql: GraphQLClient) -> World:
    sessionmaker = graphql.app.state.enrolink.sessionmaker
    async with sessionmaker() as session:
        ids = await _build(session)
        await session.commit()

        all_nodes: set[Node] = set()
        for model, type_name in NODE_TYPE_OF_TABLE.items():
            keys = await session.scalars(select(model.id))
            all_nodes |= {(type_name, key) for key in keys.all()}

    tokens = {
        "ACME": await issue_token(graphql.app, TokenRole.PARTNER, partner_id=ids["acme"]),
        "BETA": await issue_token(graphql.app, TokenRole.PARTNER, partner_id=ids["beta"]),
    }
    visible = {partner: _expected(ids, partner) for partner in tokens}
    return World(tokens=tokens, visible=visible, all_nodes=all_nodes, ids=ids)


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[GraphQLClient]:
    """Run an app built from ``settings`` in-process, with a staff token for its requests."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = await issue_token(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolink.test") as http:
            yield GraphQLClient(http=http, app=app, statements=StatementCounter(), token=token)


@pytest.fixture
def settings_for(database_url: str, redis_url: str) -> Callable[..., Settings]:
    """Return a function that builds settings for this test's database with overrides."""

    def build(**overrides: Any) -> Settings:
        return load_settings(database_url=database_url, redis_url=redis_url, **overrides)

    return build
