"""The /graphql endpoint: one session and one transaction per request, committed once.

The transaction starts with the bearer-token lookup (enrolink.auth.authenticate_request).
Mutations run their domain operations in savepoints (see schema.context.Context.write). This
view commits after the whole operation has executed. It then hands the outbox messages written
in the transaction to the publisher, which sends them to the broker in the background.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from enrolink.auth import AuthenticationFailed, authenticate_request, unauthenticated_response
from models.outbox import PendingMessage, take_pending
from schema.compiled import RawJSON, compiled_reads
from schema.context import Caller, Context

if TYPE_CHECKING:
    # Strawberry's AsyncBaseHTTPView.execute_single declares request_adapter with this class,
    # which strawberry-graphql 0.341 imports from its dependency cross_web.
    from cross_web import AsyncHTTPRequestAdapter

log = structlog.get_logger(__name__)

# The error code in the JSON body of each HTTP status that Strawberry's view rejects with.
_HTTP_ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}

# Takes the outbox messages of a committed transaction and returns at once: it only queues them
# (workers.publisher.OutboxPublisher sends them in a task of its own).
Publisher = Callable[[list[PendingMessage]], None]


class EnrolinkGraphQL(GraphQL[Context, None]):
    def __init__(self, *args: Any, publisher: Publisher | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publisher = publisher

    async def run(  # type: ignore[override]
        self, request: Request | WebSocket, context: Any = UNSET, root_value: Any = UNSET
    ) -> Response | WebSocket:
        if isinstance(request, WebSocket):
            await request.close(code=4404)
            return request
        state = request.app.state.enrolink
        secret: str | None = getattr(request.state, "bearer_secret", None)
        if secret is None:
            # Only BearerAuthMiddleware sets the secret. It lets GraphiQL's page through without
            # one because the page contains no data. Nothing else may run without a token.
            if self.graphql_ide and self.should_render_graphql_ide(
                self.request_adapter_class(request)
            ):
                return await self.render_graphql_ide(request)
            return unauthenticated_response(
                "Authentication is required: send the header 'Authorization: Bearer <token>'.",
                invalid_token=False,
            )
        request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        # The whole body is read before the token lookup takes a connection from the pool, so
        # a client that sends its body slowly keeps no connection busy. Starlette keeps
        # the body for Strawberry to parse.
        await request.body()
        async with state.sessionmaker() as session:
            try:
                check = await authenticate_request(
                    session, secret, path=request.url.path, request_id=request_id
                )
            except AuthenticationFailed as failure:
                return failure.response
            token = check.token
            request_context = Context(
                session=session,
                caller=Caller(
                    role=token.role, partner_id=token.partner_id, token_id=token.id, name=token.name
                ),
                request_id=request_id,
                default_page_size=state.settings.default_page_size,
                max_page_size=state.settings.max_page_size,
                reconcile_batch_size=state.settings.reconcile_batch_size,
                token_use_recorded=check.use_recorded,
            )
            # Leaving the session block without a commit rolls the transaction back, also when
            # the client disconnects and the request is cancelled, so no connection leaks.
            try:
                with (
                    structlog.contextvars.bound_contextvars(token_id=token.id),
                    compiled_reads(state.settings.compiled_reads),
                ):
                    return await super().run(
                        request, context=request_context, root_value=root_value
                    )
            except HTTPException as error:
                # Strawberry rejects a request it cannot read (a body that is not JSON, no
                # query, a mutation sent with GET) with a plain-text body. Clients get the
                # same errors list as for every other rejection instead.
                return _rejected_request(error, request_id)
            finally:
                # A field cancelled because a sibling failed finishes its statement under the
                # lock (see schema.context.run_to_completion); wait for it before the rollback.
                async with request_context.lock:
                    pass

    def parse_json(self, data: str | bytes) -> Any:
        """Parse JSON from an HTTP request; invalid JSON gets a 400 giving the line and column.

        Strawberry parses a POST body, and a GET request's variables and extensions, with this.
        """
        try:
            return self.decode_json(data)
        except json.JSONDecodeError as error:
            raise HTTPException(
                400,
                f"The request contains invalid JSON: {error.msg} at line {error.lineno}, column "
                f"{error.colno}. Send a POST body as a JSON object with the document in its "
                'query field, such as {"query": "{ __typename }"}.',
            ) from error

    def encode_json(self, data: object) -> str | bytes:
        """Encode a response; compiled ``data`` is spliced in as the bytes PostgreSQL built."""
        raw = data.get("data") if isinstance(data, dict) else None
        if not isinstance(raw, RawJSON):
            encoded: str | bytes = super().encode_json(data)
            return encoded
        assert isinstance(data, dict)
        body = b'{"data":' + raw.text
        rest = {key: value for key, value in data.items() if key != "data"}
        if rest:
            return body + b"," + json.dumps(rest, separators=(",", ":")).encode()[1:]
        return body + b"}"

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Any,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        result = await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        if not context.has_writes:
            if context.token_use_recorded:
                await self._commit_token_use(context)
            return result
        try:
            async with context.lock:
                await context.session.commit()
        except Exception:
            log.exception("graphql.commit_failed", request_id=context.request_id)
            return ExecutionResult(
                data=None,
                errors=[
                    GraphQLError(
                        "The change could not be saved and nothing was changed. Retry the "
                        f"request; quote request id {context.request_id} if it fails again.",
                        extensions={
                            "code": "INTERNAL_SERVER_ERROR",
                            "requestId": context.request_id,
                        },
                    )
                ],
            )
        messages = take_pending(context.session)
        if messages and self.publisher is not None:
            self.publisher(messages)
        return result

    async def _commit_token_use(self, context: Context) -> None:
        """Commit a read whose token check recorded last_used_at; a failure only loses that."""
        try:
            async with context.lock:
                await context.session.commit()
        except Exception:
            # The read's result is still returned, and a later request records the token's use.
            log.warning("auth.last_used_not_saved", request_id=context.request_id, exc_info=True)


def _rejected_request(error: HTTPException, request_id: str) -> JSONResponse:
    code = _HTTP_ERROR_CODES.get(error.status_code, "BAD_REQUEST")
    log.info("graphql.request_rejected", request_id=request_id, code=code, error=error.reason)
    return JSONResponse(
        {"errors": [{"message": error.reason, "extensions": {"code": code}}]},
        status_code=error.status_code,
    )
