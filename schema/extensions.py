"""Schema extensions: error masking with a request id."""

from __future__ import annotations

from collections.abc import Iterator

import structlog
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from models.errors import DomainError

log = structlog.get_logger(__name__)


class MaskUnexpectedErrors(SchemaExtension):
    """Hide unexpected exceptions from clients, keeping a request id that the log also carries.

    Parse and validation errors, and domain errors raised from query arguments (a bad cursor,
    a page size over the limit), are expected and keep their message.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not getattr(result, "errors", None):
            return
        request_id = getattr(self.execution_context.context, "request_id", None)
        masked: list[GraphQLError] = []
        for error in result.errors or []:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError):
                masked.append(error)
            elif isinstance(original, DomainError):
                masked.append(
                    GraphQLError(
                        original.message,
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": original.code.value, "field": original.field},
                    )
                )
            else:
                log.error(
                    "graphql.unexpected_error",
                    request_id=request_id,
                    path=error.path,
                    exc_info=original,
                )
                masked.append(
                    GraphQLError(
                        f"An unexpected error occurred; nothing was changed by the failed field. "
                        f"Quote request id {request_id} when reporting it.",
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                    )
                )
        result.errors = masked
