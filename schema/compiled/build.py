"""The state of one compilation, and the plan it produces: a statement and its parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    SelectionSetNode,
    VariableDefinitionNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values
from sqlalchemy import TextClause

from schema.compiled.selection import CollectedField, Unsupported, collect_fields
from schema.compiled.sql import quote

if TYPE_CHECKING:
    from schema.context import Context

# PostgreSQL functions take at most 100 arguments, so json_build_object builds at most 50 keys.
MAX_KEYS_PER_OBJECT = 50


class Fallback(Exception):
    """An argument value for which Strawberry returns an error; the resolvers produce it."""


Converter = Callable[[Any, "Context"], Any]
Handler = Callable[["Build", str, CollectedField], str]


@dataclass(frozen=True)
class Bind:
    """One SQL parameter, computed from one argument of one field at execution time."""

    name: str
    field_index: int
    argument: str
    convert: Converter


@dataclass(frozen=True)
class ArgumentSource:
    definition: GraphQLField
    node: FieldNode


@dataclass(frozen=True)
class Plan:
    """A compiled operation: one statement returning the ``data`` object as JSON text."""

    statement: TextClause
    variable_definitions: tuple[VariableDefinitionNode, ...]
    sources: tuple[ArgumentSource, ...]
    binds: tuple[Bind, ...]

    def parameters(self, variables: VariableValues, context: Context) -> dict[str, Any]:
        """Return the statement's parameters, or raise Fallback for a value Strawberry rejects."""
        arguments = [
            get_argument_values(source.definition, source.node, variables)
            for source in self.sources
        ]
        return {
            bind.name: bind.convert(arguments[bind.field_index].get(bind.argument), context)
            for bind in self.binds
        }


@dataclass
class Build:
    """Compiles selections into SQL; ``objects`` maps each type to its field handlers."""

    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    objects: Mapping[str, Mapping[str, Handler]]
    sources: list[ArgumentSource] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    _source_index: dict[int, int] = field(default_factory=dict)
    _aliases: int = 0

    def alias(self) -> str:
        """Return a table alias unused anywhere else in the statement."""
        self._aliases += 1
        return f"t{self._aliases}"

    def argument(
        self, collected: CollectedField, name: str, convert: Converter, sql_type: str
    ) -> str:
        """Return an SQL parameter for argument ``name`` of ``collected``, typed ``sql_type``."""
        assert collected.definition is not None
        node = collected.nodes[0]
        index = self._source_index.get(id(node))
        if index is None:
            index = len(self.sources)
            self.sources.append(ArgumentSource(collected.definition, node))
            self._source_index[id(node)] = index
        bind = f"p{len(self.binds)}"
        self.binds.append(Bind(bind, index, name, convert))
        return f"CAST(:{bind} AS {sql_type})"

    def object_type(self, type_name: str) -> GraphQLObjectType:
        graphql_type = self.schema.get_type(type_name)
        if not isinstance(graphql_type, GraphQLObjectType):
            raise Unsupported(type_name)
        return graphql_type

    def field_type_name(self, collected: CollectedField) -> str:
        assert collected.definition is not None
        return get_named_type(collected.definition.type).name

    def fields(
        self, type_name: str, selection_sets: Iterable[SelectionSetNode]
    ) -> list[CollectedField]:
        return collect_fields(
            self.schema, self.fragments, self.object_type(type_name), selection_sets
        )

    def json_object(self, pairs: list[tuple[str, str]]) -> str:
        if len(pairs) > MAX_KEYS_PER_OBJECT:
            raise Unsupported("too many keys in one object")
        arguments = ", ".join(f"{quote(key)}, {value}" for key, value in pairs)
        return f"json_build_object({arguments})"

    def object(self, type_name: str, row: str, selection_sets: Iterable[SelectionSetNode]) -> str:
        """Return a json expression for the row aliased ``row`` as a ``type_name`` object."""
        handlers = self.objects.get(type_name)
        if handlers is None:
            raise Unsupported(type_name)
        pairs: list[tuple[str, str]] = []
        for collected in self.fields(type_name, selection_sets):
            if collected.name == "__typename":
                pairs.append((collected.response_key, quote(type_name)))
                continue
            handler = handlers.get(collected.name)
            if handler is None:
                raise Unsupported(f"{type_name}.{collected.name}")
            pairs.append((collected.response_key, handler(self, row, collected)))
        return self.json_object(pairs)
