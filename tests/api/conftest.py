"""Fixtures for GraphQL tests: the real application in-process, over a real database."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from enrolink.app import create_app
from enrolink.settings import Settings, load_settings
from models.enums import TokenRole
from models.tokens import AUTHENTICATION_OPTION, create_token
from tests.conftest import delete_queue_keys

# Seconds to wait for the live server to start or stop, and for one request to it.
LIVE_SERVER_START_SECONDS = 10.0
LIVE_SERVER_REQUEST_SECONDS = 30.0


@pytest.fixture
def app_settings(database_url: str, redis_url: str) -> Iterator[Settings]:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        environment="development",
        database_url=database_url,
        redis_url=redis_url,
        roll_up_queue=f"roll_up_{suffix}",
        reconcile_queue=f"reconcile_{suffix}",
    )
    yield settings
    # The app publishes roll-ups to these queues after each commit; no worker consumes them here.
    delete_queue_keys(redis_url, [settings.roll_up_queue, settings.reconcile_queue])


@dataclass
class StatementCounter:
    """Counts SQL statements the application's engine sends while ``counting`` is on."""

    statements: list[str] = field(default_factory=list)
    counting: bool = False

    @contextmanager
    def measure(self) -> Iterator[list[str]]:
        self.statements = []
        self.counting = True
        try:
            yield self.statements
        finally:
            self.counting = False


async def issue_token(
    app: Starlette, role: TokenRole = TokenRole.STAFF, *, partner_id: int | None = None
) -> str:
    """Create a token in the app's database and return its secret."""
    async with app.state.enrolink.sessionmaker() as session:
        issued = await create_token(session, role=role, name="test", partner_id=partner_id)
        await session.commit()
    return issued.secret


@dataclass
class GraphQLClient:
    """Sends documents to the in-process app with a staff token, or with the token given."""

    http: httpx.AsyncClient
    app: Starlette
    statements: StatementCounter
    token: str

    async def execute(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        **headers: str,
    ) -> dict[str, Any]:
        """POST a document and return the whole response body (data and errors)."""
        headers = {"Authorization": f"Bearer {token or self.token}", **headers}
        response = await self.http.post(
            "/graphql", json={"query": document, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a document that must succeed and return its data."""
        body = await self.execute(document, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
async def graphql(app_settings: Settings) -> AsyncIterator[GraphQLClient]:
    app = create_app(app_settings)
    counter = StatementCounter()
    async with app.router.lifespan_context(app):
        engine = app.state.enrolink.engine

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def count(*args: Any) -> None:
            # Token lookups belong to authentication, not to the operation being measured.
            execution_context = args[4]
            if execution_context.execution_options.get(AUTHENTICATION_OPTION):
                return
            if counter.counting:
                counter.statements.append(args[2])

        token = await issue_token(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolink.test") as http:
            yield GraphQLClient(http=http, app=app, statements=counter, token=token)


@dataclass
class LiveServer:
    """The application served by uvicorn on 127.0.0.1, for tests that need real concurrency."""

    url: str
    app: Starlette
    token: str

    def client(self) -> httpx.AsyncClient:
        """Return an HTTP client for the server that sends the staff token."""
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=LIVE_SERVER_REQUEST_SECONDS,
        )


@pytest.fixture
async def live_server(
    app_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[LiveServer]:
    """Serve the real application with uvicorn in a background thread on a free local port.

    Race tests send requests at once over real HTTP, so the server handles them on its own
    event loop and connection pool, as in production. The socket is bound before uvicorn
    starts, so no other process can take the port in between.
    """
    app = create_app(app_settings)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # The API serves no websockets, so uvicorn loads no websocket protocol, and the access log
    # is off because a race test's requests would only repeat in it.
    config = uvicorn.Config(
        app, lifespan="on", ws="none", access_log=False, log_config=None, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="live-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + LIVE_SERVER_START_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn did not start on 127.0.0.1:{port} within "
                    f"{LIVE_SERVER_START_SECONDS} s; see the captured log for the cause."
                )
            await asyncio.sleep(0.02)
        # The token is written through the test's own engine: the server's engine belongs to
        # the server thread's event loop.
        async with sessionmaker() as session:
            issued = await create_token(session, role=TokenRole.STAFF, name="test")
            await session.commit()
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, token=issued.secret)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, LIVE_SERVER_START_SECONDS)
        listener.close()
