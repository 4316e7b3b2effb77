"""Enrolink's GraphQL schema. Imports ``models``; ``models`` and ``workers`` never import it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from schema import types
from schema.compiled import compiled_reads_extension
from schema.extensions import MaskUnexpectedErrors
from schema.mutation import Mutation
from schema.query import Query
from schema.types import NODE_LOADERS

# Types reachable only through `node(id:)` must still be part of the schema; every Node type is
# listed once, in NODE_LOADERS, under the type name inside its global ids.
NODE_TYPES = [getattr(types, type_name) for type_name in NODE_LOADERS]


def build_schema(
    *,
    extensions: Sequence[type[SchemaExtension] | Callable[[], SchemaExtension]] | None = None,
    **config: Any,
) -> strawberry.Schema:
    """Build the schema; ``extensions`` come before the error masking, which runs last.

    The compiled read path is installed but stays off unless ``schema.compiled.compiled_reads``
    turns it on for a request, as the HTTP view does from ENROLINK_COMPILED_READS.
    """
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=NODE_TYPES,
        extensions=[*(extensions or []), compiled_reads_extension(), MaskUnexpectedErrors],
        config=StrawberryConfig(**config),
    )
