"""The ASGI application: GraphQL at /graphql, liveness at /healthz, readiness at /readyz."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis_asyncio
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from enrolink.settings import Settings, get_settings
from models.db import create_engine_from_settings, create_sessionmaker

log = structlog.get_logger(__name__)

# A readiness probe must answer well inside the orchestrator's probe timeout (1 s by default in
# Kubernetes), so each dependency gets a short budget of its own.
READINESS_TIMEOUT_SECONDS = 0.5


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Any


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check_postgres(state: AppState) -> None:
    async with state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_redis(state: AppState) -> None:
    await state.redis.ping()


async def readyz(request: Request) -> JSONResponse:
    state: AppState = request.app.state.enrolink
    checks = {"postgres": _check_postgres, "redis": _check_redis}
    failures: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(state), READINESS_TIMEOUT_SECONDS)
        except Exception as error:
            failures[name] = f"{type(error).__name__}: {error}" or type(error).__name__
            log.warning("readiness.failed", dependency=name, error=failures[name])
    if failures:
        return JSONResponse({"status": "unavailable", "failed": failures}, status_code=503)
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the application; the engine and the Redis client live as long as the app."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine_from_settings(settings, application_name="enrolink-api")
        redis_client = redis_asyncio.Redis.from_url(
            settings.redis_client_url(),
            socket_connect_timeout=READINESS_TIMEOUT_SECONDS,
            socket_timeout=READINESS_TIMEOUT_SECONDS,
        )
        app.state.enrolink = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis_client,
        )
        log.info("api.started")
        try:
            yield
        finally:
            await redis_client.aclose()
            await engine.dispose()
            log.info("api.stopped")

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
