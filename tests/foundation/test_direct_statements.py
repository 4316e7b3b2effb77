"""Direct statements behave like any other statement of the session, on a real PostgreSQL.

They share the session's transaction and savepoints, raise the cursor events that statement
counts rely on, and fail with SQLAlchemy's exceptions.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    any_,
    bindparam,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.direct import ID_ARRAY, DirectStatement, EntityLoader, IdListStatement
from models.enums import OccurrenceKind
from models.tables import Occurrence, Partner
from tests.factories import create_occurrence, create_units

INSERT_PARTNER = DirectStatement(
    insert(Partner).values(code=bindparam("code"), name=bindparam("name")).returning(Partner.id),
    enrolink_test_option=True,
)
PARTNER_CODES = DirectStatement(
    select(Partner.code).where(Partner.id == any_(bindparam("ids", type_=ID_ARRAY)))
)
COUNT_PARTNERS = DirectStatement(select(func.count()).select_from(Partner))
# Bound on the wait for a terminated backend to exit, with room for a loaded machine.
EXIT_WITHIN_SECONDS = 5.0


async def _partner_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as other:
        count: int = await COUNT_PARTNERS.scalar_one(other)
        return count


async def test_first_statement_begins_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await INSERT_PARTNER.execute(session, {"code": "P1", "name": "Partner one"})
        # Another session cannot see it: the insert is inside an open transaction.
        assert await _partner_count(sessionmaker) == 0
        await session.rollback()
    assert await _partner_count(sessionmaker) == 0

    async with sessionmaker() as session:
        await INSERT_PARTNER.execute(session, {"code": "P1", "name": "Partner one"})
        await session.commit()
    assert await _partner_count(sessionmaker) == 1


async def test_savepoint_rollback_undoes_statement(session: AsyncSession) -> None:
    kept_id = await INSERT_PARTNER.scalar_one(session, {"code": "KEPT", "name": "Kept"})
    savepoint = await session.begin_nested()
    dropped_id = await INSERT_PARTNER.scalar_one(session, {"code": "DROPPED", "name": "Dropped"})
    await savepoint.rollback()

    assert await PARTNER_CODES.scalars(session, {"ids": [kept_id, dropped_id]}) == ["KEPT"]


async def test_statements_follow_transactions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await INSERT_PARTNER.execute(session, {"code": "FIRST", "name": "First"})
        await session.commit()
        # A new transaction, perhaps on another pooled connection.
        await INSERT_PARTNER.execute(session, {"code": "SECOND", "name": "Second"})
        rolled_back = await session.begin_nested()
        await INSERT_PARTNER.execute(session, {"code": "THIRD", "name": "Third"})
        await rolled_back.rollback()
        # A savepoint begun after another's rollback is a savepoint of its own.
        released = await session.begin_nested()
        await INSERT_PARTNER.execute(session, {"code": "FOURTH", "name": "Fourth"})
        await released.commit()
        await session.rollback()
        await INSERT_PARTNER.execute(session, {"code": "FIFTH", "name": "Fifth"})
        await session.commit()

    async with sessionmaker() as session:
        codes = (await session.scalars(select(Partner.code).order_by(Partner.id))).all()
    assert codes == ["FIRST", "FIFTH"]


async def test_orm_and_direct_share_transaction(session: AsyncSession) -> None:
    session.add(Partner(code="ORM", name="Added through the ORM"))
    await session.flush()
    direct_id = await INSERT_PARTNER.scalar_one(session, {"code": "DIRECT", "name": "Direct"})

    codes = (await session.scalars(select(Partner.code).order_by(Partner.id))).all()
    assert codes == ["ORM", "DIRECT"]
    assert await PARTNER_CODES.scalars(session, {"ids": [direct_id]}) == ["DIRECT"]


async def test_cursor_events_see_statement(engine: AsyncEngine, session: AsyncSession) -> None:
    seen: list[tuple[str, str, Any, bool]] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, many: Any
    ) -> None:
        seen.append(("before", statement, context.execution_options, many))

    def after(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, many: Any
    ) -> None:
        seen.append(("after", statement, context.execution_options, many))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        await INSERT_PARTNER.execute(session, {"code": "EV", "name": "Events"})
        await PARTNER_CODES.executemany(session, [{"ids": [1]}, {"ids": [2]}])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.remove(engine.sync_engine, "after_cursor_execute", after)

    assert [(moment, sql, many) for moment, sql, _, many in seen] == [
        ("before", INSERT_PARTNER.sql, False),
        ("after", INSERT_PARTNER.sql, False),
        ("before", PARTNER_CODES.sql, True),
        ("after", PARTNER_CODES.sql, True),
    ]
    assert seen[0][2] == {"enrolink_test_option": True}
    assert seen[2][2] == {}


async def test_unique_violation_names_constraint(
    session: AsyncSession,
) -> None:
    await INSERT_PARTNER.execute(session, {"code": "SAME", "name": "First"})
    savepoint = await session.begin_nested()
    with pytest.raises(IntegrityError) as raised:
        await INSERT_PARTNER.execute(session, {"code": "SAME", "name": "Second"})
    await savepoint.rollback()

    cause = raised.value.orig.__cause__
    assert isinstance(cause, asyncpg.UniqueViolationError)
    assert cause.constraint_name == "uq_partners_code"
    # The transaction goes on after the savepoint's rollback, with the first row in place.
    assert await COUNT_PARTNERS.scalar_one(session) == 1


async def test_missing_parameter_is_named(session: AsyncSession) -> None:
    with pytest.raises(KeyError, match="'name'"):
        await INSERT_PARTNER.execute(session, {"code": "NONAME"})


def test_per_call_statements_rejected() -> None:
    with pytest.raises(TypeError, match="ids expand into a list"):
        DirectStatement(select(Partner.id).where(Partner.id.in_(bindparam("ids", expanding=True))))
    stamped = Table(
        "stamped",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", DateTime(timezone=True), default=lambda: datetime.now(UTC)),
    )
    with pytest.raises(TypeError, match="Column at gets its value from Python"):
        DirectStatement(insert(stamped).values(id=bindparam("id")))


async def test_lost_connection_invalidated(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session:
        backend = await DirectStatement(select(func.pg_backend_pid())).scalar_one(session)
        admin = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", backend)
            # pg_terminate_backend only signals the backend; wait for it to exit.
            deadline = asyncio.get_running_loop().time() + EXIT_WITHIN_SECONDS
            while await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend
            ):
                assert asyncio.get_running_loop().time() < deadline, "the backend did not exit"
                await asyncio.sleep(0.05)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as raised:
            await COUNT_PARTNERS.scalar_one(session)
        assert raised.value.connection_invalidated
        await session.rollback()

    # The pool does not hand the lost connection out again.
    async with sessionmaker() as session:
        assert await COUNT_PARTNERS.scalar_one(session) == 0
        now = await DirectStatement(select(func.now())).scalar_one(session)
        assert now <= datetime.now(UTC)


async def test_text_statements_run_beside_direct(session: AsyncSession) -> None:
    await INSERT_PARTNER.execute(session, {"code": "T", "name": "Text"})
    assert (await session.execute(text("SELECT count(*) FROM partners"))).scalar_one() == 1


OCCURRENCES = EntityLoader(Occurrence)
OCCURRENCE_BY_ID = DirectStatement(
    select(*OCCURRENCES.columns).where(Occurrence.id == bindparam("id"))
)


async def _committed_occurrence(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as setup:
        units = await create_units(setup, 1)
        occurrence = await create_occurrence(
            setup, kind=OccurrenceKind.ADMINISTRATIVE, units=units, fee=Decimal("1250.50")
        )
        await setup.commit()
        return occurrence.id


async def _load_occurrence(session: AsyncSession, occurrence_id: int) -> Occurrence:
    rows = await OCCURRENCE_BY_ID.fetch(session, {"id": occurrence_id})
    loaded: Occurrence = OCCURRENCES.load(session, rows[0])
    return loaded


async def test_loader_attaches_clean_object(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    occurrence_id = await _committed_occurrence(sessionmaker)
    async with sessionmaker() as session:
        loaded = await _load_occurrence(session, occurrence_id)

        assert loaded in session
        assert not session.dirty
        assert inspect(loaded).persistent
        # The values take the ORM's types: the enum member and a Decimal.
        assert loaded.kind is OccurrenceKind.ADMINISTRATIVE
        assert loaded.fee == Decimal("1250.50")
        assert await session.get(Occurrence, occurrence_id) is loaded


async def test_loader_refreshes_object_in_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    occurrence_id = await _committed_occurrence(sessionmaker)
    async with sessionmaker() as session:
        earlier = await session.get(Occurrence, occurrence_id)
        assert earlier is not None
        async with sessionmaker() as other:
            await other.execute(
                update(Occurrence).where(Occurrence.id == occurrence_id).values(name="Renamed")
            )
            await other.commit()

        loaded = await _load_occurrence(session, occurrence_id)

        assert loaded is earlier
        assert earlier.name == "Renamed"
        assert not session.dirty


async def test_loaded_object_changes_are_flushed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    occurrence_id = await _committed_occurrence(sessionmaker)
    async with sessionmaker() as session:
        loaded = await _load_occurrence(session, occurrence_id)
        loaded.location = "Room 4"
        await session.commit()

    async with sessionmaker() as session:
        stored = await session.get(Occurrence, occurrence_id)
        assert stored is not None
        assert stored.location == "Room 4"


async def test_attach_rejects_missing_column(session: AsyncSession) -> None:
    with pytest.raises(ValueError) as raised:
        OCCURRENCES.attach(session, {"id": 1, "name": "No location", "room": "4"})

    message = str(raised.value)
    assert "location" in message.split("missing: ")[1].split(";")[0]
    assert "not a column: room" in message
    assert "Pass one value under each column's attribute name" in message
    assert not session.identity_map


async def test_attached_object_flushes_nothing(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    occurrence_id = await _committed_occurrence(sessionmaker)
    statements: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_arguments: Any) -> None:
        statements.append(statement)

    async with sessionmaker() as session:
        loaded = await _load_occurrence(session, occurrence_id)
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            await session.flush()
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)

        assert statements == []
        assert not session.new
        assert inspect(loaded).key == (Occurrence, (occurrence_id,), None)


PARTNER_CODES_BY_IDS = IdListStatement(
    lambda ids_match: select(Partner.code).where(ids_match(Partner.id)).order_by(Partner.id)
)


async def test_id_list_statement_one_and_many(session: AsyncSession) -> None:
    ids = [
        await INSERT_PARTNER.scalar_one(session, {"code": code, "name": f"Partner {code}"})
        for code in ("A", "B", "C")
    ]

    assert await PARTNER_CODES_BY_IDS.scalars(session, ids[:1]) == ["A"]
    assert await PARTNER_CODES_BY_IDS.scalars(session, ids[1:]) == ["B", "C"]
    assert await PARTNER_CODES_BY_IDS.scalars(session, []) == []
    # One id gets a plain comparison, which PostgreSQL plans as a primary-key lookup.
    assert "partners.id = $1::BIGINT" in PARTNER_CODES_BY_IDS.one.sql
    assert "partners.id = ANY ($1::BIGINT[])" in PARTNER_CODES_BY_IDS.many.sql
