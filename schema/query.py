"""The root Query type."""

from __future__ import annotations

from typing import Any, TypeVar

import strawberry
from sqlalchemy import Select, or_, select

from models import tables
from models.clients import EMAIL_MAX_LENGTH
from models.enums import OccurrenceKind as OccurrenceKindEnum
from models.validation import clean_text
from schema.access import restrict
from schema.ids import decode_cursor, decode_id, decode_node_id, encode_cursor
from schema.loaders import Page
from schema.types import (
    NODE_LOADERS,
    AttendanceType,
    Client,
    Enrolment,
    InfoT,
    Node,
    Occurrence,
    OccurrenceKind,
    PageInfo,
    Partner,
    Programme,
    ReconciliationRun,
    Unit,
)

NodeT = TypeVar("NodeT")


def _edge_type(name: str, node_type: Any) -> Any:
    return strawberry.type(
        type(name, (), {"__annotations__": {"cursor": str, "node": node_type}}), name=name
    )


def _connection_type(name: str, edge_type: Any) -> Any:
    return strawberry.type(
        type(name, (), {"__annotations__": {"edges": list[edge_type], "page_info": PageInfo}}),
        name=name,
    )


OccurrenceEdge = _edge_type("OccurrenceEdge", Occurrence)
OccurrenceConnection = _connection_type("OccurrenceConnection", OccurrenceEdge)
ClientEdge = _edge_type("ClientEdge", Client)
ClientConnection = _connection_type("ClientConnection", ClientEdge)
ReconciliationRunEdge = _edge_type("ReconciliationRunEdge", ReconciliationRun)
ReconciliationRunConnection = _connection_type("ReconciliationRunConnection", ReconciliationRunEdge)
UnitEdge = _edge_type("UnitEdge", Unit)
UnitConnection = _connection_type("UnitConnection", UnitEdge)
ProgrammeEdge = _edge_type("ProgrammeEdge", Programme)
ProgrammeConnection = _connection_type("ProgrammeConnection", ProgrammeEdge)


async def _page(
    info: InfoT,
    statement: Select[Any],
    model: Any,
    first: int | None,
    after: str | None,
    *,
    descending: bool = False,
) -> Page[Any]:
    context = info.context
    size = context.page_size(first)
    after_id = decode_cursor(after)
    # Every root list shows only what the caller may read (see schema.access).
    statement = restrict(statement, model, context.caller)
    if after_id:
        statement = statement.where(model.id < after_id if descending else model.id > after_id)
    order = model.id.desc() if descending else model.id
    rows = await context.scalars(statement.order_by(order).limit(size + 1)) if size else []
    return Page(rows=rows[:size], has_next_page=len(rows) > size)


def _connection(connection_type: Any, edge_type: Any, page: Page[Any]) -> Any:
    edges = [edge_type(cursor=encode_cursor(row.id), node=row) for row in page.rows]
    return connection_type(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None
        ),
    )


def _search_pattern(search: str) -> str:
    """Return the ILIKE pattern for ``search``, or raise INVALID_INPUT for unusable text.

    Control characters are rejected as in every text input, since PostgreSQL fails a statement
    whose text contains U+0000. No searched column (client code, names, email, USI) is longer
    than an email, so a longer search is rejected too.
    """
    text = clean_text(search, field="search", max_length=EMAIL_MAX_LENGTH, required=False)
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _by_global_id(info: InfoT, global_id: strawberry.ID, type_name: str) -> Any:
    """Load the row an id of ``type_name`` names, or None when there is none the caller may read.

    A malformed id or an id of another type raises NOT_FOUND naming the value. That check reads
    the id alone, so the error shows nothing about which rows exist. A row outside a partner's
    scope loads as None, like a missing one.
    """
    pk = decode_id(global_id, type_name, field="id")
    loader = getattr(info.context.loaders, NODE_LOADERS[type_name])
    return await loader.load(pk)


# The end of each typed lookup's description: the result for a missing row and a bad id.
_LOOKUP_RULE = (
    "null when none has it or the caller may not read it. An id that is malformed or of another "
    "type is a NOT_FOUND error."
)


