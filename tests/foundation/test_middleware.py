"""RequestIdMiddleware: one id per request, in the logs and in the response."""

from __future__ import annotations

import re

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from enrolink.middleware import RequestIdMiddleware, request_id_from_header

UUID_HEX = re.compile(r"[0-9a-f]{32}")


async def echo_request_id(request: Request) -> JSONResponse:
    """Return the request id that the endpoint reads from contextvars and from request.state."""
    return JSONResponse(
        {
            "bound": structlog.contextvars.get_contextvars().get("request_id"),
            "state": request.state.request_id,
        }
    )


async def fail(request: Request) -> JSONResponse:
    raise RuntimeError("Failed on purpose.")


def make_client() -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/echo", echo_request_id), Route("/fail", fail)],
        middleware=[Middleware(RequestIdMiddleware)],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://enrolink.test")


async def test_incoming_request_id_kept() -> None:
    async with make_client() as client:
        response = await client.get("/echo", headers={"X-Request-Id": "portal-42_retry-1"})

    assert response.headers["X-Request-Id"] == "portal-42_retry-1"
    assert response.json() == {"bound": "portal-42_retry-1", "state": "portal-42_retry-1"}


@pytest.mark.parametrize(
    "incoming",
    ["", "a" * 65, "has space", "line\nbreak", 'quote"', "semi;colon", "ünicode"],
    ids=["empty", "too-long", "space", "newline", "quote", "semicolon", "non-ascii"],
)
async def test_insane_request_id_replaced(incoming: str) -> None:
    async with make_client() as client:
        response = await client.get("/echo", headers={b"X-Request-Id": incoming.encode()})

    request_id = response.headers["X-Request-Id"]
    assert request_id != incoming
    assert UUID_HEX.fullmatch(request_id)
    assert response.json() == {"bound": request_id, "state": request_id}


async def test_missing_request_id_generated() -> None:
    async with make_client() as client:
        first = await client.get("/echo")
        second = await client.get("/echo")

    assert UUID_HEX.fullmatch(first.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


async def test_request_finished_logged_with_fields() -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with make_client() as client:
            response = await client.get("/echo?token=secret", headers={"X-Request-Id": "abc"})

    finished = [entry for entry in logs if entry["event"] == "http.request_finished"]
    assert response.status_code == 200
    assert len(finished) == 1
    assert finished[0]["request_id"] == "abc"
    assert finished[0]["method"] == "GET"
    assert finished[0]["path"] == "/echo"
    assert finished[0]["status"] == 200
    assert finished[0]["duration_ms"] >= 0


async def test_failed_request_logged_as_500() -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with make_client() as client:
            response = await client.get("/fail")

    finished = [entry for entry in logs if entry["event"] == "http.request_finished"]
    assert response.status_code == 500
    assert len(finished) == 1
    assert finished[0]["status"] == 500
    assert UUID_HEX.fullmatch(finished[0]["request_id"])


async def test_request_id_unbound_after_request() -> None:
    async with make_client() as client:
        await client.get("/echo", headers={"X-Request-Id": "abc"})

    assert "request_id" not in structlog.contextvars.get_contextvars()


def test_request_id_from_header_limits() -> None:
    assert request_id_from_header("A" * 64) == "A" * 64
    assert request_id_from_header("A" * 65) != "A" * 65
    assert UUID_HEX.fullmatch(request_id_from_header(None))
