"""Prometheus metrics of the API and the workers, in the text format at /metrics.

The API exposes them at ``GET /metrics``: latency and SQL statement count of each GraphQL
request, labelled by operation, and the outbox backlog, read from PostgreSQL on each scrape.
Workers count their tasks from Celery signals (``workers.metrics`` connects the handlers below)
and serve the counts from the worker's main process on ``ENROLINK_WORKER_METRICS_PORT``.

Celery's prefork pool runs tasks in child processes, so a worker needs prometheus_client's
multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR`` must name a folder of the worker's own before
it starts. Each process then writes its samples there, and the main process adds them up. The
API runs in one process per container and needs no folder, but it uses one when the
variable is set (``enrolink serve --workers N``).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from graphql import OperationDefinitionNode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from models.tables import OutboxMessage

log = structlog.get_logger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
GRAPHQL_PATH = "/graphql"

# A client chooses operation names freely, so only this many distinct names get a label of their
# own in one process. Later new names share OTHER_OPERATION. With 3 operation types and 2
# outcomes, each histogram then has at most about 600 label sets per process.
MAX_OPERATION_NAMES = 100
MAX_OPERATION_NAME_LENGTH = 64
ANONYMOUS_OPERATION = "anonymous"
OTHER_OPERATION = "other"
# The request ended before an operation was chosen: invalid JSON, a document that did not parse
# or validate, a GET of the GraphiQL page.
UNKNOWN_OPERATION = "unknown"
_OPERATION_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

# Reconciliation causes are names chosen in code, of at most 40 characters like
# reconciliation_counts.cause. Anything else is folded, so a malformed result adds no label values.
_CAUSE = re.compile(r"[a-z][a-z0-9_]{0,39}")
OTHER_CAUSE = "other"

# The outbox query runs on every scrape and reads only the partial index ix_outbox_waiting, so
# one second is reached only when PostgreSQL is struggling. The scrape then reports
# enrolink_outbox_query_success 0 instead of hanging.
OUTBOX_QUERY_TIMEOUT_SECONDS = 1.0

# Samples files of prometheus_client's multiprocess mode, e.g. counter_123.db, gauge_livesum_9.db.
_MULTIPROCESS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


# ---------------------------------------------------------------------------------------------
# metric families

GRAPHQL_REQUEST_DURATION = Histogram(
    "enrolink_graphql_request_duration_seconds",
    "Time from receiving a /graphql request to sending the end of its response.",
    ["operation", "operation_type", "outcome"],
)
GRAPHQL_SQL_STATEMENTS = Histogram(
    "enrolink_graphql_sql_statements",
    "SQL statements the API sent to PostgreSQL while serving one /graphql request.",
    ["operation", "operation_type"],
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
)
TASKS_STARTED = Counter(
    "enrolink_tasks_started", "Celery tasks that started running, by task name.", ["task"]
)
TASKS_SUCCEEDED = Counter(
    "enrolink_tasks_succeeded", "Celery tasks that returned without an error.", ["task"]
)
TASKS_RETRIED = Counter(
    "enrolink_tasks_retried",
    "Celery tasks that hit an error worth retrying and were scheduled again.",
    ["task"],
)
TASKS_FAILED = Counter(
    "enrolink_tasks_failed",
    "Celery tasks that raised an error and will not be retried.",
    ["task"],
)
TASK_DURATION = Histogram(
    "enrolink_task_duration_seconds",
    "Run time of one Celery task attempt, whatever its outcome.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
RECONCILE_FOUND = Counter(
    "enrolink_reconcile_found", "Problems the link reconciler found, by cause.", ["cause"]
)
RECONCILE_REPAIRED = Counter(
    "enrolink_reconcile_repaired", "Problems the link reconciler repaired, by cause.", ["cause"]
)


# ---------------------------------------------------------------------------------------------
# GraphQL requests


@dataclass
class RequestMetrics:
    """Measurements of one /graphql request, recorded by the middleware when the response ends."""

    operation: str = UNKNOWN_OPERATION
    operation_type: str = "unknown"
    has_errors: bool = False
    statements: int = 0


_current_request: ContextVar[RequestMetrics | None] = ContextVar(
    "enrolink_request_metrics", default=None
)
_operation_names: set[str] = set()
_operation_names_lock = threading.Lock()


def operation_label(name: str | None) -> str:
    """Return the label value for an operation name, folding names past the cap into ``other``."""
    if name is None:
        return ANONYMOUS_OPERATION
    if len(name) > MAX_OPERATION_NAME_LENGTH or not _OPERATION_NAME.fullmatch(name):
        return OTHER_OPERATION
    with _operation_names_lock:
        if name in _operation_names:
            return name
        if len(_operation_names) >= MAX_OPERATION_NAMES:
            return OTHER_OPERATION
        _operation_names.add(name)
        return name


class GraphQLMetricsMiddleware:
    """Time each /graphql request and count its SQL statements.

    The counting lives in a context variable that the request's task and the tasks it starts
    share, so the SQLAlchemy listener and :class:`OperationMetricsExtension` can reach it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return

        measured = RequestMetrics()
        token = _current_request.set(measured)
        status = 500
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            _current_request.reset(token)
            outcome = "error" if measured.has_errors or status >= 400 else "success"
            GRAPHQL_REQUEST_DURATION.labels(
                measured.operation, measured.operation_type, outcome
            ).observe(time.perf_counter() - started)
            GRAPHQL_SQL_STATEMENTS.labels(measured.operation, measured.operation_type).observe(
                measured.statements
            )


