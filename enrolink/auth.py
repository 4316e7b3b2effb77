"""Bearer-token authentication for /graphql.

Every request to a protected path must carry ``Authorization: Bearer <token>``. A missing or
malformed header, or an unknown, expired or revoked token, gets HTTP 401 with a GraphQL-shaped
JSON body and a ``WWW-Authenticate`` header (RFC 6750).

The check has two steps. :class:`BearerAuthMiddleware` rejects a request whose header is
missing or malformed before anything reads its body, and stores the secret as
``request.state.bearer_secret``. The GraphQL view then looks the token up with
:func:`authenticate_request` as the first statement of the request's own transaction, so a
request costs one transaction, not one for the token and another for the operation.
"""

from __future__ import annotations

from collections.abc import Collection

import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from models.tokens import TokenCheck, TokenRejected, check_token, looks_like_token
from workers.errors import is_retryable

log = structlog.get_logger(__name__)

REALM = "enrolink"
# Seconds a client is asked to wait when the token cannot be checked: PostgreSQL restarting or
# failing over takes a few seconds.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2


def unauthenticated_response(message: str, *, invalid_token: bool) -> JSONResponse:
    """Build the 401 response: the message in GraphQL's error shape, and the RFC 6750 header."""
    challenge = f'Bearer realm="{REALM}"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )


def unavailable_response(request_id: str | None) -> JSONResponse:
    """Build the 503 response for a request whose token could not be checked."""
    message = (
        "The service cannot reach its database right now, so the request was not run. Retry "
        f"in a few seconds; quote request id {request_id} if it keeps failing."
    )
    return JSONResponse(
        {
            "errors": [
                {
                    "message": message,
                    "extensions": {"code": "SERVICE_UNAVAILABLE", "requestId": request_id},
                }
            ]
        },
        status_code=503,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )


def bearer_secret(authorization: str | None) -> str:
    """Return the token in an Authorization header, or raise TokenRejected saying what is wrong."""
    if authorization is None or not authorization.strip():
        raise TokenRejected(
            "Authentication is required: send the header 'Authorization: Bearer <token>'."
        )
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise TokenRejected(
            "The Authorization header is malformed; send 'Authorization: Bearer <token>'."
        )
    if not looks_like_token(secret):
        raise TokenRejected(
            "The bearer token is malformed; Enrolink tokens start with 'enr_' followed by "
            "43 letters, digits, '-' or '_'."
        )
    return secret


class AuthenticationFailed(Exception):
    """The token check ended the request, and ``response`` (a 401 or a 503) is sent instead."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


async def authenticate_request(
    session: AsyncSession, secret: str, *, path: str, request_id: str | None
) -> TokenCheck:
    """Look the token up in the request's session, or raise AuthenticationFailed with a reply.

    An unknown, expired or revoked token gets 401. When PostgreSQL cannot be reached (restarting,
    failing over) or the pool is exhausted, the client gets 503 with a request id and a hint to
    retry, instead of a bare 500.
    """
    try:
        return await check_token(session, secret)
    except TokenRejected as rejection:
        log.info("auth.rejected", path=path, reason=rejection.reason)
        raise AuthenticationFailed(
            unauthenticated_response(rejection.reason, invalid_token=True)
        ) from None
    except Exception as error:
        if not is_retryable(error):
            raise
        log.warning("auth.database_unavailable", path=path, error=repr(error))
        raise AuthenticationFailed(unavailable_response(request_id)) from error


class BearerAuthMiddleware:
    """Reject requests without a well-formed bearer token, except to ``open_paths`` and GraphiQL.

    This step needs no database, so a client without a well-formed token cannot make the server
    read its body or take a connection. The secret is stored as ``request.state.bearer_secret``,
    and the GraphQL view looks it up (:func:`authenticate_request`).
    """

    def __init__(
        self, app: ASGIApp, *, open_paths: Collection[str], graphiql_path: str | None = None
    ) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)
        self.graphiql_path = graphiql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope):
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        try:
            secret = bearer_secret(authorization)
        except TokenRejected as rejection:
            response = unauthenticated_response(
                rejection.reason, invalid_token=authorization is not None
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["bearer_secret"] = secret
        await self.app(scope, receive, send)

    def _is_open(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if path in self.open_paths:
            return True
        # GraphiQL's page contains no data, and its requests to /graphql carry a token.
        if path != self.graphiql_path or scope["method"] != "GET":
            return False
        query = QueryParams(scope.get("query_string", b""))
        return "query" not in query and "text/html" in Headers(scope=scope).get("accept", "")
