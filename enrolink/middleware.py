"""ASGI middleware that gives every HTTP request an id and logs how it finished."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"

# An incoming id is kept only when it is a short token, so a client cannot put line breaks,
# markup or kilobytes of text into every log line of its request.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def request_id_from_header(value: str | None) -> str:
    """Return ``value`` when it is a token of at most 64 letters, digits, ``-`` or ``_``.

    Anything else (missing, empty, too long, other characters) gets a new uuid4 in hex.
    """
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Bind ``request_id`` to structlog's contextvars for the request and log its end.

    The id comes from the ``X-Request-Id`` request header when it is sane, else it is new. It is
    sent back in the ``X-Request-Id`` response header and stored as ``request.state.request_id``
    so error masking can quote it. Each request ends with an ``http.request_finished`` event
    carrying method, path (without the query string, which may hold secrets), status and
    duration_ms. Non-HTTP scopes (lifespan, websocket) pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER.encode("latin-1"):
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from_header(incoming)
        scope.setdefault("state", {})["request_id"] = request_id

        # The status is 500 until the app starts a response, because an exception before then
        # becomes a 500.
        status = 500
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_request_id)
            finally:
                log.info(
                    "http.request_finished",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )
