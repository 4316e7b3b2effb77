"""Entry points for the command line: ``enrolink worker``, ``enrolink beat`` and a one-off
reconciliation (``enrolink reconcile``)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import warnings
from pathlib import Path

import structlog
from celery.exceptions import SecurityWarning

from enrolink.logging import configure_logging
from enrolink.settings import Settings
from models.db import create_engine_from_settings, create_sessionmaker
from models.tables import ReconciliationRun
from workers.base import filter_routine_tasks
from workers.celery_app import create_celery_app
from workers.metrics import install_worker_metrics
from workers.reconciliation import run_reconciliation

log = structlog.get_logger(__name__)


def _configure_logging(settings: Settings, level: str) -> None:
    configure_logging(
        log_format=settings.log_format, level=level, development=settings.is_development
    )


def worker_arguments(
    settings: Settings,
    *,
    concurrency: int | None,
    queues: list[str] | None,
    loglevel: str,
    pool: str | None = None,
) -> list[str]:
    """Return the ``celery worker`` arguments for these settings and options."""
    queues = queues or [settings.roll_up_queue, settings.reconcile_queue]
    arguments = [
        "worker",
        f"--loglevel={loglevel}",
        f"--queues={','.join(queues)}",
        # A node name of its own per process, so several workers on one host (scaled out, or in
        # the tests) stay distinct in `celery inspect` and in logs.
        f"--hostname=enrolink-{os.getpid()}@%h",
        # Mingle and gossip share revoked task ids and clock state between workers. Enrolink
        # revokes nothing, and mingle waits 1 s for replies at every start (Celery 5.7).
        "--without-mingle",
        "--without-gossip",
    ]
    if settings.reconcile_queue in queues:
        # A reconciliation takes far longer than a roll-up (0.6 s per 10,000 links, measured).
        # With the default prefetch of 4 per process, a worker busy with one would hold other
        # messages that an idle worker could run.
        arguments.append("--prefetch-multiplier=1")
    if concurrency is not None:
        arguments.append(f"--concurrency={concurrency}")
    if pool is not None:
        arguments.append(f"--pool={pool}")
    return arguments


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None,
    queues: list[str] | None,
    loglevel: str,
    pool: str | None = None,
) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM finishes the tasks in
    hand, SIGQUIT stops at once). ``queues`` defaults to both of Enrolink's queues."""
    _configure_logging(settings, loglevel)
    ignore_root_warning_in_development(settings)
    # In the main process before the pool forks, so pool processes inherit the signal handlers.
    install_worker_metrics(settings.worker_metrics_port, settings.http_host)
    app = create_celery_app(settings)
    app.worker_main(
        worker_arguments(
            settings, concurrency=concurrency, queues=queues, loglevel=loglevel, pool=pool
        )
    )


# The start of the SecurityWarning that Celery's check_privileges emits for a worker run as root.
ROOT_WARNING_MESSAGE = "You're running the worker with superuser privileges"


def ignore_root_warning_in_development(settings: Settings) -> None:
    """Silence Celery's warning about a worker run as root, in development only.

    Celery 5.7 warns whenever the worker runs as root, and no option turns the warning off:
    C_FORCE_ROOT only allows pickle, which Enrolink's JSON-only workers never accept. Under
    `enrolink dev` in a container, root is the usual user, so the warning is noise there. In
    production it stays, because the images run as an unprivileged user.
    """
    if settings.is_development:
        warnings.filterwarnings("ignore", message=ROOT_WARNING_MESSAGE, category=SecurityWarning)


def beat_schedule_path(settings: Settings) -> Path:
    """Return the file where beat keeps the last run of each entry.

    It lives under the data folder, or in a temporary folder when that cannot be created (a
    read-only file system in a container). Losing it costs one early run of each entry.
    """
    folder = settings.data_dir.resolve() / "beat"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fallback = Path(tempfile.gettempdir()) / f"enrolink-beat-{os.getuid()}"
        fallback.mkdir(parents=True, exist_ok=True)
        log.warning(
            "beat.schedule_folder_unavailable",
            folder=str(folder),
            fallback=str(fallback),
            error=repr(error),
        )
        folder = fallback
    return folder / "schedule"


def run_beat(settings: Settings) -> None:
    """Run Celery beat in this process: the outbox relay and the reconciler on their intervals.

    Run one beat per deployment; two would send every periodic task twice.
    """
    _configure_logging(settings, settings.log_level)
    app = create_celery_app(settings)
    # Beat configures logging here, not through Celery's setup_logging signal as the worker does.
    filter_routine_tasks(app)
    schedule = beat_schedule_path(settings)
    log.info("beat.started", schedule=str(schedule))
    app.Beat(schedule=str(schedule), loglevel=settings.log_level, quiet=True).run()


def reconcile_once(settings: Settings, trigger: str = "cli") -> ReconciliationRun:
    """Run the reconciler now in this process and return its run, with counts per cause.

    The roll-ups it requests are published to Redis at the end; if Redis is down, the relay
    sends them later.
    """

    async def reconcile_and_dispose() -> ReconciliationRun:
        engine = create_engine_from_settings(settings, application_name="enrolink-reconcile")
        try:
            return await run_reconciliation(
                create_sessionmaker(engine),
                settings,
                trigger=trigger,
                celery_app=create_celery_app(settings),
            )
        finally:
            await engine.dispose()

    return asyncio.run(reconcile_and_dispose())