class OperationMetricsExtension(SchemaExtension):
    """Name the operation of the current request and note whether it returned errors."""

    def on_operation(self) -> Iterator[None]:
        yield
        measured = _current_request.get()
        if measured is None:
            return
        context = self.execution_context
        if context.pre_execution_errors:
            # The document did not parse or validate, so its names are not worth a label.
            measured.has_errors = True
            return
        operation = _selected_operation(context.graphql_document, context.operation_name)
        if operation is not None:
            measured.operation_type = operation.operation.value
            measured.operation = operation_label(operation.name.value if operation.name else None)
        result = context.result
        if result is None or getattr(result, "errors", None):
            measured.has_errors = True


def _selected_operation(document: Any, name: str | None) -> OperationDefinitionNode | None:
    """Return the operation that ``name`` selects, as GraphQL execution would, or None."""
    if document is None:
        return None
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    return None


def count_statements(engine: AsyncEngine) -> None:
    """Count each statement ``engine`` sends inside a /graphql request towards that request."""

    def before_cursor_execute(*args: Any) -> None:
        measured = _current_request.get()
        if measured is not None:
            measured.statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute)


# ---------------------------------------------------------------------------------------------
# the outbox backlog


@dataclass(frozen=True)
class OutboxStatus:
    waiting: int
    given_up: int
    oldest_age_seconds: float


async def read_outbox_status(
    engine: AsyncEngine,
    *,
    max_publish_count: int,
    timeout_seconds: float = OUTBOX_QUERY_TIMEOUT_SECONDS,
) -> OutboxStatus:
    """Count the unprocessed outbox rows and measure the oldest, in one query.

    Raises TimeoutError when the query (including waiting for a pooled connection) takes
    longer than ``timeout_seconds``.
    """
    waiting = OutboxMessage.processed_at.is_(None)
    statement = select(
        func.count(),
        func.count().filter(OutboxMessage.publish_count >= max_publish_count),
        func.coalesce(func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)), 0),
    ).where(waiting)

    async def run() -> OutboxStatus:
        async with engine.connect() as connection:
            # The server stops the query too, so a cancelled scrape leaves no work behind.
            await connection.execute(
                text("SELECT set_config('statement_timeout', :timeout, true)"),
                {"timeout": str(int(timeout_seconds * 1000))},
            )
            row = (await connection.execute(statement)).one()
        return OutboxStatus(
            waiting=int(row[0]), given_up=int(row[1]), oldest_age_seconds=float(row[2])
        )

    return await asyncio.wait_for(run(), timeout_seconds)


class OutboxCollector(Collector):
    """Gauges of one outbox reading; ``status`` None means the reading failed."""

    def __init__(self, status: OutboxStatus | None) -> None:
        self.status = status

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "enrolink_outbox_query_success",
            "1 when this scrape read the outbox from PostgreSQL, 0 when the query failed.",
            value=0 if self.status is None else 1,
        )
        if self.status is None:
            return
        yield GaugeMetricFamily(
            "enrolink_outbox_waiting_rows",
            "Outbox rows whose task has not completed yet.",
            value=self.status.waiting,
        )
        yield GaugeMetricFamily(
            "enrolink_outbox_given_up_rows",
            "Waiting outbox rows the relay stopped publishing after "
            "ENROLINK_OUTBOX_MAX_PUBLISH_COUNT attempts; they need an operator.",
            value=self.status.given_up,
        )
        yield GaugeMetricFamily(
            "enrolink_outbox_oldest_waiting_age_seconds",
            "Age of the oldest waiting outbox row; 0 when none is waiting.",
            value=self.status.oldest_age_seconds,
        )


