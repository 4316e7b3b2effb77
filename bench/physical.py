"""L1, the physical limit: one hand-written statement builds the ladder's whole response.

A bare Starlette route sends the bytes PostgreSQL returns, with no GraphQL layer at all, so
the figure is what the database and the network need for the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.enums import Outcome

_OUTCOME_NAMES = ", ".join(f"({outcome.value}, '{outcome.name}')" for outcome in Outcome)

# The ladder document's response for occurrence $1 and page size $2. Every list keeps the
# order the resolvers give it: enrolments by id, results by the occurrence's unit position,
# linked enrolments by start date and id.
LADDER_SQL = f"""
WITH outcome_names (code, name) AS (VALUES {_OUTCOME_NAMES}),
page AS (
    SELECT id, client_id FROM enrolments
    WHERE occurrence_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $2
)
SELECT json_build_object('data', json_build_object('occurrence', json_build_object(
    'enrolments', json_build_object('edges', COALESCE(json_agg(json_build_object('node',
        json_build_object(
            'id', encode(convert_to('Enrolment:' || page.id, 'UTF8'), 'base64'),
            'client', json_build_object('clientCode', c.client_code, 'surname', c.surname),
            'results', (
                SELECT COALESCE(json_agg(json_build_object(
                    'unit', json_build_object('code', u.code), 'outcome', o.name
                ) ORDER BY ou.position, r.id), '[]'::json)
                FROM enrolments e
                JOIN enrolled_units r ON r.enrolment_id = e.id
                JOIN occurrence_units ou
                  ON ou.occurrence_id = e.occurrence_id AND ou.unit_id = r.unit_id
                JOIN units u ON u.id = r.unit_id
                LEFT JOIN outcome_names o ON o.code = r.outcome
                WHERE e.id = page.id
            ),
            'linkedEnrolments', (
                SELECT COALESCE(json_agg(json_build_object(
                    'id', encode(convert_to('Enrolment:' || s.id, 'UTF8'), 'base64'),
                    'occurrence', json_build_object('code', so.code),
                    'results', (
                        SELECT COALESCE(json_agg(json_build_object(
                            'unit', json_build_object('code', u.code),
                            'outcome', o.name,
                            'sourceResult', CASE WHEN r.source_enrolled_unit_id IS NULL
                                THEN NULL ELSE json_build_object('id', encode(convert_to(
                                    'Result:' || r.source_enrolled_unit_id, 'UTF8'), 'base64'))
                                END
                        ) ORDER BY ou.position, r.id), '[]'::json)
                        FROM enrolled_units r
                        JOIN occurrence_units ou
                          ON ou.occurrence_id = s.occurrence_id AND ou.unit_id = r.unit_id
                        JOIN units u ON u.id = r.unit_id
                        LEFT JOIN outcome_names o ON o.code = r.outcome
                        WHERE r.enrolment_id = s.id
                    )
                ) ORDER BY s.start_date, s.id), '[]'::json)
                FROM enrolment_links l
                JOIN enrolments s ON s.id = l.session_enrolment_id
                JOIN occurrences so ON so.id = s.occurrence_id
                WHERE l.administrative_enrolment_id = page.id AND l.unlinked_at IS NULL
                  AND s.deleted_at IS NULL
            )
        )
    ) ORDER BY page.id), '[]'::json))
)))::text
FROM page JOIN clients c ON c.id = page.client_id
"""


class Counter:
    """SQL statements sent, read by the bench at /bench/stats."""

    def __init__(self) -> None:
        self.statements = 0


def create_physical_app(database_url: str, occurrence_id: int) -> Starlette:
    counter = Counter()
    pool: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool["pool"] = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
        try:
            yield
        finally:
            await pool["pool"].close()

    async def ladder(request: Request) -> Response:
        first = int(request.query_params.get("first", "500"))
        counter.statements += 1
        async with pool["pool"].acquire() as connection:
            body: str = await connection.fetchval(LADDER_SQL, occurrence_id, first)
        return Response(body.encode(), media_type="application/json")

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse({"statements": counter.statements})

    routes = [Route("/ladder", ladder), Route("/bench/stats", stats)]
    return Starlette(routes=routes, lifespan=lifespan)
