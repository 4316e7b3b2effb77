"""Limits on what one GraphQL document may ask for, as Strawberry schema extensions.

Strawberry's limiters enforce depth (QueryDepthLimiter), aliases (MaxAliasesLimiter) and
lexical tokens (MaxTokensLimiter). Their depth and alias walks follow every path through the
fragments without memoising. A document whose fragments each spread the next one twice
therefore takes time exponential in its length: with strawberry-graphql 0.341.2 on a 2-core
machine, 22 such fragments kept the depth limiter busy for 12 seconds. graphql-core's check of
overlapping fields compares the fields of one response key pairwise, so 1,200 copies of one
field took it 1.5 seconds. DocumentGuard runs first, in one pass that resolves each fragment
once, and rejects before validation:

- brace nesting far beyond the depth limit, before the recursive parser runs;
- fragments that spread themselves, directly or through others, or nest beyond that bound;
- one response key selected more often in a selection set than the alias limit;
- documents that select more fields, once fragments are expanded, than the token limit lets
  a document spell out;
- documents whose estimated cost is over the maximum.

Every operation of the document is checked, also those the request does not execute, because
the validators walk them all.

The estimated cost counts the values a response may hold: each field counts once, and
everything selected under a list counts once per expected item. A connection's items are its
page size (`first`, or the default page size when absent); other lists count as
UNPAGINATED_LIST_ESTIMATE items.
"""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    VariableNode,
    get_named_type,
)
from graphql.error import GraphQLSyntaxError
from graphql.language import Lexer
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)

LIMIT_ERROR_CODE = "QUERY_LIMIT_EXCEEDED"
# Document texts whose validation is remembered per process. Clients send a few dozen distinct
# documents; 1,000 is the size of the compiled-plan cache, and an entry is one key.
VALIDATION_CACHE_SIZE = 1_000
# Parsed documents kept per process, keyed by text. Parsing a short mutation takes about 0.1 ms
# of a request, and an entry stores the document's syntax tree of a few kilobytes.
PARSE_CACHE_SIZE = 256
# Lists without paging hold a few items each: the units of an occurrence, the sessions linked to
# an administrative enrolment, the results of an enrolment. An estimate, not a measurement: a
# diploma has about 10 to 12 units.
UNPAGINATED_LIST_ESTIMATE = 10


def limit_error(message: str, *, limit: str, maximum: int) -> GraphQLError:
    return GraphQLError(
        message, extensions={"code": LIMIT_ERROR_CODE, "limit": limit, "maximum": maximum}
    )


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int
    default_page_size: int

    @property
    def max_nesting(self) -> int:
        """Braces a document may nest before parsing.

        Each field level opens one brace, and inline fragments and input objects open more, so
        twice the depth plus a margin never rejects a document that the depth limit accepts.
        """
        return 2 * self.max_depth + 4


def max_brace_nesting(query: str, *, stop_after: int, max_tokens: int) -> int:
    """Return how deeply ``{`` nests in ``query``, counting no further than ``stop_after``.

    Lexes at most ``max_tokens`` tokens; the parser reports a longer document itself.
    """
    lexer = Lexer(Source(query))
    depth = deepest = 0
    for _ in range(max_tokens):
        token = lexer.advance()
        if token.kind is TokenKind.EOF:
            break
        if token.kind is TokenKind.BRACE_L:
            depth += 1
            deepest = max(deepest, depth)
            if deepest > stop_after:
                break
        elif token.kind is TokenKind.BRACE_R:
            depth -= 1
    return deepest


# Clients send the same few documents again and again, so the nesting of each is cached, as the
# parsed document is. Only documents up to this many characters are cached, so that large ones
# cannot fill memory. Lexing a 300-character mutation took about 0.2 ms of CPU per request.
_CACHED_DOCUMENT_CHARS = 8_192


@functools.lru_cache(maxsize=256)
def _cached_brace_nesting(query: str, stop_after: int, max_tokens: int) -> int:
    return max_brace_nesting(query, stop_after=stop_after, max_tokens=max_tokens)


