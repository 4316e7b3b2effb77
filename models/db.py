"""Async engine and session factory. The caller owns the transaction: nothing here commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 5,
    pool_timeout_seconds: float = 10.0,
    statement_timeout_ms: int = 30_000,
    prepared_statement_cache_size: int = 100,
    application_name: str = "enrolink",
    **engine_options: Any,
) -> AsyncEngine:
    """Create the engine of one process; create it once per event loop and dispose it on exit."""
    # JIT off: compiling the large single statements that build JSON for nested reads cost more
    # (about 10 ms a query, more on a connection's first ones) than it saved in benchmarks.
    server_settings = {"application_name": application_name, "timezone": "UTC", "jit": "off"}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_seconds,
        connect_args={
            "server_settings": server_settings,
            "prepared_statement_cache_size": prepared_statement_cache_size,
        },
        **engine_options,
    )
    event.listen(engine.sync_engine.pool, "checkout", _replace_closed_connection)
    _send_savepoints_as_text(engine.sync_engine.dialect)
    return engine


def _send_savepoints_as_text(dialect: Any) -> None:
    """Make the engine send savepoint statements as text instead of compiling them every time.

    SQLAlchemy compiles SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT anew for each
    use, because its savepoint clauses are not cached. Every mutation runs in a savepoint, and
    the two compilations took about 0.2 ms of its CPU. The text is the same as the compiled
    statements', and it still goes through the connection, so cursor events and statement
    counts see it.
    """
    preparer = dialect.identifier_preparer

    def do_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"SAVEPOINT {preparer.quote(name)}")

    def do_rollback_to_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {preparer.quote(name)}")

    def do_release_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {preparer.quote(name)}")

    # Attributes of this dialect instance, the engine's own, in place of the class's methods.
    dialect.do_savepoint = do_savepoint
    dialect.do_rollback_to_savepoint = do_rollback_to_savepoint
    dialect.do_release_savepoint = do_release_savepoint


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Make the pool replace a connection that PostgreSQL has closed, before anyone uses it.

    A restarting PostgreSQL closes every connection, and asyncpg notices the closed socket at
    once, so this check costs no round trip. SQLAlchemy's pre-ping would send three (BEGIN, an
    empty statement, ROLLBACK) on every checkout, about 0.35 ms of each request here. A
    connection lost without the socket closing, or taken in the moment before asyncpg detects the
    closed socket, fails its first statement instead, and the request gets a 503 asking for a
    retry.
    """
    if dbapi_connection.driver_connection.is_closed():
        # The pool discards the connection and checks out another, a few times at most.
        raise DisconnectionError("PostgreSQL closed this pooled connection.")


def create_engine_from_settings(settings: Any, *, application_name: str) -> AsyncEngine:
    """Create the engine from :class:`enrolink.settings.Settings` without importing it."""
    return create_engine(
        settings.require_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout_seconds=settings.db_pool_timeout_seconds,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        prepared_statement_cache_size=settings.db_prepared_statement_cache_size,
        application_name=application_name,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the request commits, so payloads can
    # be shaped without touching the database again (which async code cannot do implicitly).
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
