"""The engine sends savepoints as text, with the statements SQLAlchemy would have compiled."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models.tables import Partner


async def test_savepoints_roll_back_and_release(engine: AsyncEngine, session: AsyncSession) -> None:
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        session.add(Partner(code="OUTER", name="Outside the savepoints"))
        await session.flush()
        dropped = await session.begin_nested()
        session.add(Partner(code="DROPPED", name="Rolled back"))
        await session.flush()
        await dropped.rollback()
        released = await session.begin_nested()
        session.add(Partner(code="KEPT", name="Released"))
        await session.flush()
        await released.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)

    codes = (await session.scalars(select(Partner.code).order_by(Partner.id))).all()
    assert codes == ["OUTER", "KEPT"]
    savepoints = [statement for statement in sent if "SAVEPOINT" in statement]
    assert savepoints == [
        "SAVEPOINT sa_savepoint_1",
        "ROLLBACK TO SAVEPOINT sa_savepoint_1",
        "SAVEPOINT sa_savepoint_2",
        "RELEASE SAVEPOINT sa_savepoint_2",
    ]
