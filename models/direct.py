"""Statements of the write path sent to asyncpg without SQLAlchemy's work per execution.

Measured on the 2-core benchmark machine with the enrolment lock of models.enrolment_locks,
SQLAlchemy spent about 0.16 ms of CPU on the statement sent as Core and 0.34 ms sent through the
ORM, next to asyncpg's own 0.06 ms. It looks up the compiled form, processes parameters and
builds a result. A mutation sends ten or so statements, so that work
was the largest single part of its time. A :class:`DirectStatement` is compiled once, when its
module is imported, and each execution only orders the parameters and hands them to asyncpg.

It runs on the session's pooled connection, inside the session's transaction (starting it when
it is the first statement), so commit, rollback and savepoints cover it like any other
statement. It raises the engine's ``before_cursor_execute`` and ``after_cursor_execute``
events, so statement counts and metrics see it, and it raises SQLAlchemy's ``DBAPIError``
subclasses, so the callers' handling of unique violations and transaction conflicts is the
same. Rows come back as asyncpg records, with values as asyncpg decodes them: an enum column
gives its name as a string.

Only plain Core statements qualify: no expanding ``IN`` (use ``= ANY`` over an array
parameter) and no column default computed in Python at execution time. To load ORM objects,
select their table's columns and turn the rows into session objects with an EntityLoader.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, cast

from sqlalchemy import BigInteger, Numeric, any_, bindparam, inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn, immutabledict

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# The type of a list of ids compared with ``= ANY``.
ID_ARRAY = ARRAY(BigInteger)

Parameters = Mapping[str, Any]


class DirectExecution:
    """The stand-in for SQLAlchemy's execution context that cursor-event listeners receive.

    Listeners in this codebase read only ``execution_options``.
    """

    __slots__ = ("execution_options",)

    def __init__(self, execution_options: Mapping[str, Any]) -> None:
        self.execution_options = execution_options


_NO_OPTIONS = DirectExecution(immutabledict())


class DirectStatement:
    """One Core statement, compiled for asyncpg once and sent without SQLAlchemy's per-call work."""

    def __init__(self, statement: ClauseElement, **execution_options: Any) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))

        expanding = sorted(name for name, bind in compiled.binds.items() if bind.expanding)
        if expanding:
            raise TypeError(
                f"Parameters {', '.join(expanding)} expand into a list, which SQLAlchemy compiles "
                "on each call. Compare with = ANY over an array parameter instead."
            )
        # Literal values in the statement (the 1 of ``version + 1``) are parameters too.
        names = list(compiled.positiontup or ())
        fixed: dict[str, Any] = {
            name: compiled.binds[name].effective_value
            for name in names
            if not compiled.binds[name].required
        }
        for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
            default = column.default
            if default is None or not getattr(default, "is_scalar", False):
                raise TypeError(
                    f"Column {column.key} gets its value from Python when the statement runs. "
                    "Pass the value as a parameter instead."
                )
            fixed[column.key] = default.arg  # type: ignore[attr-defined]

        self.sql: str = compiled.string
        # A processor is a sequence only for tuple parameters, which no direct statement uses.
        processors: Mapping[str, Any] = compiled._bind_processors
        self._binds = [(name, processors.get(name)) for name in names]
        self._fixed = fixed
        self._context = (
            DirectExecution(immutabledict(execution_options)) if execution_options else _NO_OPTIONS
        )

    def arguments(self, parameters: Parameters) -> tuple[Any, ...]:
        """Return the positional arguments for asyncpg, in the order the SQL numbers them."""
        values: list[Any] = []
        for name, process in self._binds:
            if name in parameters:
                value = parameters[name]
            elif name in self._fixed:
                value = self._fixed[name]
            else:
                raise KeyError(f"The statement needs a value for the parameter {name!r}.")
            values.append(process(value) if process is not None else value)
        return tuple(values)

    async def fetch(self, session: AsyncSession, parameters: Parameters | None = None) -> list[Any]:
        """Run the statement and return its rows."""
        arguments = self.arguments(parameters or {})
        rows: list[Any] = await self._run(session, arguments, many=False)
        return rows

    async def scalars(
        self, session: AsyncSession, parameters: Parameters | None = None
    ) -> list[Any]:
        """Run the statement and return the first column of each row."""
        return [row[0] for row in await self.fetch(session, parameters)]

    async def scalar_one(self, session: AsyncSession, parameters: Parameters | None = None) -> Any:
        """Run the statement and return the first column of its only row."""
        rows = await self.fetch(session, parameters)
        if len(rows) != 1:
            raise RuntimeError(f"Expected one row from the statement, got {len(rows)}: {self.sql}")
        return rows[0][0]

    async def execute(self, session: AsyncSession, parameters: Parameters | None = None) -> None:
        """Run the statement and discard any rows."""
        await self._run(session, self.arguments(parameters or {}), many=False)

    async def executemany(self, session: AsyncSession, rows: Iterable[Parameters]) -> None:
        """Run the statement once for each set of parameters, in one round trip."""
        arguments = [self.arguments(row) for row in rows]
        if arguments:
            await self._run(session, arguments, many=True)

    async def _run(self, session: AsyncSession, arguments: Any, *, many: bool) -> Any:
        sync_connection = await _session_connection(session)
        events = sync_connection._has_events or sync_connection.engine._has_events
        if events:
            sync_connection.dispatch.before_cursor_execute(
                sync_connection, None, self.sql, arguments, self._context, many
            )
        adapted = sync_connection.connection.dbapi_connection
        driver: Any = adapted._connection  # type: ignore[union-attr]
        try:
            async with adapted._execute_mutex:  # type: ignore[union-attr]
                # SQLAlchemy's adaptor begins the asyncpg transaction with the first statement,
                # so a direct statement that comes first has to begin it the same way.
                if adapted._transaction is None:  # type: ignore[union-attr]
                    await adapted._start_transaction()  # type: ignore[union-attr]
                if many:
                    await driver.executemany(self.sql, arguments)
                    result: Any = None
                else:
                    result = await driver.fetch(self.sql, *arguments)
        except Exception as error:
            await _raise_as_dbapi_error(sync_connection, adapted, error, self.sql, arguments)
        if events:
            sync_connection.dispatch.after_cursor_execute(
                sync_connection, None, self.sql, arguments, self._context, many
            )
        return result


