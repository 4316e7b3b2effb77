"""Pooled connections that PostgreSQL closed are replaced before a request uses them."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.api.conftest import GraphQLClient

PARTNERS = "{ partners { code } }"
# Bound on the wait for the terminated backends to exit, with room for a loaded machine.
CLOSED_WITHIN_SECONDS = 5.0
# The wait after the backends have exited, for their closed sockets to reach the client. The
# sockets close within milliseconds; the rest is room for a loaded machine.
SOCKETS_CLOSED_SECONDS = 0.5

_API_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = 'enrolink-api'"
)
_TERMINATE_API_CONNECTIONS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = 'enrolink-api'"
)


async def test_closed_connections_replaced(graphql: GraphQLClient, database_url: str) -> None:
    # Several requests at once leave several connections in the pool.
    await asyncio.gather(*(graphql.data(PARTNERS) for _ in range(4)))
    # A connection of its own, outside the application's pool, plays PostgreSQL's restart.
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        terminated = await admin.fetchval(_TERMINATE_API_CONNECTIONS)
        deadline = asyncio.get_running_loop().time() + CLOSED_WITHIN_SECONDS
        # pg_terminate_backend only signals the backends; wait until they have exited.
        while await admin.fetchval(_API_CONNECTIONS):
            assert asyncio.get_running_loop().time() < deadline, "the backends did not exit"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    # A backend leaves pg_stat_activity a moment before its socket closes. The event loop runs
    # meanwhile and hands each closed socket to asyncpg.
    await asyncio.sleep(SOCKETS_CLOSED_SECONDS)

    responses = await asyncio.gather(*(graphql.execute(PARTNERS) for _ in range(4)))

    assert terminated >= 1
    for body in responses:
        assert "errors" not in body, body