# ---------------------------------------------------------------------------------------------
# exposition


def process_registry() -> CollectorRegistry:
    """Return the registry of this process, or of all processes in multiprocess mode."""
    if not os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    return registry


async def metrics_endpoint(request: Request) -> Response:
    """Serve the API's metrics and the outbox gauges in Prometheus's text format."""
    state = request.app.state.enrolink
    status: OutboxStatus | None
    try:
        status = await read_outbox_status(
            state.engine, max_publish_count=state.settings.outbox_max_publish_count
        )
    except Exception as error:
        # The scrape still succeeds so the other metrics arrive; the query_success gauge is 0.
        status = None
        log.warning("metrics.outbox_query_failed", error=f"{type(error).__name__}: {error}")

    outbox_registry = CollectorRegistry(auto_describe=False)
    outbox_registry.register(OutboxCollector(status))
    body = generate_latest(process_registry()) + generate_latest(outbox_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------------------------------------
# Celery tasks: signal handlers, connected in workers.metrics


_task_started_at: dict[str, float] = {}


def _task_name(task: Any) -> str:
    # Signals arrive only for tasks registered in the app, so the names are bounded by code.
    return str(getattr(task, "name", None) or "unknown")


def on_task_prerun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    TASKS_STARTED.labels(_task_name(sender)).inc()
    if task_id is not None:
        _task_started_at[task_id] = time.monotonic()


def on_task_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    started = _task_started_at.pop(task_id, None) if task_id is not None else None
    if started is not None:
        TASK_DURATION.labels(_task_name(sender)).observe(time.monotonic() - started)


def on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    name = _task_name(sender)
    TASKS_SUCCEEDED.labels(name).inc()
    if name == "enrolink.reconcile":
        record_reconciliation(result)


def on_task_retry(sender: Any = None, **_: Any) -> None:
    TASKS_RETRIED.labels(_task_name(sender)).inc()


def on_task_failure(sender: Any = None, **_: Any) -> None:
    TASKS_FAILED.labels(_task_name(sender)).inc()


def record_reconciliation(result: Any) -> None:
    """Add a reconcile task's counts to the per-cause counters.

    ``result`` is the return value of ``enrolink.reconcile``: ``{"run_id": 7,
    "<cause>_found": n, "<cause>_repaired": m, ...}``, with the keys of causes that found
    nothing left out. A result of another shape is logged and skipped.
    """
    if not isinstance(result, Mapping):
        log.warning("metrics.reconcile_result_unreadable", result_type=type(result).__name__)
        return
    for key, value in result.items():
        if not isinstance(key, str) or not isinstance(value, int) or value <= 0:
            continue
        cause, separator, kind = key.rpartition("_")
        if not separator or kind not in {"found", "repaired"}:
            continue
        label = cause if _CAUSE.fullmatch(cause) else OTHER_CAUSE
        counter = RECONCILE_FOUND if kind == "found" else RECONCILE_REPAIRED
        counter.labels(label).inc(value)


# ---------------------------------------------------------------------------------------------
# the worker's metrics server


def clear_multiprocess_dir() -> Path | None:
    """Delete the samples files left in ``PROMETHEUS_MULTIPROC_DIR`` by an earlier run.

    Only prometheus_client's own file names are removed, so a folder set by mistake to a shared
    path loses nothing else. Returns the folder, or None when the variable is unset.
    """
    configured = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if not configured:
        return None
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if _MULTIPROCESS_FILE.fullmatch(path.name):
            path.unlink(missing_ok=True)
    return folder


def start_worker_metrics_server(port: int, host: str) -> None:
    """Serve the metrics of this worker and its pool processes over HTTP on ``host:port``.

    Call it once in the worker's main process before the pool starts: it clears the samples
    folder of the previous run, then serves from a daemon thread until the process exits.
    """
    folder = clear_multiprocess_dir()
    if folder is None:
        # NOTE: without the folder only this process's samples are served. That misses every
        # task run by prefork pool processes, but not those of the solo and threads pools.
        log.warning(
            "metrics.multiprocess_dir_missing",
            variable=MULTIPROCESS_DIR_VARIABLE,
            detail="set it to an empty folder so task counts from pool processes are served",
        )
    start_http_server(port, addr=host, registry=process_registry())
    log.info("metrics.server_started", host=host, port=port, multiprocess_dir=str(folder))
