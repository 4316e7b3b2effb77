"""/healthz and /readyz: liveness needs only the process, readiness names what failed."""

from __future__ import annotations

import time

from enrolink.app import READINESS_TIMEOUT_SECONDS
from enrolink.settings import Settings, load_settings
from tests.deploy.conftest import AppClient, closed_port


async def test_readyz_ok_with_both_servers(app_client: AppClient, app_settings: Settings) -> None:
    async with app_client(app_settings) as http:
        response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_names_postgres_when_closed(app_client: AppClient, redis_url: str) -> None:
    settings = load_settings(
        database_url=f"postgresql://enrolink@127.0.0.1:{closed_port()}/enrolink",
        redis_url=redis_url,
    )
    async with app_client(settings, authenticated=False) as http:
        started = time.perf_counter()
        response = await http.get("/readyz")
        elapsed = time.perf_counter() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert list(body["failed"]) == ["postgres"]
    # Well inside Kubernetes' default probe timeout of 1 second, plus the test's own overhead.
    assert elapsed < READINESS_TIMEOUT_SECONDS + 0.5


async def test_readyz_names_redis_when_closed(app_client: AppClient, database_url: str) -> None:
    settings = load_settings(
        database_url=database_url, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
    )
    async with app_client(settings, authenticated=False) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert list(response.json()["failed"]) == ["redis"]


async def test_readyz_names_both_when_closed(app_client: AppClient) -> None:
    settings = load_settings(
        database_url=f"postgresql://enrolink@127.0.0.1:{closed_port()}/enrolink",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
    )
    async with app_client(settings, authenticated=False) as http:
        started = time.perf_counter()
        response = await http.get("/readyz")
        elapsed = time.perf_counter() - started

    assert response.status_code == 503
    assert sorted(response.json()["failed"]) == ["postgres", "redis"]
    # Both checks share one budget because they run concurrently.
    assert elapsed < READINESS_TIMEOUT_SECONDS + 0.5


async def test_healthz_ok_without_dependencies(app_client: AppClient) -> None:
    settings = load_settings(
        database_url=f"postgresql://enrolink@127.0.0.1:{closed_port()}/enrolink",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
    )
    async with app_client(settings, authenticated=False) as http:
        response = await http.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