# The connection of each session transaction that a direct statement has run in. Calling
# AsyncSession.connection() for every statement cost about 30 microseconds of CPU each time
# (an estimate from the server's CPU per request). An entry goes when its transaction goes.
_CONNECTIONS: weakref.WeakKeyDictionary[SessionTransaction, Connection] = (
    weakref.WeakKeyDictionary()
)


async def _session_connection(session: AsyncSession) -> Connection:
    """Return the connection of the session's transaction, beginning one when there is none."""
    sync_session = session.sync_session
    # The innermost transaction: SQLAlchemy emits a savepoint when its transaction first gets
    # the connection from the session, so a new savepoint must not find its parent's entry.
    current = sync_session.get_nested_transaction() or sync_session.get_transaction()
    if current is not None:
        connection = _CONNECTIONS.get(current)
        # A failed transaction or a lost connection goes through the session, which raises
        # the error that explains it.
        if connection is not None and current.is_active and not connection.invalidated:
            return connection
    connection = (await session.connection()).sync_connection
    assert connection is not None
    current = sync_session.get_nested_transaction() or sync_session.get_transaction()
    assert current is not None
    _CONNECTIONS[current] = connection
    return connection


async def _raise_as_dbapi_error(
    connection: Connection, adapted: Any, error: Exception, sql: str, arguments: Any
) -> NoReturn:
    """Raise ``error`` as SQLAlchemy would have: its DBAPIError subclass, wrapping the adaptor's.

    A lost connection is invalidated, so the pool does not hand it out again.
    """
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    translated: BaseException = error
    if not isinstance(error, dbapi_error):
        try:
            adapted._handle_exception(error)
        except Exception as adaptor_error:
            translated = adaptor_error
    if not isinstance(translated, dbapi_error):
        raise error
    invalidated = dialect.is_disconnect(translated, adapted, None)
    if invalidated:
        await greenlet_spawn(connection.invalidate)
    raise DBAPIError.instance(
        sql,
        arguments,
        translated,
        dbapi_error,
        connection_invalidated=invalidated,
        dialect=dialect,
    ) from translated


IdMatch = Callable[[Any], Any]