@dataclass
class _Walk:
    """One pass over a document: expanded field count, estimated cost and fragment cycles."""

    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    default_page_size: int
    max_fragment_nesting: int
    cycle: list[str] | None = None
    too_deep: bool = False
    # The response key selected most often in one selection set, and how often.
    max_repeated_key: tuple[str, int] = ("", 0)
    _fields: dict[str, int] = field(default_factory=dict)
    _keys: dict[str, Counter[str]] = field(default_factory=dict)
    _costs: dict[tuple[str, int | None], int] = field(default_factory=dict)
    _in_progress: list[str] = field(default_factory=list)

    def expanded_fields(self, selection_set: SelectionSetNode | None) -> int:
        """Count the field selections under ``selection_set`` with every fragment expanded."""
        if selection_set is None:
            return 0
        keys = self._response_keys(selection_set)
        if keys:
            key, count = keys.most_common(1)[0]
            if count > self.max_repeated_key[1]:
                self.max_repeated_key = (key, count)
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1 + self.expanded_fields(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.expanded_fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment_fields(selection.name.value)
        return total

    def _response_keys(self, selection_set: SelectionSetNode) -> Counter[str]:
        """Count the fields per response key that GraphQL merges into one selection set.

        graphql-core compares such fields pairwise, so a key repeated thousands of times costs
        validation seconds. A fragment spread twice in one selection set counts once, as the
        executor collects it once.
        """
        keys: Counter[str] = Counter()
        spread: set[str] = set()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                keys[selection.alias.value if selection.alias else selection.name.value] += 1
            elif isinstance(selection, InlineFragmentNode):
                keys += self._response_keys(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in spread or fragment is None or name in self._in_progress:
                    continue
                spread.add(name)
                if name not in self._keys:
                    self._in_progress.append(name)
                    self._keys[name] = self._response_keys(fragment.selection_set)
                    self._in_progress.pop()
                keys += self._keys[name]
        return keys

    def fragment_fields(self, name: str) -> int:
        if name in self._fields:
            return self._fields[name]
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        if name in self._in_progress:
            if self.cycle is None:
                self.cycle = [*self._in_progress[self._in_progress.index(name) :], name]
            return 0
        if len(self._in_progress) >= self.max_fragment_nesting:
            self.too_deep = True
            return 0
        self._in_progress.append(name)
        count = self.expanded_fields(fragment.selection_set)
        self._in_progress.pop()
        self._fields[name] = count
        return count

    def cost(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        page: int | None,
    ) -> int:
        """Estimate the values one instance of ``parent`` returns for ``selection_set``.

        ``page`` is the page size of the connection that ``parent`` is, if it is one. The next
        list below it contains that many items.
        """
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, target, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_cost(selection.name.value, page)
        return total

    def _fragment_cost(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key in self._costs:
            return self._costs[key]
        fragment = self.fragments.get(name)
        if fragment is None or name in self._in_progress:
            # A cycle; expanded_fields has recorded it and the document is rejected for it.
            return 0
        self._in_progress.append(name)
        target = self.schema.get_type(fragment.type_condition.name.value)
        value = self.cost(fragment.selection_set, target, page)
        self._in_progress.pop()
        self._costs[key] = value
        return value

    def _field_cost(
        self, node: FieldNode, parent: GraphQLNamedType | None, page: int | None
    ) -> int:
        definition = self._definition(node.name.value, parent)
        if definition is None:
            # Unknown to the schema; validation rejects it, the estimate only needs to end.
            return 1 + self.cost(node.selection_set, None, None)

        field_type = definition.type
        if isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        child_type = get_named_type(field_type)
        child_page = self._page_size(node) if "first" in definition.args else None
        items = 1
        if isinstance(field_type, GraphQLList):
            if child_page is not None:
                # A list that takes `first` itself contains one page.
                items, child_page = child_page, None
            elif page is not None:
                items = page
            else:
                items = UNPAGINATED_LIST_ESTIMATE
        return 1 + items * self.cost(node.selection_set, child_type, child_page)

    def _definition(self, name: str, parent: GraphQLNamedType | None) -> Any:
        if parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return parent.fields.get(name)
        return None

    def _page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return max(0, int(value.value))
            if isinstance(value, VariableNode):
                given = self.variables.get(value.name.value)
                if isinstance(given, int):
                    return max(0, given)
        return self.default_page_size


def _operation_variables(
    operation: OperationDefinitionNode, given: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the variables given, with the operation's literal integer defaults filled in."""
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        default = definition.default_value
        if isinstance(default, IntValueNode):
            values[definition.variable.name.value] = int(default.value)
    values.update(given)
    return values


def check_document(
    document: DocumentNode,
    schema: GraphQLSchema,
    limits: Limits,
    *,
    variables: Mapping[str, Any] | None = None,
) -> GraphQLError | None:
    """Return the first limit the document breaks, as an error naming it, or None.

    Every operation in the document is checked, not only the one to execute, because the
    validators after this check walk them all.
    """
    try:
        return _check(document, schema, limits, variables or {})
    except RecursionError:
        # Only a document that nests fragments and fields together hundreds of levels deep
        # gets here; the fragment nesting bound stops simpler ones first.
        return limit_error(
            "The document nests fields and fragments too deeply to be checked; queries may be "
            f"at most {limits.max_depth} fields deep.",
            limit="maxQueryDepth",
            maximum=limits.max_depth,
        )


def _check(
    document: DocumentNode, schema: GraphQLSchema, limits: Limits, variables: Mapping[str, Any]
) -> GraphQLError | None:
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]

    walk = _Walk(schema, fragments, {}, limits.default_page_size, limits.max_nesting)
    expanded = sum(walk.expanded_fields(operation.selection_set) for operation in operations)
    # Fragments no operation spreads are walked too, so a cycle among them is reported here
    # rather than left to the validators.
    for name in fragments:
        walk.fragment_fields(name)
    if walk.cycle is not None:
        path = " → ".join(walk.cycle)
        return limit_error(
            f"Fragment {walk.cycle[0]} spreads itself ({path}), so the query would nest without "
            f"end; the maximum query depth is {limits.max_depth}.",
            limit="maxQueryDepth",
            maximum=limits.max_depth,
        )
    if walk.too_deep:
        return limit_error(
            f"Fragments spread inside each other more than {limits.max_nesting} levels deep; "
            f"queries may be at most {limits.max_depth} fields deep.",
            limit="maxQueryDepth",
            maximum=limits.max_depth,
        )
    key, repeats = walk.max_repeated_key
    if repeats > limits.max_aliases:
        return limit_error(
            f"The field {key!r} is selected {repeats:,} times in one selection set; at most "
            f"{limits.max_aliases} are accepted, as for aliases. Select it once.",
            limit="maxAliases",
            maximum=limits.max_aliases,
        )
    if expanded > limits.max_tokens:
        return limit_error(
            f"With its fragments expanded the document selects {expanded:,} fields; the maximum "
            f"is {limits.max_tokens:,}, the same as the token limit for a document written out.",
            limit="maxTokens",
            maximum=limits.max_tokens,
        )

    for operation in operations:
        walk.variables = _operation_variables(operation, variables)
        walk._costs.clear()
        root = schema.get_root_type(operation.operation)
        cost = walk.cost(operation.selection_set, root, None)
        if cost > limits.max_cost:
            return limit_error(
                f"The estimated cost of this query is {cost:,}; the maximum is "
                f"{limits.max_cost:,}. The cost counts the values the response may hold, each "
                "list multiplying what it selects by its page size (`first`, default "
                f"{limits.default_page_size}) or by {UNPAGINATED_LIST_ESTIMATE} for lists "
                "without paging. Ask for smaller pages or fewer nested lists.",
                limit="maxQueryCost",
                maximum=limits.max_cost,
            )
    return None


def _strip_suggestion(error: GraphQLError) -> None:
    # graphql-core appends hints such as " Did you mean 'enrolments'?" at the end of a message.
    head, separator, _ = error.message.partition(" Did you mean")
    if separator:
        error.message = head


class DocumentGuard(SchemaExtension):
    """Reject documents that break a limit before the recursive parser and validators run."""

    def __init__(self, *, limits: Limits, hide_suggestions: bool) -> None:
        self.limits = limits
        self.hide_suggestions = hide_suggestions

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if self.hide_suggestions and result is not None:
            for error in getattr(result, "errors", None) or []:
                _strip_suggestion(error)

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query
        if query and self.execution_context.graphql_document is None:
            limit = self.limits.max_nesting
            max_tokens = self.limits.max_tokens
            try:
                if len(query) <= _CACHED_DOCUMENT_CHARS:
                    nesting = _cached_brace_nesting(query, limit, max_tokens)
                else:
                    nesting = max_brace_nesting(query, stop_after=limit, max_tokens=max_tokens)
            except GraphQLSyntaxError:
                # The parser reports the same syntax error with its context.
                nesting = 0
            if nesting > limit:
                raise limit_error(
                    f"The document nests more than {limit} levels of braces; queries may be at "
                    f"most {self.limits.max_depth} fields deep.",
                    limit="maxQueryDepth",
                    maximum=self.limits.max_depth,
                )
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            error = check_document(
                document,
                context.schema._schema,
                self.limits,
                variables=context.variables,
            )
            if error is not None:
                # Strawberry skips its own validation when an extension has set these errors,
                # so the limiters below never walk a document that is already rejected.
                context.pre_execution_errors = [error]
        yield


def limit_extensions(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_cost: int,
    default_page_size: int,
    introspection: bool,
    field_suggestions: bool,
) -> list[Callable[[], SchemaExtension]]:
    """Return factories of the limit extensions; Strawberry builds a fresh one per request."""
    limits = Limits(max_depth, max_aliases, max_tokens, max_cost, default_page_size)
    # Strawberry's limiters build a new rule class each time one is constructed, so they are
    # built once here: the same rule classes every request keep ValidationCache's key stable.
    rules: list[type[ASTValidationRule]] = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    cache = ValidatedDocuments(VALIDATION_CACHE_SIZE)
    return [
        functools.partial(DocumentGuard, limits=limits, hide_suggestions=not field_suggestions),
        functools.partial(MaxTokensLimiter, max_token_count=max_tokens),
        # After DocumentGuard, whose on_parse checks the brace nesting first, and after
        # MaxTokensLimiter, whose token limit is part of the cache key. Failed parses are not
        # kept, so a rejected document is parsed, and rejected, every time.
        functools.partial(ParserCache, maxsize=PARSE_CACHE_SIZE),
        functools.partial(AddValidationRules, rules),
        # After DocumentGuard, whose on_validate runs first, so a document it rejects is
        # never looked up or stored.
        functools.partial(ValidationCache, cache),
    ]


class ValidatedDocuments:
    """An LRU set of (document text, validation rules) that passed validation."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._keys: OrderedDict[tuple[str, tuple[type[ASTValidationRule], ...]], None] = (
            OrderedDict()
        )

    def __contains__(self, key: tuple[str, tuple[type[ASTValidationRule], ...]]) -> bool:
        if key not in self._keys:
            return False
        self._keys.move_to_end(key)
        return True

    def add(self, key: tuple[str, tuple[type[ASTValidationRule], ...]]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.maxsize:
            self._keys.popitem(last=False)


class ValidationCache(SchemaExtension):
    """Skip graphql-core's validation for a document text that already passed the same rules.

    Validation depends only on the schema, the document and the rules, and each process has
    one schema. Only documents without errors are stored, so a rejected document is validated,
    and rejected, every time. The cost check in DocumentGuard depends on the variables and
    still runs on every request. Strawberry's own ValidationCache would replace errors that
    DocumentGuard set and keys on the parsed document, which is hashed node by node.
    """

    def __init__(self, cache: ValidatedDocuments) -> None:
        self.cache = cache

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = None
        if isinstance(context.query, str) and context.pre_execution_errors is None:
            key = (context.query, tuple(context.validation_rules))
            if key in self.cache:
                # An empty list tells Strawberry that validation ran and found nothing.
                context.pre_execution_errors = []
        yield
        if key is not None and context.pre_execution_errors == []:
            self.cache.add(key)
