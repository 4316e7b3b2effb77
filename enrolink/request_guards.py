"""HTTP guards in front of /graphql: JSON-only POST bodies and a maximum body size.

Browsers send form-encoded, multipart and text/plain POSTs across origins without a CORS
preflight, so accepting only ``application/json`` keeps cross-site forms from reaching the API.
The body is read and counted here, before anything parses it, so a large body is rejected with
413 whether or not the client sent Content-Length.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_MEDIA_TYPE = "application/json"
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _error(status_code: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status_code
    )


def media_type(content_type: str | None) -> str:
    """Return the media type of a Content-Type header in lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class RequestGuardMiddleware:
    """Reject POSTs to ``json_paths`` that are not JSON (415) and bodies over ``max_body_bytes``.

    A body within the limit is buffered and replayed to the application, which then reads it
    as usual.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, json_paths: Collection[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_paths = frozenset(json_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        if scope["path"] in self.json_paths and scope["method"] == "POST":
            received = media_type(headers.get("content-type"))
            if received != JSON_MEDIA_TYPE:
                described = received or "no Content-Type"
                response = _error(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"POST requests to {scope['path']} must send a JSON body with "
                    f"'Content-Type: {JSON_MEDIA_TYPE}'; this one sent {described}.",
                )
                await response(scope, receive, send)
                return

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)

        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, the application only waits for the client to disconnect.
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(
            413,
            "REQUEST_TOO_LARGE",
            f"The request body is larger than the maximum of {self.max_body_bytes} bytes; send "
            "a smaller document or fewer variables.",
        )
        await response(scope, receive, send)
