"""Requests while PostgreSQL cannot be reached get a 503 with a retry hint, not a bare 500."""

from __future__ import annotations

import httpx
import structlog

from enrolink.app import create_app
from enrolink.settings import load_settings
from tests.workers.conftest import free_port

# Well-formed, so the request gets as far as the token lookup in the database.
TOKEN = "enr_" + "a" * 43


async def test_token_lookup_without_database_returns_503(redis_url: str) -> None:
    # Nothing listens on a free port, so every connection attempt is refused at once.
    settings = load_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/enrolink",
        redis_url=redis_url,
    )
    app = create_app(settings)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolink.test") as http:
            with structlog.testing.capture_logs() as logs:
                response = await http.post(
                    "/graphql",
                    json={"query": "{ attendanceTypes { code } }"},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "auth.database_unavailable"
    ]