class IdListStatement:
    """A statement over a list of ids, compiled once for a single id and once for any number.

    PostgreSQL switches a prepared statement to a generic plan after a few runs, and the
    generic plan for ``= ANY($1)`` expects several ids. For the enrolment lock on bench-500
    (PostgreSQL 15) it chose a bitmap scan, a hash join and a sort, and took 0.13 ms where
    ``= $1`` took 0.04 ms. Most calls pass one id, so they get the statement with ``= $1``.
    ``build`` receives a function that turns a column into the comparison with ``ids``.
    """

    def __init__(self, build: Callable[[IdMatch], ClauseElement], **execution_options: Any) -> None:
        self.one = DirectStatement(
            build(lambda column: column == bindparam("ids", type_=BigInteger())),
            **execution_options,
        )
        self.many = DirectStatement(
            build(lambda column: column == any_(bindparam("ids", type_=ID_ARRAY))),
            **execution_options,
        )

    def _choose(
        self, ids: Sequence[int], parameters: Parameters | None
    ) -> tuple[DirectStatement, dict[str, Any]]:
        values = dict(parameters or {})
        if len(ids) == 1:
            values["ids"] = ids[0]
            return self.one, values
        values["ids"] = list(ids)
        return self.many, values

    async def fetch(
        self, session: AsyncSession, ids: Sequence[int], parameters: Parameters | None = None
    ) -> list[Any]:
        """Run the statement for ``ids`` and return its rows."""
        statement, values = self._choose(ids, parameters)
        return await statement.fetch(session, values)

    async def scalars(
        self, session: AsyncSession, ids: Sequence[int], parameters: Parameters | None = None
    ) -> list[Any]:
        """Run the statement for ``ids`` and return the first column of each row."""
        statement, values = self._choose(ids, parameters)
        return await statement.scalars(session, values)

    async def execute(
        self, session: AsyncSession, ids: Sequence[int], parameters: Parameters | None = None
    ) -> None:
        """Run the statement for ``ids`` and discard any rows."""
        statement, values = self._choose(ids, parameters)
        await statement.execute(session, values)


# asyncpg returns NUMERIC values as Decimal. SQLAlchemy's asyncpg dialect picks the result
# processor of a Numeric column by the type's OID, so the OID of NUMERIC is passed for them.
_NUMERIC_OID = 1700


def _result_processor(column: Any) -> Any:
    coltype = _NUMERIC_OID if isinstance(column.type, Numeric) else None
    return column.type._cached_result_processor(_DIALECT, coltype)


class EntityLoader:
    """Turn the columns of one mapped class in a direct statement's rows into session objects.

    Select the class's table columns in table order (``*Model.__table__.columns``) and pass
    the position of the first one, or pass every column's value to ``attach``. Each object is
    attached to the session as if a query had loaded it. A new one joins the identity map with
    no pending changes. One that the session has loaded already is refreshed with the row's
    values, as ``populate_existing`` would.
    """

    def __init__(self, model: type[Any]) -> None:
        mapper = inspect(model)
        self.model = model
        self.columns = list(mapper.local_table.columns)
        self._mapper = mapper
        self._keys = [mapper.get_property_by_column(column).key for column in self.columns]
        self._processors = [_result_processor(column) for column in self.columns]
        primary_key = mapper.primary_key
        if len(primary_key) != 1:
            raise TypeError(
                f"{model.__name__} has a composite primary key, which is not supported."
            )
        self._key = mapper.get_property_by_column(primary_key[0]).key

    def load(self, session: AsyncSession, row: Any, offset: int = 0) -> Any:
        """Return the object for the row's columns from ``offset``, attached to ``session``."""
        values = {}
        for position, (key, process) in enumerate(zip(self._keys, self._processors, strict=True)):
            value = row[offset + position]
            values[key] = process(value) if process is not None else value
        return self.attach(session, values)

    def attach(self, session: AsyncSession, values: dict[str, Any]) -> Any:
        """Attach the object with one value for every column to ``session``, and return it.

        A new object is attached the way SQLAlchemy's own loading attaches a row: it gets its
        identity key, joins the identity map and has its values committed. The public way,
        ``make_transient_to_detached`` and then ``Session.add``, took about 55 microseconds
        per EnrolmentLink in a loop against 3.5 this way, because ``add`` cascades along every
        relationship. In the server it saved about 0.05 ms of CPU per mutation.

        NOTE: ``_add_unpresent`` and ``_commit_all`` are SQLAlchemy internals (2.0 and 2.1).
        The mutation tests go through here, so a release that changes them fails those tests.
        """
        if len(values) != len(self._keys):
            # A new object would lack the missing attributes, and reading one later would try
            # a lazy load, which fails in async code far from this call.
            missing = ", ".join(sorted(set(self._keys) - values.keys())) or "none"
            unknown = ", ".join(sorted(values.keys() - set(self._keys))) or "none"
            raise ValueError(
                f"{self.model.__name__} needs a value for every column (missing: {missing}; "
                f"not a column: {unknown}). Pass one value under each column's attribute name."
            )
        identity = self._mapper.identity_key_from_primary_key([values[self._key]])
        sync_session = session.sync_session
        identity_map = sync_session.identity_map
        existing = identity_map.get(identity)
        if existing is not None:
            for key, value in values.items():
                set_committed_value(existing, key, value)
            return existing
        instance = self._mapper.class_manager.new_instance()
        state = instance_state(instance)
        # A new instance has no attribute history yet, so the values go straight into its
        # dictionary, as the ORM's own loading does.
        state.dict.update(values)
        state.key = identity
        state.session_id = sync_session.hash_key
        identity_map._add_unpresent(state, identity)
        state._commit_all(state.dict, identity_map)
        return instance
