"""L3, a GraphQL layer without dataloaders: every object loads its relations with own queries.

A small Strawberry schema with the same field names as Enrolink's, so the ladder document
runs unchanged and returns the same data. Each request has one asyncpg connection; a lock
keeps sibling resolvers from using it at once, as Enrolink's context does with its session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.types import Info

from models.enums import Outcome as OutcomeEnum
from schema.ids import encode_id, split_id

Outcome = strawberry.enum(OutcomeEnum, name="Outcome")


@dataclass
class NaiveContext:
    connection: asyncpg.Connection
    lock: asyncio.Lock
    statements: int = 0

    async def fetch(self, query: str, *arguments: Any) -> list[asyncpg.Record]:
        async with self.lock:
            self.statements += 1
            return list(await self.connection.fetch(query, *arguments))

    async def fetchrow(self, query: str, *arguments: Any) -> asyncpg.Record | None:
        rows = await self.fetch(query, *arguments)
        return rows[0] if rows else None


NaiveInfo = Info[NaiveContext, None]


@strawberry.type
class Unit:
    code: str


@strawberry.type
class Client:
    client_code: str
    surname: str


@strawberry.type
class Result:
    row: strawberry.Private[asyncpg.Record]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Result", self.row["id"]))

    @strawberry.field
    def outcome(self) -> Outcome | None:  # type: ignore[valid-type]
        return None if self.row["outcome"] is None else OutcomeEnum(self.row["outcome"])

    @strawberry.field
    async def unit(self, info: NaiveInfo) -> Unit:
        row = await info.context.fetchrow(
            "SELECT code FROM units WHERE id = $1", self.row["unit_id"]
        )
        assert row is not None
        return Unit(code=row["code"])

    @strawberry.field
    async def source_result(self, info: NaiveInfo) -> Result | None:
        if self.row["source_enrolled_unit_id"] is None:
            return None
        row = await info.context.fetchrow(
            "SELECT * FROM enrolled_units WHERE id = $1", self.row["source_enrolled_unit_id"]
        )
        return None if row is None else Result(row=row)


@strawberry.type
class Occurrence:
    row: strawberry.Private[asyncpg.Record]

    @strawberry.field
    def code(self) -> str:
        return str(self.row["code"])

    @strawberry.field
    async def enrolments(self, info: NaiveInfo, first: int = 100) -> EnrolmentConnection:
        rows = await info.context.fetch(
            "SELECT * FROM enrolments WHERE occurrence_id = $1 AND deleted_at IS NULL "
            "ORDER BY id LIMIT $2",
            self.row["id"],
            first,
        )
        return EnrolmentConnection(edges=[EnrolmentEdge(node=Enrolment(row=row)) for row in rows])


@strawberry.type
class Enrolment:
    row: strawberry.Private[asyncpg.Record]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Enrolment", self.row["id"]))

    @strawberry.field
    async def client(self, info: NaiveInfo) -> Client:
        row = await info.context.fetchrow(
            "SELECT client_code, surname FROM clients WHERE id = $1", self.row["client_id"]
        )
        assert row is not None
        return Client(client_code=row["client_code"], surname=row["surname"])

    @strawberry.field
    async def occurrence(self, info: NaiveInfo) -> Occurrence:
        row = await info.context.fetchrow(
            "SELECT * FROM occurrences WHERE id = $1", self.row["occurrence_id"]
        )
        assert row is not None
        return Occurrence(row=row)

    @strawberry.field
    async def results(self, info: NaiveInfo) -> list[Result]:
        rows = await info.context.fetch(
            "SELECT r.* FROM enrolled_units r JOIN occurrence_units ou "
            "ON ou.occurrence_id = $2 AND ou.unit_id = r.unit_id "
            "WHERE r.enrolment_id = $1 ORDER BY ou.position, r.id",
            self.row["id"],
            self.row["occurrence_id"],
        )
        return [Result(row=row) for row in rows]

    @strawberry.field
    async def linked_enrolments(self, info: NaiveInfo) -> list[Enrolment]:
        rows = await info.context.fetch(
            "SELECT e.* FROM enrolment_links l JOIN enrolments e "
            "ON e.id = CASE WHEN l.administrative_enrolment_id = $1 "
            "THEN l.session_enrolment_id ELSE l.administrative_enrolment_id END "
            "WHERE (l.administrative_enrolment_id = $1 OR l.session_enrolment_id = $1) "
            "AND l.unlinked_at IS NULL AND e.deleted_at IS NULL ORDER BY e.start_date, e.id",
            self.row["id"],
        )
        return [Enrolment(row=row) for row in rows]


@strawberry.type
class EnrolmentEdge:
    node: Enrolment


@strawberry.type
class EnrolmentConnection:
    edges: list[EnrolmentEdge]


@strawberry.type
class Query:
    @strawberry.field
    async def occurrence(self, info: NaiveInfo, id: strawberry.ID) -> Occurrence | None:
        parts = split_id(id)
        if parts is None or parts[0] != "Occurrence":
            return None
        row = await info.context.fetchrow("SELECT * FROM occurrences WHERE id = $1", parts[1])
        return None if row is None else Occurrence(row=row)


NAIVE_SCHEMA = strawberry.Schema(query=Query)


def create_naive_app(database_url: str) -> Starlette:
    totals = {"statements": 0}
    pool: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool["pool"] = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
        try:
            yield
        finally:
            await pool["pool"].close()

    async def graphql(request: Request) -> Response:
        body = await request.json()
        async with pool["pool"].acquire() as connection:
            context = NaiveContext(connection=connection, lock=asyncio.Lock())
            result = await NAIVE_SCHEMA.execute(
                body["query"], variable_values=body.get("variables"), context_value=context
            )
        totals["statements"] += context.statements
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [error.formatted for error in result.errors]
        return JSONResponse(response)

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(totals)

    routes = [Route("/graphql", graphql, methods=["POST"]), Route("/bench/stats", stats)]
    return Starlette(routes=routes, lifespan=lifespan)
