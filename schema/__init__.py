"""Enrolink's GraphQL schema. Imports ``models``; ``models`` and ``workers`` never import it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import strawberry
import structlog
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from models.errors import DomainError
from schema import types
from schema.compiled import compiled_reads_extension
from schema.extensions import MaskUnexpectedErrors
from schema.mutation import Mutation
from schema.query import Query
from schema.types import NODE_LOADERS

# Types reachable only through `node(id:)` must still be part of the schema; every Node type is
# listed once, in NODE_LOADERS, under the type name inside its global ids.
NODE_TYPES = [getattr(types, type_name) for type_name in NODE_LOADERS]

log = structlog.get_logger(__name__)


class EnrolinkSchema(strawberry.Schema):
    """Strawberry's schema, logging the errors a client caused at INFO instead of ERROR.

    Strawberry logs every error of a response at ERROR, so a client's typo in a document looked
    like a fault of the service. Syntax, validation and limit errors, and domain errors raised
    from arguments, are the client's and are logged as ``graphql.request_rejected``.
    Unexpected exceptions are logged with their traceback by MaskUnexpectedErrors, as
    ``graphql.unexpected_error``, so they are not logged twice here.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context = execution_context.context if execution_context is not None else None
        request_id = getattr(context, "request_id", None)
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError | DomainError):
                code = (error.extensions or {}).get("code")
                if isinstance(original, DomainError):
                    code = original.code.value
                log.info(
                    "graphql.request_rejected",
                    request_id=request_id,
                    code=code,
                    error=error.message,
                    path=error.path,
                )


def build_schema(
    *,
    extensions: Sequence[type[SchemaExtension] | Callable[[], SchemaExtension]] | None = None,
    **config: Any,
) -> strawberry.Schema:
    """Build the schema; ``extensions`` come before the error masking, which runs last.

    The compiled read path is installed but stays off unless ``schema.compiled.compiled_reads``
    turns it on for a request, as the HTTP view does from ENROLINK_COMPILED_READS.
    """
    return EnrolinkSchema(
        query=Query,
        mutation=Mutation,
        types=NODE_TYPES,
        extensions=[*(extensions or []), compiled_reads_extension(), MaskUnexpectedErrors],
        config=StrawberryConfig(**config),
    )
