"""The schema extension that serves compilable queries with one SQL statement.

Strawberry parses and validates every document as usual, so validation rules and the
query-limit extensions apply to both paths. At the execution step, the extension sets the
result itself when the operation compiles; Strawberry then skips its own executor. Anything
else (a mutation, introspection, a field the compiler does not model, an argument Strawberry
rejects, a partner caller) runs through the resolvers.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from graphql import DocumentNode, GraphQLError, GraphQLSchema
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from schema.compiled.build import Fallback, Plan
from schema.compiled.compiler import compile_operation
from schema.context import Context

log = structlog.get_logger(__name__)

# Distinct documents a client base sends are few (persisted in SPA and portal code); 1,000 plans
# of a few kilobytes of SQL each bound the cache to a few megabytes per process.
PLAN_CACHE_SIZE = 1_000

_enabled: ContextVar[bool] = ContextVar("compiled_reads_enabled", default=False)


@contextmanager
def compiled_reads(enabled: bool) -> Iterator[None]:
    """Turn the compiled path on or off for the operations executed inside the block.

    The HTTP view sets this per request from the settings. Callers of ``schema.execute``
    outside a request get the resolvers unless they opt in.
    """
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


class RawJSON(Mapping[str, Any]):
    """The ``data`` of a compiled response as JSON bytes; it is parsed only if someone reads it."""

    __slots__ = ("_parsed", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._parsed: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = json.loads(self.text)
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


class PlanCache:
    """Plans by document text and operation name, least recently used dropped first."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        self.size = size
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()

    def get(self, key: tuple[str, str | None]) -> tuple[bool, Plan | None]:
        if key not in self._plans:
            return False, None
        self._plans.move_to_end(key)
        return True, self._plans[key]

    def put(self, key: tuple[str, str | None], plan: Plan | None) -> None:
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)


def _compile(
    graphql_schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """Compile the operation; a failure of the compiler itself leaves it to the resolvers."""
    try:
        return compile_operation(graphql_schema, document, operation_name)
    except Exception:
        log.exception("compiled_reads.compile_failed", operation=operation_name)
        return None


class CompiledReads(SchemaExtension):
    """Serve a query operation with one statement when the whole selection compiles."""

    plans: PlanCache

    async def on_execute(self) -> AsyncIterator[None]:
        execution_context = self.execution_context
        if _enabled.get() and execution_context.result is None:
            result = await self._execute()
            if result is not None:
                execution_context.result = result
        yield

    def _plan(self, graphql_schema: GraphQLSchema) -> Plan | None:
        execution_context = self.execution_context
        document = execution_context.graphql_document
        assert document is not None
        operation_name = execution_context.operation_name
        if execution_context.query is None:
            return _compile(graphql_schema, document, operation_name)
        key = (execution_context.query, operation_name)
        found, plan = self.plans.get(key)
        if not found:
            plan = _compile(graphql_schema, document, operation_name)
            self.plans.put(key, plan)
            log.debug("compiled_reads.compiled", operation=operation_name, compiled=bool(plan))
        return plan

    async def _execute(self) -> ExecutionResult | None:
        execution_context = self.execution_context
        context = execution_context.context
        if not isinstance(context, Context) or context.caller.is_partner:
            return None
        if execution_context.operation_type is not OperationType.QUERY:
            return None
        graphql_schema = execution_context.schema._schema
        plan = self._plan(graphql_schema)
        if plan is None:
            return None
        variables = get_variable_values(
            graphql_schema, plan.variable_definitions, execution_context.variables or {}
        )
        if isinstance(variables, list):
            return None
        try:
            parameters = plan.parameters(variables, context)
        except (Fallback, GraphQLError):
            return None
        try:
            data = await self._fetch(context, plan, parameters)
        except Exception as error:
            # An error raised here would leave the operation before the error masking runs, so
            # it becomes a result error: MaskUnexpectedErrors then logs it with the request id
            # and hides its text, as it does for a resolver's error.
            return ExecutionResult(
                data=None, errors=[GraphQLError(str(error), original_error=error)]
            )
        return ExecutionResult(data=RawJSON(data.encode()), errors=None)  # type: ignore[arg-type]

    async def _fetch(self, context: Context, plan: Plan, parameters: dict[str, Any]) -> str:
        async with context.lock:
            data: str = (await context.session.execute(plan.statement, parameters)).scalar_one()
        return data


def compiled_reads_extension(cache_size: int = PLAN_CACHE_SIZE) -> type[CompiledReads]:
    """Return the extension class for one schema, with a plan cache of its own."""
    return type("CompiledReads", (CompiledReads,), {"plans": PlanCache(cache_size)})
