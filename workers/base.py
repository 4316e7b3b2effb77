"""The base class of every task, and the event loop and engine of a worker process.

Task bodies are coroutines. Each worker process runs them on one event loop in a thread of its
own and with one ``AsyncEngine``. An engine is bound to the loop its connections were opened
on, so calling ``asyncio.run`` per task would fail with "attached to a different loop" once
the pool hands out a connection from an earlier task. The loop thread also lets the ``threads``
pool share one loop, because every pool thread submits to it and waits for the result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import structlog
from celery import Task, current_app
from celery.signals import (
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from enrolink.logging import configure_logging, root_handler
from enrolink.settings import Settings, get_settings
from models.db import create_engine_from_settings, create_sessionmaker
from models.tables import OutboxMessage
from workers.errors import is_retryable

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The first retry waits about a second; each later one doubles, up to the configured maximum.
RETRY_BACKOFF_FIRST_SECONDS = 1.0
# last_error keeps the start of the message: enough for the exception type and its first lines.
LAST_ERROR_MAX_CHARACTERS = 2_000
# A worker that is stopping waits this long for the engine to close its connections.
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class WorkerRuntime:
    """The event loop, engine and session factory of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name="enrolink-event-loop", daemon=True
        )
        self._thread.start()
        self.engine: AsyncEngine = create_engine_from_settings(
            settings, application_name="enrolink-worker"
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        lock_timeout_ms = settings.task_lock_timeout_ms

        @event.listens_for(self.engine.sync_engine, "connect")
        def _set_lock_timeout(dbapi_connection: Any, _: Any) -> None:
            # A task waiting on a row lock that a request holds gives up after this and is
            # retried with backoff, instead of tying up a worker process.
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            cursor.close()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run the coroutine on the process's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            # A soft time limit or a shutdown interrupts the wait; stop the coroutine too, so
            # its transaction rolls back instead of running on unobserved.
            future.cancel()
            raise

    def close(self) -> None:
        """Close the engine's connections and stop the loop."""
        try:
            self.run(self.engine.dispose(), timeout=SHUTDOWN_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("worker_runtime.dispose_failed", error=repr(error))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self.loop.close()


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime(settings: Settings) -> WorkerRuntime:
    """Return this process's runtime, starting it on first use (solo and threads pools)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            # A runtime inherited through fork has no loop thread here and its connections
            # belong to the parent, so the child starts its own and leaves the copy alone.
            _runtime = WorkerRuntime(settings)
            log.info("worker_runtime.started", pid=_runtime.pid)
        return _runtime


def stop_runtime() -> None:
    global _runtime
    with _runtime_lock:
        runtime, _runtime = _runtime, None
    if runtime is not None and runtime.pid == os.getpid():
        runtime.close()
        log.info("worker_runtime.stopped", pid=runtime.pid)


def app_settings(app: Any) -> Settings:
    """Return the settings an Enrolink Celery app was built with, else the environment's."""
    settings = getattr(app, "enrolink_settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


def _start_process_runtime(**_: Any) -> None:
    # Prefork children make the worker's app current before sending this signal.
    get_runtime(app_settings(current_app))


def _stop_process_runtime(**_: Any) -> None:
    stop_runtime()


def _stop_main_process_runtime(**_: Any) -> None:
    # The solo and threads pools run tasks in the main process, which sends no
    # worker_process_shutdown.
    stop_runtime()


def _log_worker_ready(sender: Any = None, **_: Any) -> None:
    log.info("worker.ready", hostname=getattr(sender, "hostname", None), pid=os.getpid())


def _configure_celery_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from installing its own handlers, so worker and beat
    # log through structlog like the API does.
    settings = app_settings(current_app)
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        development=settings.is_development,
    )
    filter_routine_tasks(current_app)


def filter_routine_tasks(app: Any) -> None:
    """Install :class:`RoutineTaskFilter` for ``app`` on the log handler, once per process."""
    handler = root_handler()
    if not any(isinstance(existing, RoutineTaskFilter) for existing in handler.filters):
        handler.addFilter(RoutineTaskFilter(app))


class RoutineTaskFilter(logging.Filter):
    """Leave Celery's INFO lines about the runs of ``quiet_when_idle`` tasks out of the log.

    Beat sends the outbox relay every few seconds. For each run, beat logs that it sent it, and
    the worker that it received it and that it succeeded: three lines every 5 s in an idle
    service. They still appear when the log level is DEBUG. The task's own events, which describe
    what it did, are not Celery's and are not filtered, and errors are above INFO.
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def _is_routine(self, task_name: object) -> bool:
        task = self.app.tasks.get(task_name) if isinstance(task_name, str) else None
        return bool(getattr(task, "quiet_when_idle", False))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._names_routine_task(record):
            return True
        return logging.getLogger().isEnabledFor(logging.DEBUG)

    def _names_routine_task(self, record: logging.LogRecord) -> bool:
        if record.name in ("celery.worker.strategy", "celery.app.trace"):
            # Celery passes the task's fields as ``extra={"data": ...}`` for log handlers.
            data = getattr(record, "data", None)
            return isinstance(data, dict) and self._is_routine(data.get("name"))
        if record.name == "celery.beat":
            # "Scheduler: Sending due task %s (%s)" with the entry's name and the task's.
            arguments = record.args if isinstance(record.args, tuple) else ()
            return len(arguments) == 2 and self._is_routine(arguments[1])
        return False


# Connected by call rather than decorator, which Celery's missing type hints would leave untyped.
worker_process_init.connect(_start_process_runtime)
worker_process_shutdown.connect(_stop_process_runtime)
worker_shutdown.connect(_stop_main_process_runtime)
worker_ready.connect(_log_worker_ready)
setup_logging.connect(_configure_celery_logging)


def retry_delay_seconds(retries: int, maximum: float) -> float:
    """Return the delay before retry number ``retries + 1``: doubling, capped, with jitter.

    The jitter spreads the retries of tasks that failed together (two roll-ups that deadlocked
    on each other) so they do not collide again.
    """
    ceiling = min(maximum, RETRY_BACKOFF_FIRST_SECONDS * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


def log_fields(task_id: str | None, task_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields bound to every log line of a task: its id, name and the ids it got."""
    fields: dict[str, Any] = {"task_id": task_id, "task_name": task_name}
    for key, value in kwargs.items():
        if key.endswith(("_id", "_ids")) or key in {"trigger", "reason"}:
            fields[key] = value
    return fields


async def _with_log_fields(coroutine: Coroutine[Any, Any, T], fields: dict[str, Any]) -> T:
    # The coroutine runs as an asyncio task on the loop thread, in a context of its own, so the
    # task's fields are bound there too for the domain code's log lines.
    structlog.contextvars.bind_contextvars(**fields)
    return await coroutine


async def record_last_error(
    sessionmaker: async_sessionmaker[AsyncSession], outbox_id: int, message: str
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id)
            .values(last_error=message[:LAST_ERROR_MAX_CHARACTERS])
        )


class EnrolinkTask(Task):  # type: ignore[misc]  # Celery ships no type hints.
    """Base of Enrolink's tasks: runs an ``async def`` body, logs, and retries what is worth it.

    Tasks take ids only and reload what they need, so a task delivered twice (a Redis
    visibility timeout, a worker killed before it acknowledged) does the same thing twice.
    """

    # Kwargs that are not in the function's signature fail at the worker, where they are logged,
    # rather than at send time in the API, which publishes by name and cannot check them.
    typing = False
    # A task that beat runs every few seconds logs its start, and an end with nothing done
    # (every count 0), at DEBUG, so an idle service does not fill the INFO log.
    quiet_when_idle = False

    @property
    def enrolink_settings(self) -> Settings:
        return app_settings(self.app)

    @property
    def runtime(self) -> WorkerRuntime:
        return get_runtime(self.enrolink_settings)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fields = log_fields(self.request.id, self.name, kwargs)
        with structlog.contextvars.bound_contextvars(**fields):
            (log.debug if self.quiet_when_idle else log.info)(
                "task.started", retries=self.request.retries or 0
            )
            started = time.monotonic()
            try:
                result = self.run(*args, **kwargs)
                if inspect.iscoroutine(result):
                    result = self.runtime.run(_with_log_fields(result, fields))
            except Exception as error:
                self._handle_error(error, kwargs)
                raise
            counts = result if isinstance(result, dict) else {}
            idle = self.quiet_when_idle and not any(counts.values())
            (log.debug if idle else log.info)(
                "task.finished",
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                **counts,
            )
            return result

    def _handle_error(self, error: Exception, kwargs: Mapping[str, Any]) -> None:
        """Retry the task when the error is worth it (this raises Retry); otherwise record it."""
        settings = self.enrolink_settings
        retries = self.request.retries or 0
        if is_retryable(error) and retries < settings.task_max_retries:
            countdown = retry_delay_seconds(retries, settings.task_retry_backoff_max_seconds)
            log.warning(
                "task.retried",
                error=repr(error),
                retries=retries + 1,
                countdown_seconds=round(countdown, 2),
            )
            raise self.retry(
                exc=error, countdown=countdown, max_retries=settings.task_max_retries
            ) from error

        log.error("task.failed", error=repr(error), retries=retries)
        outbox_id = kwargs.get("outbox_id")
        if isinstance(outbox_id, int):
            try:
                self.runtime.run(
                    record_last_error(self.runtime.sessionmaker, outbox_id, repr(error)),
                    timeout=SHUTDOWN_TIMEOUT_SECONDS,
                )
            except Exception as record_error:
                log.error(
                    "outbox.last_error_not_recorded",
                    outbox_id=outbox_id,
                    error=repr(record_error),
                )
