"""Fixtures for the deploy tests: the real application in-process, and closed ports."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import httpx
import pytest

from enrolink.app import create_app
from enrolink.settings import Settings, load_settings
from models.enums import TokenRole
from models.tokens import create_token
from tests.conftest import delete_queue_keys


def closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on.

    The port was free a moment ago. Another process could take it before the test connects,
    but that would only turn a refused connection into a timeout or a protocol error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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
    delete_queue_keys(redis_url, [settings.roll_up_queue, settings.reconcile_queue])


class AppClient(Protocol):
    def __call__(
        self, settings: Settings, *, authenticated: bool = True
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]: ...


@pytest.fixture
def app_client() -> AppClient:
    """Return a factory of HTTP clients for the app built from the given settings.

    An authenticated client sends a new staff token, which needs a reachable database; the
    probes and /metrics need no token.
    """

    @asynccontextmanager
    async def client(
        settings: Settings, *, authenticated: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, publisher=_publish_nothing)
        async with app.router.lifespan_context(app):
            headers = {}
            if authenticated:
                async with app.state.enrolink.sessionmaker() as session:
                    issued = await create_token(session, role=TokenRole.STAFF, name="deploy tests")
                    await session.commit()
                headers["Authorization"] = f"Bearer {issued.secret}"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://enrolink.test", headers=headers
            ) as http:
                yield http

    return client


def _publish_nothing(messages: object) -> None:
    """Leave outbox rows unpublished; these tests read the outbox, they do not run tasks."""


# The uid of USER in deploy/Dockerfile, which the Kubernetes manifests repeat in runAsUser.
APP_UID = 10001
