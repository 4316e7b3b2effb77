"""Two copies of the application over one database: compiled reads on, and off."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from bench.database import plain_url
from bench.datasets import Dataset, load
from enrolink.app import create_app
from enrolink.settings import load_settings
from models.db import create_engine, create_sessionmaker
from models.enums import TokenRole
from models.tokens import create_token

# Two administrative occurrences of four clients each: big enough for pages of two, and small
# enough to load in a few milliseconds.
ORACLE_DATASET = Dataset("oracle", administrative_occurrences=2, clients_per_occurrence=4)

# Rows the generated dataset lacks, so that every scalar kind and null occurs at least once.
VARIETY = [
    "INSERT INTO partners (id, code, name) VALUES (1, 'ACME', 'Acme Apprenticeships')",
    "UPDATE clients SET partner_id = 1, usi = 'BNGH7C75FN', given_name = NULL, email = NULL "
    "WHERE id = 2",
    # An unrecorded session result, and an administrative result that no roll-up has written.
    "UPDATE enrolled_units SET outcome = NULL, start_date = NULL, end_date = NULL, "
    "recorded_at = NULL, recorded_by = NULL WHERE id = (SELECT max(id) FROM enrolled_units)",
    "UPDATE enrolled_units SET outcome = NULL, start_date = NULL, end_date = NULL, "
    "recorded_at = NULL, source = 'RECORDED', source_enrolled_unit_id = NULL WHERE id = 1",
    # A withdrawn administrative enrolment, a deleted session enrolment and a closed link.
    "UPDATE enrolments SET status = 'WITHDRAWN', withdrawn_on = DATE '2025-05-30' WHERE id = 3",
    "UPDATE enrolments SET deleted_at = TIMESTAMPTZ '2025-07-01 10:11:12.5+00' "
    "WHERE id = (SELECT session_enrolment_id FROM enrolment_links WHERE id = 1)",
    "UPDATE enrolment_links SET unlinked_at = TIMESTAMPTZ '2025-08-01 00:00:00+00', "
    "unlink_reason = 'Enrolled in the wrong session' WHERE id = 6",
    "UPDATE enrolments SET roll_up_version = 2, roll_up_computed_at = NULL WHERE id = 4",
    # Money on one administrative enrolment; none on the others, whose balance is 0.00.
    "INSERT INTO charges (enrolment_id, amount, description, charged_on) "
    "VALUES (1, 4500.00, 'Tuition', DATE '2025-02-03'), (1, 120.50, 'Materials', '2025-02-04')",
    "INSERT INTO payments (enrolment_id, amount, paid_on, method, reference) "
    "VALUES (1, 1000.00, DATE '2025-02-10', 'card', NULL), (1, 0.05, '2025-03-01', NULL, 'R-2')",
    "INSERT INTO classes (id, occurrence_id, starts_at, ends_at, location) VALUES "
    "(1, 3, TIMESTAMPTZ '2025-02-04 09:00:00+00', '2025-02-04 12:30:00.000001+00', NULL)",
    "INSERT INTO attendances (class_id, enrolment_id, attendance_type_id, notes) "
    "SELECT 1, 9, id, 'Arrived late' FROM attendance_types WHERE code = 'PRESENT'",
    "INSERT INTO reconciliation_runs (id, trigger, started_at, finished_at) VALUES "
    "(1, 'beat', TIMESTAMPTZ '2025-09-01 00:00:00+00', NULL), "
    "(2, 'manual', TIMESTAMPTZ '2025-09-02 00:00:00.25+00', '2025-09-02 00:00:01+00')",
    "INSERT INTO reconciliation_counts (run_id, cause, found, repaired) VALUES "
    "(2, 'ENROLMENT_DELETED', 1, 1), (2, 'CLIENTS_DIFFER', 0, 0)",
]


@dataclass
class App:
    """One application in-process, with the SQL statements its engine sent while counting."""

    http: httpx.AsyncClient
    token: str
    statements: list[str] = field(default_factory=list)
    counting: bool = False

    async def post(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> Any:
        response = await self.http.post(
            "/graphql",
            json={
                "query": document,
                "variables": variables or {},
                "operationName": operation_name,
            },
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def count(self, document: str, variables: dict[str, Any] | None = None) -> int:
        """Return the statements the GraphQL request sent.

        The bearer token is looked up (and its last use recorded) in a transaction of its own
        before the GraphQL request starts, so statements on api_tokens are not counted.
        """
        self.statements = []
        self.counting = True
        try:
            await self.post(document, variables)
        finally:
            self.counting = False
        return len([statement for statement in self.statements if "api_tokens" not in statement])


@pytest.fixture
async def oracle_database(database_url: str) -> str:
    url = plain_url(database_url)
    await load(url, ORACLE_DATASET, progress=False)
    connection = await asyncpg.connect(url)
    try:
        for statement in VARIETY:
            await connection.execute(statement)
    finally:
        await connection.close()
    return database_url


@pytest.fixture
async def staff_token(oracle_database: str) -> str:
    engine = create_engine(oracle_database, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            issued = await create_token(session, role=TokenRole.STAFF, name="oracle test")
            await session.commit()
    finally:
        await engine.dispose()
    return issued.secret


@pytest.fixture
async def partner_token(oracle_database: str) -> str:
    """Return a token of partner 1, whose one client is client 2 (see VARIETY)."""
    engine = create_engine(oracle_database, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            issued = await create_token(
                session, role=TokenRole.PARTNER, name="oracle partner", partner_id=1
            )
            await session.commit()
    finally:
        await engine.dispose()
    return issued.secret


async def _app(
    database_url: str, redis_url: str, token: str, *, compiled: bool
) -> AsyncIterator[App]:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        environment="development",
        database_url=database_url,
        redis_url=redis_url,
        roll_up_queue=f"roll_up_{suffix}",
        reconcile_queue=f"reconcile_{suffix}",
        compiled_reads=compiled,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolink.test") as http:
            app = App(http=http, token=token)
            engine = application.state.enrolink.engine.sync_engine

            @event.listens_for(engine, "before_cursor_execute")
            def count(*args: Any) -> None:
                if app.counting:
                    app.statements.append(args[2])

            yield app


@pytest.fixture
async def compiled(oracle_database: str, redis_url: str, staff_token: str) -> AsyncIterator[App]:
    async for app in _app(oracle_database, redis_url, staff_token, compiled=True):
        yield app


@pytest.fixture
async def resolvers(oracle_database: str, redis_url: str, staff_token: str) -> AsyncIterator[App]:
    async for app in _app(oracle_database, redis_url, staff_token, compiled=False):
        yield app
