"""The ASGI application: GraphQL at /graphql, liveness at /healthz, readiness at /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis_asyncio
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from enrolink.auth import BearerAuthMiddleware
from enrolink.graphql_view import EnrolinkGraphQL, Publisher
from enrolink.metrics import (
    GraphQLMetricsMiddleware,
    OperationMetricsExtension,
    count_statements,
    metrics_endpoint,
)
from enrolink.middleware import RequestIdMiddleware
from enrolink.request_guards import RequestGuardMiddleware
from enrolink.settings import Settings, get_settings
from models.db import create_engine_from_settings, create_sessionmaker
from schema import build_schema
from schema.limits import limit_extensions
from workers.celery_app import create_celery_app
from workers.publisher import OutboxPublisher

log = structlog.get_logger(__name__)

# A readiness probe must answer well inside the orchestrator's probe timeout (1 s by default in
# Kubernetes), so each dependency gets a short budget of its own.
READINESS_TIMEOUT_SECONDS = 0.5
GRAPHQL_PATH = "/graphql"
# Probes and the metrics scraper carry no token; none of these paths returns domain data.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


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
    # The checks run concurrently, so a probe waits one budget at most, not one per dependency.
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check(state), READINESS_TIMEOUT_SECONDS) for check in checks.values()),
        return_exceptions=True,
    )
    failures: dict[str, str] = {}
    for name, outcome in zip(checks, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures[name] = _describe_failure(outcome)
            log.warning("readiness.failed", dependency=name, error=failures[name])
    if failures:
        return JSONResponse({"status": "unavailable", "failed": failures}, status_code=503)
    return JSONResponse({"status": "ok"})


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {READINESS_TIMEOUT_SECONDS} s"
    return f"{type(error).__name__}: {error}"


def create_graphql(settings: Settings, publisher: Publisher | None) -> EnrolinkGraphQL:
    limits = limit_extensions(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_query_cost,
        default_page_size=settings.default_page_size,
        introspection=settings.introspection_enabled,
        field_suggestions=settings.field_suggestions_enabled,
    )
    schema = build_schema(
        extensions=[*limits, OperationMetricsExtension],
        disable_field_suggestions=not settings.field_suggestions_enabled,
    )
    return EnrolinkGraphQL(
        schema,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=True,
        multipart_uploads_enabled=False,
        publisher=publisher,
    )


def create_app(settings: Settings | None = None, publisher: Publisher | None = None) -> Starlette:
    """Build the application; the engine and the Redis client live as long as the app.

    ``publisher`` sends outbox messages after commit; by default the Celery publisher from
    ``workers`` is used when it is installed.
    """
    settings = settings or get_settings()
    graphql = create_graphql(settings, publisher)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine_from_settings(settings, application_name="enrolink-api")
        count_statements(engine)
        redis_client = redis_asyncio.Redis.from_url(
            settings.redis_client_url(),
            socket_connect_timeout=READINESS_TIMEOUT_SECONDS,
            socket_timeout=READINESS_TIMEOUT_SECONDS,
        )
        sessionmaker = create_sessionmaker(engine)
        app.state.enrolink = AppState(
            settings=settings, engine=engine, sessionmaker=sessionmaker, redis=redis_client
        )
        celery_app = None
        outbox_publisher = None
        if graphql.publisher is None:
            # One Celery app per API process, configured from these settings (broker URL and
            # queue names), so tests and replicas with their own settings publish correctly.
            celery_app = create_celery_app(settings)
            outbox_publisher = OutboxPublisher(sessionmaker, celery_app)
            graphql.publisher = outbox_publisher
        log.info("api.started")
        try:
            yield
        finally:
            if outbox_publisher is not None:
                await outbox_publisher.close()
                graphql.publisher = None
            if celery_app is not None:
                celery_app.close()
            await redis_client.aclose()
            await engine.dispose()
            log.info("api.stopped")

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=_middleware(settings))


def create_server_app() -> Starlette:
    """Return the application that ``enrolink serve`` runs, in a process tuned to serve it.

    uvicorn calls this once in each server process.
    """
    app = create_app()
    tune_garbage_collector()
    return app


# Python's default first threshold of 700 allocations starts a collection several times within
# every request. Each full collection also walked every object that the imports and the schema
# had made, and so paused a busy server. At concurrency 16, recordResult's p95 was about 150 ms
# with the defaults and about 95 ms with these settings (bench/mutations.py, 2 cores).
GC_THRESHOLDS = (10_000, 10, 10)


def tune_garbage_collector() -> None:
    """Freeze the objects allocated so far, which collections then skip, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _middleware(settings: Settings) -> list[Middleware]:
    """Return the middleware, outermost first.

    CORS comes first so that preflight requests and the 401 and 413 responses carry its headers.
    The bearer header's shape is checked before the body is read, so a client without a token
    cannot make the server buffer a body. A well-formed but unknown token is rejected by the
    GraphQL view after the body is read, which the body-size limit bounds.
    """
    # Outermost, so every later layer (CORS, metrics, authentication) logs inside the request id
    # and every response, a 401 included, carries X-Request-Id.
    middleware: list[Middleware] = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                expose_headers=["WWW-Authenticate", "X-Request-Id"],
                # Tokens travel in the Authorization header, never in cookies.
                allow_credentials=False,
                max_age=600,
            )
        )
    middleware += [
        # Outside authentication, so rejected requests are timed and counted too.
        Middleware(GraphQLMetricsMiddleware),
        Middleware(
            BearerAuthMiddleware,
            open_paths=OPEN_PATHS,
            graphiql_path=GRAPHQL_PATH if settings.graphiql_enabled else None,
        ),
        Middleware(
            RequestGuardMiddleware,
            max_body_bytes=settings.max_body_bytes,
            json_paths=[GRAPHQL_PATH],
        ),
    ]
    return middleware
