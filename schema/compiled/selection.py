"""Field collection for one object type, with GraphQL's merging rules for fragments."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    is_abstract_type,
)


class Unsupported(Exception):
    """The document uses something the compiler does not model; Strawberry executes it."""


@dataclass
class CollectedField:
    """All nodes of one response key in one selection, merged as the executor merges them."""

    response_key: str
    name: str
    definition: GraphQLField | None
    nodes: list[FieldNode] = field(default_factory=list)

    @property
    def selection_sets(self) -> list[SelectionSetNode]:
        return [node.selection_set for node in self.nodes if node.selection_set is not None]


def _applies(schema: GraphQLSchema, type_name: str | None, object_type: GraphQLObjectType) -> bool:
    if type_name is None or type_name == object_type.name:
        return True
    condition = schema.get_type(type_name)
    if condition is not None and is_abstract_type(condition):
        return schema.is_sub_type(condition, object_type)
    return False


def collect_fields(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    object_type: GraphQLObjectType,
    selection_sets: Iterable[SelectionSetNode],
) -> list[CollectedField]:
    """Return the fields ``selection_sets`` select on ``object_type``, in response order.

    Raises Unsupported for any directive, because @skip and @include depend on variable values
    and the compiled statement must not.
    """
    collected: dict[str, CollectedField] = {}
    visited: set[str] = set()

    def visit(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported("directives")
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                entry = collected.get(key)
                if entry is None:
                    name = selection.name.value
                    definition = object_type.fields.get(name)
                    if definition is None and name != "__typename":
                        raise Unsupported(f"{object_type.name}.{name}")
                    entry = collected[key] = CollectedField(key, name, definition)
                entry.nodes.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if _applies(schema, condition.name.value if condition else None, object_type):
                    visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = fragments[name]
                if fragment.directives:
                    raise Unsupported("directives")
                if _applies(schema, fragment.type_condition.name.value, object_type):
                    visit(fragment.selection_set)

    for selection_set in selection_sets:
        visit(selection_set)
    return list(collected.values())