@strawberry.type
class Query:
    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Any object by its global id; null when none has it or the caller may not "
        "read it. An id that is malformed or names an unknown type is a NOT_FOUND error."
    )
    async def node(self, info: InfoT, id: strawberry.ID) -> Node | None:
        type_name, _ = decode_node_id(id, NODE_LOADERS, field="id")
        return await _by_global_id(info, id, type_name)  # type: ignore[no-any-return]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description=f"An occurrence by its global id; {_LOOKUP_RULE}"
    )
    async def occurrence(self, info: InfoT, id: strawberry.ID) -> Occurrence | None:
        return await _by_global_id(info, id, "Occurrence")  # type: ignore[no-any-return]

    @strawberry.field
    async def occurrences(
        self,
        info: InfoT,
        first: int | None = None,
        after: str | None = None,
        kind: OccurrenceKind | None = None,  # type: ignore[valid-type]
    ) -> OccurrenceConnection:  # type: ignore[valid-type]
        statement = select(tables.Occurrence)
        if kind is not None:
            statement = statement.where(tables.Occurrence.kind == OccurrenceKindEnum(kind))
        page = await _page(info, statement, tables.Occurrence, first, after)
        return _connection(OccurrenceConnection, OccurrenceEdge, page)  # type: ignore[no-any-return]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description=f"A client by its global id; {_LOOKUP_RULE}"
    )
    async def client(self, info: InfoT, id: strawberry.ID) -> Client | None:
        return await _by_global_id(info, id, "Client")  # type: ignore[no-any-return]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Clients, optionally matching `search` in code, names, email or USI."
    )
    async def clients(
        self,
        info: InfoT,
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> ClientConnection:  # type: ignore[valid-type]
        statement = select(tables.Client)
        if search and search.strip():
            pattern = _search_pattern(search)
            statement = statement.where(
                or_(
                    tables.Client.client_code.ilike(pattern, escape="\\"),
                    tables.Client.given_name.ilike(pattern, escape="\\"),
                    tables.Client.surname.ilike(pattern, escape="\\"),
                    tables.Client.email.ilike(pattern, escape="\\"),
                    tables.Client.usi.ilike(pattern, escape="\\"),
                )
            )
        page = await _page(info, statement, tables.Client, first, after)
        return _connection(ClientConnection, ClientEdge, page)  # type: ignore[no-any-return]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description=f"An enrolment by its global id; {_LOOKUP_RULE}"
    )
    async def enrolment(self, info: InfoT, id: strawberry.ID) -> Enrolment | None:
        return await _by_global_id(info, id, "Enrolment")  # type: ignore[no-any-return]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Past reconciler runs, newest first."
    )
    async def reconciliation_runs(
        self, info: InfoT, first: int | None = None, after: str | None = None
    ) -> ReconciliationRunConnection:  # type: ignore[valid-type]
        page = await _page(
            info,
            select(tables.ReconciliationRun),
            tables.ReconciliationRun,
            first,
            after,
            descending=True,
        )
        return _connection(ReconciliationRunConnection, ReconciliationRunEdge, page)  # type: ignore[no-any-return]

    @strawberry.field
    async def units(
        self, info: InfoT, first: int | None = None, after: str | None = None
    ) -> UnitConnection:  # type: ignore[valid-type]
        page = await _page(info, select(tables.Unit), tables.Unit, first, after)
        return _connection(UnitConnection, UnitEdge, page)  # type: ignore[no-any-return]

    @strawberry.field
    async def programmes(
        self, info: InfoT, first: int | None = None, after: str | None = None
    ) -> ProgrammeConnection:  # type: ignore[valid-type]
        page = await _page(info, select(tables.Programme), tables.Programme, first, after)
        return _connection(ProgrammeConnection, ProgrammeEdge, page)  # type: ignore[no-any-return]

    @strawberry.field
    async def partners(self, info: InfoT) -> list[Partner]:
        statement = restrict(select(tables.Partner), tables.Partner, info.context.caller)
        return list(await info.context.scalars(statement.order_by(tables.Partner.code)))

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Configured attendance types, e.g. PRESENT, ABSENT, SICK."
    )
    async def attendance_types(self, info: InfoT) -> list[AttendanceType]:
        statement = restrict(
            select(tables.AttendanceType), tables.AttendanceType, info.context.caller
        )
        return list(await info.context.scalars(statement.order_by(tables.AttendanceType.id)))
